-- Placeholder for migration 7, which another branch of issue 19 adds: migration numbers must have
-- no gaps, so this branch (which adds 8) needs a 7 to run. Drop this file when merging that one.
SELECT 1;

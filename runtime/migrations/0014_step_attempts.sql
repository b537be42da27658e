-- Version 14: a retried step's failed attempts. A step with retries_allowed that failed before
-- its last attempt records, with its outcome, the attempts that failed: a JSON list of
-- {"attempt", "started_at", "completed_at" (epoch ms), "error" ("Type: message", bounded)}. It
-- rides on the step's one checkpoint write, so retries cost no extra round trip; NULL for a step
-- that succeeded (or failed for good) at its first attempt, and on rows written before this.
ALTER TABLE dbos.operation_outputs ADD COLUMN IF NOT EXISTS attempts text;

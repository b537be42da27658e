-- Version 12: what a durable wait waits for. recv and get_event record their timeout's end time
-- as a DBOS.sleep row (step n + 1) when they first wait; that row now also says what they wait
-- for, as JSON: {"op": "recv", "topic": ...} or {"op": "get_event", "workflow_id": ..., "key":
-- ...}. It rides on the write the wait already makes, so no step costs an extra round trip. NULL
-- on every other row and on rows written before this version (`dbos workflow why` then says "a
-- message or an event").
ALTER TABLE dbos.operation_outputs ADD COLUMN IF NOT EXISTS wait_target text;

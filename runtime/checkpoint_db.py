"""Several checkpoint writes in one statement (group commit): the SQL of ``runtime.engine.
group_commit``, on the system database's pool.

Each row keeps the fencing condition of a single write (``queries.RECORD_STEP``): it is inserted
only if its own workflow's owner epoch is still the one its runner holds and the workflow has not
finished, read under FOR SHARE so that a takeover's UPDATE is ordered against the whole statement.
Each row gets its own answer (status, owner epoch, whether it was written), so a fenced runner in a
batch is told exactly what it is told alone, and the other rows of the batch are written.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from runtime.records import RecordResult
from runtime.system_db import SystemDatabase

# Lock ordering, the rule that keeps batches deadlock-free: every statement that locks several
# workflow_status rows and waits for them (no SKIP LOCKED) takes them in key (workflow ID) order.
# A batch does (the ORDER BY under FOR SHARE in RECORD_STEPS); a transaction that updates or
# deletes several rows first runs LOCK_IN_KEY_ORDER, since an UPDATE or DELETE locks rows in
# whatever order its plan visits them (heap order for a bitmap scan), which can wait on a batch
# while the batch waits on it. Statements that skip locked rows (claims, dequeues, the promotion
# of DELAYED workflows, retention) never wait, so they cannot close a cycle.
# FOR NO KEY UPDATE: it excludes a batch's FOR SHARE, but not the KEY SHARE lock a foreign-key
# check takes (a send's message to one of these workflows), which FOR UPDATE would wait on while
# the sender's statement waits on us (a send from a child to its parent, deleted together).
LOCK_IN_KEY_ORDER = """
SELECT 1 FROM dbos.workflow_status WHERE workflow_uuid = ANY(%(workflow_ids)s)
ORDER BY workflow_uuid FOR NO KEY UPDATE
"""

RECORD_STEPS = """
WITH req AS (
    SELECT * FROM unnest(
        %(ids)s::text[], %(epochs)s::bigint[], %(fids)s::integer[], %(names)s::text[],
        %(outputs)s::text[], %(errors)s::text[], %(children)s::text[], %(started)s::bigint[],
        %(completed)s::bigint[], %(targets)s::text[], %(attempts)s::text[]
    ) WITH ORDINALITY AS r(
        workflow_uuid, owner_epoch, function_id, function_name, output, error, child_workflow_id,
        started_at, completed_at, wait_target, attempts, n
    )
), wf AS (
    SELECT w.workflow_uuid, w.status, w.owner_epoch FROM dbos.workflow_status w
    WHERE w.workflow_uuid = ANY(%(ids)s::text[])
    ORDER BY w.workflow_uuid
    FOR SHARE
), ins AS (
    INSERT INTO dbos.operation_outputs (
        workflow_uuid, function_id, function_name, output, error, child_workflow_id,
        started_at_epoch_ms, completed_at_epoch_ms, wait_target, attempts
    )
    SELECT r.workflow_uuid, r.function_id, r.function_name, r.output, r.error,
           r.child_workflow_id, r.started_at, r.completed_at, r.wait_target, r.attempts
    FROM req r JOIN wf ON wf.workflow_uuid = r.workflow_uuid
    WHERE wf.owner_epoch = r.owner_epoch AND wf.status IN ('PENDING', 'CANCELLED', 'ENQUEUED')
    ON CONFLICT (workflow_uuid, function_id) DO NOTHING
    RETURNING workflow_uuid, function_id
)
SELECT r.n, wf.status, wf.owner_epoch, ins.function_id IS NOT NULL
FROM req r
LEFT JOIN wf ON wf.workflow_uuid = r.workflow_uuid
LEFT JOIN ins ON ins.workflow_uuid = r.workflow_uuid AND ins.function_id = r.function_id
"""


class StepWrite(NamedTuple):
    """One operation's outcome to record (the parameters of ``SystemDatabase.record_step``); a
    tuple because one is made per checkpoint."""

    workflow_id: str
    owner_epoch: int
    function_id: int
    function_name: str
    output: str | None = None
    error: str | None = None
    child_workflow_id: str | None = None
    started_at_ms: int | None = None
    completed_at_ms: int | None = None
    wait_target: str | None = None
    attempts: str | None = None


class CheckpointWriter:
    """Writes checkpoints through the system database's pool: one alone with the single-row
    statement (the same cost as before group commit), several in one multi-row statement."""

    def __init__(self, sysdb: SystemDatabase) -> None:
        self.sysdb = sysdb

    def write_one(self, w: StepWrite) -> RecordResult:
        """One checkpoint (one round trip): ``SystemDatabase.record_step``."""
        return self.sysdb.record_step(
            w.workflow_id,
            w.owner_epoch,
            w.function_id,
            w.function_name,
            output=w.output,
            error=w.error,
            child_workflow_id=w.child_workflow_id,
            started_at_ms=w.started_at_ms,
            completed_at_ms=w.completed_at_ms,
            wait_target=w.wait_target,
            attempts=w.attempts,
        )

    def write_many(self, writes: Sequence[StepWrite]) -> list[RecordResult]:
        """Several checkpoints in one statement and one commit; the results in the order of
        ``writes``, each as ``write_one`` would have returned it (status None: workflow gone).
        Raises ``DBOSDatabaseError`` for the whole batch when the statement fails. A second
        write of the same step goes after the batch, alone, so that it is told what it would be
        told alone (not written: the step is recorded already) rather than share the first's
        answer."""
        seen: set[tuple[str, int]] = set()
        first: list[int] = []
        again: list[int] = []
        for i, w in enumerate(writes):
            key = (w.workflow_id, w.function_id)
            (again if key in seen else first).append(i)
            seen.add(key)
        if again:
            batched = self.write_many([writes[i] for i in first])
            answers: list[RecordResult] = [RecordResult(None, None, False)] * len(writes)
            for i, result in zip(first, batched, strict=True):
                answers[i] = result
            for i in again:
                answers[i] = self.write_one(writes[i])
            return answers
        params = {
            "ids": [w.workflow_id for w in writes],
            "epochs": [w.owner_epoch for w in writes],
            "fids": [w.function_id for w in writes],
            "names": [w.function_name for w in writes],
            "outputs": [w.output for w in writes],
            "errors": [w.error for w in writes],
            "children": [w.child_workflow_id for w in writes],
            "started": [w.started_at_ms for w in writes],
            "completed": [w.completed_at_ms for w in writes],
            "targets": [w.wait_target for w in writes],
            "attempts": [w.attempts for w in writes],
        }
        with self.sysdb.connection() as conn:
            rows = conn.execute(RECORD_STEPS, params).fetchall()
        results: list[RecordResult] = [RecordResult(None, None, False)] * len(writes)
        for n, status, epoch, written in rows:
            results[int(n) - 1] = RecordResult(
                status, None if epoch is None else int(epoch), bool(written)
            )
        return results

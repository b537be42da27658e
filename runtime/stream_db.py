"""The statements behind streams: a value appended to a stream from a workflow (the write and its
checkpoint in one statement, under the owner-epoch fence) or from a step (fenced, not a step of
its own), and a batch of values read from an offset together with the writer's status.

Kept out of ``SystemDatabase`` (which is at its size limit); it shares that object's connection
pool. Like it, each public method returns named values, never rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg

from runtime.records import RecordResult
from runtime.serialization import check_text
from runtime.system_db import SystemDatabase

# The largest stream offset (a reader's resume point): well inside a bigint.
MAX_OFFSET = 2**62

# Each append computes the stream's next offset in its own statement. Two writers of one stream
# at once (concurrent steps, tasks of an async workflow) may compute the same offset: the primary
# key refuses the second, whose statement then did nothing at all, and it is sent again.

# From a workflow: the write is the workflow's step, recorded in the same statement under the
# owner-epoch fence, and the value is appended only when the record is written (so exactly once:
# a statement sent again after a lost reply finds its record and appends nothing).
WRITE_FROM_WORKFLOW = """
WITH wf AS (
    SELECT status, owner_epoch FROM dbos.workflow_status
    WHERE workflow_uuid = %(workflow_uuid)s
    FOR SHARE
),
ins AS (
    INSERT INTO dbos.operation_outputs (
        workflow_uuid, function_id, function_name, output, error, child_workflow_id,
        started_at_epoch_ms, completed_at_epoch_ms
    )
    SELECT %(workflow_uuid)s, %(function_id)s, %(function_name)s, NULL, NULL, NULL,
           %(started_at)s, (extract(epoch FROM clock_timestamp()) * 1000)::bigint
    FROM wf
    WHERE wf.owner_epoch = %(owner_epoch)s AND wf.status IN ('PENDING', 'CANCELLED', 'ENQUEUED')
    ON CONFLICT (workflow_uuid, function_id) DO NOTHING
    RETURNING 1
),
st AS (
    INSERT INTO dbos.streams (workflow_uuid, key, value, "offset", function_id)
    SELECT %(workflow_uuid)s, %(key)s, %(value)s,
           coalesce((SELECT max("offset") FROM dbos.streams
                     WHERE workflow_uuid = %(workflow_uuid)s AND key = %(key)s), -1) + 1,
           %(function_id)s
    WHERE EXISTS (SELECT 1 FROM ins)
    RETURNING 1
)
SELECT wf.status, wf.owner_epoch, EXISTS (SELECT 1 FROM st) FROM wf
"""

# From a step: not a step of its own (DBOS's rule; a retried step writes again), but only while
# the runner owns the workflow.
WRITE_FROM_STEP = """
WITH wf AS (
    SELECT status, owner_epoch FROM dbos.workflow_status
    WHERE workflow_uuid = %(workflow_uuid)s
    FOR SHARE
),
st AS (
    INSERT INTO dbos.streams (workflow_uuid, key, value, "offset", function_id)
    SELECT %(workflow_uuid)s, %(key)s, %(value)s,
           coalesce((SELECT max("offset") FROM dbos.streams
                     WHERE workflow_uuid = %(workflow_uuid)s AND key = %(key)s), -1) + 1,
           %(function_id)s
    FROM wf
    WHERE wf.owner_epoch = %(owner_epoch)s AND wf.status IN ('PENDING', 'CANCELLED', 'ENQUEUED')
    RETURNING 1
)
SELECT wf.status, wf.owner_epoch, EXISTS (SELECT 1 FROM st) FROM wf
"""

# The values from an offset on (at most a limit) and the writer's status, in one snapshot; the
# left join still reports the status when nothing is written there yet. A range scan of the
# primary key.
READ_VALUES = """
SELECT w.status, s."offset", s.value
FROM dbos.workflow_status w
LEFT JOIN dbos.streams s
  ON s.workflow_uuid = w.workflow_uuid AND s.key = %(key)s
 AND s."offset" >= %(offset)s AND s."offset" < %(offset)s + %(limit)s
WHERE w.workflow_uuid = %(workflow_uuid)s
ORDER BY s."offset"
"""

# How often one append is sent again after losing the race for its offset: each loss means
# another writer's value went in, so this is only reached by a stream written by many at once.
_MAX_OFFSET_RACES = 1000


@dataclass(frozen=True)
class StreamSlice:
    """What a reader found: the writer's status (None when no workflow has that ID) and the
    serialized values at the offset asked for and after it, up to the first offset not written
    yet (empty when nothing is written there yet)."""

    status: str | None
    values: list[str]


class StreamDatabase:
    """The statements above, over the system database's pool."""

    def __init__(self, sysdb: SystemDatabase) -> None:
        self.sysdb = sysdb

    def _append(self, statement: str, params: dict[str, object]) -> RecordResult:
        with self.sysdb.connection() as conn:
            for _ in range(_MAX_OFFSET_RACES):
                try:
                    row = conn.execute(statement, params).fetchone()
                    break
                except psycopg.errors.UniqueViolation:
                    continue  # another writer took that offset (see above)
            else:
                raise psycopg.errors.UniqueViolation("stream offset contended too long")
        if row is None:  # the workflow's row is gone: the caller stops as fenced
            return RecordResult(None, None, False)
        return RecordResult(row[0], int(row[1]), bool(row[2]))

    def write_from_workflow(
        self,
        workflow_id: str,
        owner_epoch: int,
        function_id: int,
        function_name: str,
        started_at_ms: int,
        key: str,
        value: str,
    ) -> RecordResult:
        """Append ``value`` (serialized) to stream ``key`` and record the write as step
        ``function_id``, atomically; ``recorded`` says whether both happened (not when another
        runner owns the workflow, or the step was recorded already)."""
        return self._append(
            WRITE_FROM_WORKFLOW,
            {
                "workflow_uuid": workflow_id,
                "owner_epoch": owner_epoch,
                "function_id": function_id,
                "function_name": function_name,
                "started_at": started_at_ms,
                "key": key,
                "value": value,
            },
        )

    def write_from_step(
        self, workflow_id: str, owner_epoch: int, function_id: int, key: str, value: str
    ) -> RecordResult:
        """Append ``value`` (serialized) to stream ``key`` from step ``function_id`` of the
        workflow; ``recorded`` says whether it was written (not when the runner no longer owns
        the workflow)."""
        check_text(key, "stream key")
        return self._append(
            WRITE_FROM_STEP,
            {
                "workflow_uuid": workflow_id,
                "owner_epoch": owner_epoch,
                "function_id": function_id,
                "key": key,
                "value": value,
            },
        )

    def read(self, workflow_id: str, key: str, offset: int, limit: int) -> StreamSlice:
        """The writer's status and up to ``limit`` consecutive values of stream ``key`` from
        ``offset`` on."""
        check_text(workflow_id, "workflow ID")
        check_text(key, "stream key")
        params = {"workflow_uuid": workflow_id, "key": key, "offset": offset, "limit": limit}
        with self.sysdb.connection() as conn:
            rows = conn.execute(READ_VALUES, params).fetchall()
        if not rows:
            return StreamSlice(None, [])
        values: list[str] = []
        for _, at, value in rows:
            if at != offset + len(values):  # a gap, or NULL: nothing written there yet
                break
            values.append(str(value))
        return StreamSlice(str(rows[0][0]), values)

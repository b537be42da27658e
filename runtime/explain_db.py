"""The statements behind ``DBOSClient.explain_workflow``: one workflow's record with its owning
process's lease, and (for a queued workflow) where it stands in its queue.

Kept out of ``SystemDatabase`` (which is at its size limit); it shares that object's connection
pool. Each public method is one round trip and returns named values, never rows. Nothing here is
on a workflow's path: only operators (the CLI, the dashboard, a client) ask why.
"""

from __future__ import annotations

from dataclasses import dataclass

from runtime import queries
from runtime.errors import DBOSException
from runtime.queries import NOW_MS
from runtime.system_db import SystemDatabase

_LIVE = f"e.stopped_at IS NULL AND e.last_heartbeat_at > {NOW_MS} - e.lease_ms"

# The record, the process that owns it (its lease), its highest recorded step, and the
# database's clock (every time in an explanation is the database's, as leases are).
_WORKFLOW = f"""
SELECT w.status, w.name, w.queue_name, w.queue_partition_key, w.application_version,
       w.executor_id, w.owner_process, w.recovery_attempts, w.max_recovery_attempts,
       w.delay_until_epoch_ms, w.created_at, w.updated_at, w.started_at_epoch_ms,
       w.completed_at_epoch_ms, w.priority, w.forked_from, {NOW_MS},
       e.last_heartbeat_at + e.lease_ms, e.stopped_at, e.hostname, e.pid, e.found_gone,
       s.function_id, s.function_name, coalesce(s.completed_at_epoch_ms, s.started_at_epoch_ms)
FROM dbos.workflow_status w
LEFT JOIN dbos.executors e ON e.process_id = w.owner_process
LEFT JOIN LATERAL (
    SELECT o.function_id, o.function_name, o.completed_at_epoch_ms, o.started_at_epoch_ms
    FROM dbos.operation_outputs o WHERE o.workflow_uuid = w.workflow_uuid
    ORDER BY o.function_id DESC LIMIT 1
) s ON true
WHERE w.workflow_uuid = %(workflow_id)s
"""  # noqa: S608 (constant SQL text; the values are parameters)

# A queued workflow's place, in the dispatcher's own terms (runtime.queries' predicates, so the
# two cannot drift): how many rows of its queue (its partition) the dequeue would claim before it
# (ready, a version a claimer of its version takes, earlier in the dequeue's order), the slots in
# use exactly as the dispatcher counts them, the limits last declared, the starts within the rate
# limiter's window, and per live process that can run it, how many of the queue it runs.
_SAME_PART = "w.queue_partition_key IS NOT DISTINCT FROM %(partition)s"
# For an unversioned workflow (any claimer takes it), a row ahead counts only if some live claimer
# would take it first: unversioned, or of a version a live process runs.
_CLAIMABLE = f"""(w.application_version IS NULL OR EXISTS (
    SELECT 1 FROM dbos.executors e
    WHERE {_LIVE} AND e.application_version = w.application_version))"""  # noqa: S608 (constant)
_QUEUE = f"""
SELECT
    (SELECT count(*) FROM dbos.workflow_status w
     WHERE w.queue_name = %(queue_name)s AND {queries.DEQUEUE_READY} AND {_SAME_PART}
       AND ({queries.DEQUEUE_VERSION} OR (%(application_version)s IS NULL AND {_CLAIMABLE}))
       AND ({queries.DEQUEUE_ORDER}, w.workflow_uuid)
           < (%(priority)s, %(created_at)s, %(workflow_id)s)),
    ({{running}}),
    c.concurrency, c.worker_concurrency, c.limit_count, c.limit_period_s,
    (SELECT count(*) FROM dbos.workflow_status w
     WHERE w.queue_name = %(queue_name)s AND {_SAME_PART} AND c.limit_period_s IS NOT NULL
       AND w.started_at_epoch_ms > {NOW_MS} - c.limit_period_s * 1000),
    (SELECT min(w.started_at_epoch_ms) FROM dbos.workflow_status w
     WHERE w.queue_name = %(queue_name)s AND {_SAME_PART} AND c.limit_period_s IS NOT NULL
       AND w.started_at_epoch_ms > {NOW_MS} - c.limit_period_s * 1000),
    c.queue_name IS NOT NULL, c.application_version,
    EXISTS (SELECT 1 FROM dbos.executors e WHERE {_LIVE}
            AND e.application_version IS NOT DISTINCT FROM c.application_version),
    ARRAY(SELECT (SELECT count(*) FROM dbos.workflow_status w
                  WHERE w.owner_process = e.process_id AND w.queue_name = %(queue_name)s
                    AND (w.status = 'PENDING' OR ({queries.SLOT_HELD_AFTER_RUN})))
          FROM dbos.executors e WHERE {_LIVE}
            AND (%(application_version)s IS NULL
                 OR e.application_version = %(application_version)s))
FROM (SELECT 1) AS one
LEFT JOIN dbos.queue_config c ON c.queue_name = %(queue_name)s
"""  # noqa: S608 (constant SQL text; the values are parameters)
_QUEUE_WHOLE = _QUEUE.format(running=queries.COUNT_QUEUE_RUNNING)
_QUEUE_PARTITION = _QUEUE.format(running=queries.COUNT_PARTITION_RUNNING)

# The workflows holding the slots the dispatcher counts (running, or cancelled/resumed while their
# old run is still in a step), with the step their process published as running and whether a
# live process runs their version.
_HOLDERS = f"""
SELECT w.workflow_uuid, w.status, w.owner_process, w.application_version, e.hostname, e.pid,
       (w.application_version IS NULL OR EXISTS (
            SELECT 1 FROM dbos.executors e WHERE {_LIVE}
            AND e.application_version = w.application_version)),
       rs.function_id, rs.function_name, rs.started_at
FROM dbos.workflow_status w
LEFT JOIN dbos.executors e ON e.process_id = w.owner_process
LEFT JOIN LATERAL (
    SELECT (s->>'function_id')::integer AS function_id, s->>'function_name' AS function_name,
           (s->>'started_at')::bigint AS started_at
    FROM jsonb_array_elements(coalesce(e.running_steps, '[]'::jsonb)) s
    WHERE s->>'workflow_id' = w.workflow_uuid
    ORDER BY 1 DESC LIMIT 1
) rs ON true
WHERE w.queue_name = %(queue_name)s AND {_SAME_PART}
  AND (w.status = 'PENDING' OR ({queries.SLOT_HELD_AFTER_RUN}))
ORDER BY w.status <> 'PENDING' DESC, w.started_at_epoch_ms, w.workflow_uuid
LIMIT %(shown)s
"""  # noqa: S608 (constant SQL text; the values are parameters)

# At most this many running workflows are named (a count says how many there are).
SHOWN_RUNNING = 10


@dataclass(frozen=True)
class WorkflowFacts:
    """One workflow's record as an explanation needs it (times in epoch ms, database clock)."""

    status: str
    name: str
    queue_name: str | None
    partition_key: str | None
    application_version: str | None
    executor_id: str | None
    owner_process: str | None
    recovery_attempts: int
    max_recovery_attempts: int | None
    delay_until_ms: int | None
    created_at: int
    updated_at: int
    started_at: int | None
    completed_at: int | None
    priority: int
    forked_from: str | None
    now_ms: int
    owner_lease_end: int | None  # the owner's last heartbeat plus its lease (None: no row)
    owner_stopped_at: int | None
    owner_host: str | None
    owner_pid: int | None
    owner_found_gone: bool  # its process was found dead (by pid on its host), not timed out
    last_step_id: int | None
    last_step_name: str | None
    last_step_at: int | None  # when the highest recorded step ended (or began)


@dataclass(frozen=True)
class SlotHolder:
    """A workflow holding one of its queue's slots, as the dispatcher counts them."""

    workflow_id: str
    status: str  # PENDING; CANCELLED or ENQUEUED while its old run is still in a step
    owner_process: str | None
    application_version: str | None
    host: str | None
    pid: int | None
    version_live: bool  # a live process runs its version (or it has none)
    step_id: int | None  # the step its process published as running, if any
    step_name: str | None
    step_started_at: int | None


@dataclass(frozen=True)
class QueuePlace:
    """Where a queued workflow stands in its queue (or its partition of it)."""

    ahead: int  # ready workflows the dequeue claims before it
    running: int  # slots in use, counted as the dispatcher counts them
    holders: list[SlotHolder]  # the first SHOWN_RUNNING of them
    concurrency: int | None
    worker_concurrency: int | None
    limit: int | None
    period_s: float | None
    starts_in_window: int  # starts within the last period_s (0 without a limiter)
    oldest_start_in_window: int | None
    declared: bool  # whether any executor recorded the queue's limits
    declared_version: str | None  # the application version of the process that last declared it
    declarer_version_live: bool  # a live process of that version exists
    # Per live process that can run it: the slots of the queue it holds (PENDING, or held after
    # a run).
    running_per_process: list[int]


class ExplainDatabase:
    """The reads of ``explain_workflow``, on a system database's pool."""

    def __init__(self, sysdb: SystemDatabase) -> None:
        self.sysdb = sysdb

    def workflow(self, workflow_id: str) -> WorkflowFacts | None:
        """The workflow's facts; None when no workflow has that ID."""
        with self.sysdb.connection() as conn:
            r = conn.execute(_WORKFLOW, {"workflow_id": workflow_id}).fetchone()
        if r is None:
            return None
        return WorkflowFacts(
            status=r[0],
            name=r[1],
            queue_name=r[2],
            partition_key=r[3],
            application_version=r[4],
            executor_id=r[5],
            owner_process=r[6],
            recovery_attempts=int(r[7]),
            max_recovery_attempts=r[8],
            delay_until_ms=r[9],
            created_at=int(r[10]),
            updated_at=int(r[11]),
            started_at=r[12],
            completed_at=r[13],
            priority=int(r[14]),
            forked_from=r[15],
            now_ms=int(r[16]),
            owner_lease_end=None if r[17] is None else int(r[17]),
            owner_stopped_at=r[18],
            owner_host=r[19],
            owner_pid=r[20],
            owner_found_gone=bool(r[21]),
            last_step_id=r[22],
            last_step_name=r[23],
            last_step_at=r[24],
        )

    def queue_place(self, workflow_id: str, facts: WorkflowFacts) -> QueuePlace:
        """Where the (queued) workflow stands in its queue."""
        params = {
            "workflow_id": workflow_id,
            "queue_name": facts.queue_name,
            "partition": facts.partition_key,
            "priority": facts.priority,
            "created_at": facts.created_at,
            "application_version": facts.application_version,
            "shown": SHOWN_RUNNING,
        }
        sql = _QUEUE_WHOLE if facts.partition_key is None else _QUEUE_PARTITION
        with self.sysdb.connection() as conn:
            r = conn.execute(sql, params).fetchone()
            holders = conn.execute(_HOLDERS, params).fetchall()
        if r is None:  # never: the statement selects from a one-row table
            raise DBOSException(f"no queue facts for workflow {workflow_id}")
        return QueuePlace(
            ahead=int(r[0]),
            running=int(r[1]),
            holders=[SlotHolder(*h) for h in holders],
            concurrency=r[2],
            worker_concurrency=r[3],
            limit=r[4],
            period_s=r[5],
            starts_in_window=int(r[6]),
            oldest_start_in_window=r[7],
            declared=bool(r[8]),
            declared_version=r[9],
            declarer_version_live=bool(r[10]),
            running_per_process=[int(n) for n in r[11]],
        )

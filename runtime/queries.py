"""Every DML statement the runtime sends, as a named constant. Only ``system_db`` executes them.

Values are always parameters. The schema name is fixed (``dbos``) because the table names are part
of the contract; nothing here is built by string formatting.

Times are epoch milliseconds computed by the server (``NOW_MS``) unless the caller measured them
(a step's start time), so every executor agrees on one clock.
"""

from __future__ import annotations

NOW_MS = "(extract(epoch FROM clock_timestamp()) * 1000)::bigint"

# -- starting a workflow ---------------------------------------------------------------------------

# One round trip: insert the workflow, or (when the ID exists) return what is there so the caller
# can decide between attaching to it, returning its result, or raising a conflict.
INSERT_WORKFLOW = f"""
WITH ins AS (
    INSERT INTO dbos.workflow_status (
        workflow_uuid, status, name, class_name, inputs, executor_id, application_version,
        queue_name, priority, deduplication_id, max_recovery_attempts, workflow_timeout_ms,
        workflow_deadline_epoch_ms, parent_workflow_id, forked_from, created_at, updated_at,
        started_at_epoch_ms, owner_process
    ) VALUES (
        %(workflow_uuid)s, %(status)s, %(name)s, %(class_name)s, %(inputs)s, %(executor_id)s,
        %(application_version)s, %(queue_name)s, %(priority)s, %(deduplication_id)s,
        %(max_recovery_attempts)s, %(workflow_timeout_ms)s,
        CASE WHEN %(status)s = 'PENDING' AND %(workflow_timeout_ms)s::bigint IS NOT NULL
             THEN least(%(deadline)s::bigint, {NOW_MS} + %(workflow_timeout_ms)s::bigint)
             ELSE %(deadline)s::bigint END,
        %(parent_workflow_id)s, %(forked_from)s, {NOW_MS}, {NOW_MS},
        CASE WHEN %(status)s = 'PENDING' THEN {NOW_MS} END,
        CASE WHEN %(status)s = 'PENDING' THEN %(owner_process)s END
    )
    ON CONFLICT (workflow_uuid) DO NOTHING
    RETURNING status, name, owner_epoch, workflow_deadline_epoch_ms, owner_process
)
SELECT true, status, name, owner_epoch, workflow_deadline_epoch_ms, NULL::text, NULL::text,
       NULL::text, owner_process
FROM ins
UNION ALL
SELECT false, status, name, owner_epoch, workflow_deadline_epoch_ms, output, error, executor_id,
       owner_process
FROM dbos.workflow_status
WHERE workflow_uuid = %(workflow_uuid)s AND NOT EXISTS (SELECT 1 FROM ins)
"""

SELECT_WORKFLOW_BRIEF = """
SELECT false, status, name, owner_epoch, workflow_deadline_epoch_ms, output, error, executor_id,
       owner_process
FROM dbos.workflow_status WHERE workflow_uuid = %(workflow_uuid)s
"""

# -- checkpoints -----------------------------------------------------------------------------------

# One round trip per step: record the outcome only if this runner still owns the workflow (owner
# epoch) and the workflow has not finished. FOR SHARE orders us against a concurrent takeover: the
# takeover's UPDATE waits for this statement, or this statement sees the new epoch and records
# nothing. The returned status tells the runner about a cancellation at the same time.
RECORD_STEP = """
WITH wf AS (
    SELECT status, owner_epoch FROM dbos.workflow_status
    WHERE workflow_uuid = %(workflow_uuid)s
    FOR SHARE
), ins AS (
    INSERT INTO dbos.operation_outputs (
        workflow_uuid, function_id, function_name, output, error, child_workflow_id,
        started_at_epoch_ms, completed_at_epoch_ms
    )
    SELECT %(workflow_uuid)s, %(function_id)s, %(function_name)s, %(output)s, %(error)s,
           %(child_workflow_id)s, %(started_at)s, %(completed_at)s
    FROM wf
    WHERE wf.owner_epoch = %(owner_epoch)s AND wf.status IN ('PENDING', 'CANCELLED')
    ON CONFLICT (workflow_uuid, function_id) DO NOTHING
    RETURNING 1
)
SELECT wf.status, wf.owner_epoch, EXISTS (SELECT 1 FROM ins) FROM wf
"""

SELECT_STEP = """
SELECT function_name, output, error, child_workflow_id
FROM dbos.operation_outputs
WHERE workflow_uuid = %(workflow_uuid)s AND function_id = %(function_id)s
"""

COMPLETE_WORKFLOW = f"""
UPDATE dbos.workflow_status
SET status = %(status)s, output = %(output)s, error = %(error)s, updated_at = {NOW_MS},
    completed_at_epoch_ms = {NOW_MS}, deduplication_id = NULL
WHERE workflow_uuid = %(workflow_uuid)s AND owner_epoch = %(owner_epoch)s
  AND status = 'PENDING'
RETURNING 1
"""

# -- resuming: load what a previous run recorded, in one query -------------------------------------

SELECT_RECORDED_STEPS = """
SELECT function_id, function_name, output, error, child_workflow_id
FROM dbos.operation_outputs
WHERE workflow_uuid = %(workflow_uuid)s
ORDER BY function_id
"""

# Claim a PENDING workflow for a new run (recovery): bump the epoch (fencing out any previous
# runner) and count the attempt; past the workflow's limit it goes to
# MAX_RECOVERY_ATTEMPTS_EXCEEDED instead.
CLAIM_FOR_RECOVERY = f"""
UPDATE dbos.workflow_status
SET owner_epoch = owner_epoch + 1,
    recovery_attempts = recovery_attempts + 1,
    executor_id = %(executor_id)s,
    owner_process = %(process_id)s,
    updated_at = {NOW_MS},
    status = CASE WHEN recovery_attempts + 1 > coalesce(max_recovery_attempts, %(default_max)s)
                  THEN 'MAX_RECOVERY_ATTEMPTS_EXCEEDED' ELSE 'PENDING' END
WHERE workflow_uuid = %(workflow_uuid)s AND status = 'PENDING'
  AND (%(any_owner)s OR owner_process IS NOT DISTINCT FROM %(expected_process)s)
RETURNING status, owner_epoch, name, class_name, inputs, workflow_deadline_epoch_ms,
          recovery_attempts, application_version, queue_name
"""

# Recovery at launch claims its workflows in batches: one statement per batch, not per workflow.
CLAIM_BATCH_FOR_RECOVERY = f"""
UPDATE dbos.workflow_status
SET owner_epoch = owner_epoch + 1,
    recovery_attempts = recovery_attempts + 1,
    executor_id = %(executor_id)s,
    owner_process = %(process_id)s,
    updated_at = {NOW_MS},
    status = CASE WHEN recovery_attempts + 1 > coalesce(max_recovery_attempts, %(default_max)s)
                  THEN 'MAX_RECOVERY_ATTEMPTS_EXCEEDED' ELSE 'PENDING' END
WHERE workflow_uuid = ANY(%(workflow_ids)s) AND status = 'PENDING'
RETURNING workflow_uuid, status, owner_epoch, name, class_name, inputs,
          workflow_deadline_epoch_ms, recovery_attempts, application_version, queue_name
"""

SELECT_RECORDED_STEPS_BATCH = """
SELECT workflow_uuid, function_id, function_name, output, error, child_workflow_id
FROM dbos.operation_outputs
WHERE workflow_uuid = ANY(%(workflow_ids)s)
"""

SELECT_PENDING_FOR_EXECUTOR = """
SELECT workflow_uuid FROM dbos.workflow_status
WHERE status = 'PENDING' AND executor_id = %(executor_id)s
  AND application_version = %(application_version)s
ORDER BY created_at
"""

# -- cancellation and timeouts ---------------------------------------------------------------------

CANCEL_WORKFLOW = f"""
UPDATE dbos.workflow_status
SET status = 'CANCELLED', updated_at = {NOW_MS}, deduplication_id = NULL
WHERE workflow_uuid = %(workflow_uuid)s AND status IN ('PENDING', 'ENQUEUED')
RETURNING 1
"""

# Workflows past their deadline are cancelled by whichever executor notices first, so a timeout
# holds even when the process running the workflow is stuck or gone.
CANCEL_EXPIRED = f"""
UPDATE dbos.workflow_status
SET status = 'CANCELLED', updated_at = {NOW_MS}, deduplication_id = NULL
WHERE status IN ('PENDING', 'ENQUEUED')
  AND workflow_deadline_epoch_ms IS NOT NULL AND workflow_deadline_epoch_ms < {NOW_MS}
RETURNING workflow_uuid
"""

# -- reading ---------------------------------------------------------------------------------------

WORKFLOW_COLUMNS = """
workflow_uuid, status, name, class_name, inputs, output, error, executor_id, application_version,
queue_name, recovery_attempts, created_at, updated_at, parent_workflow_id, forked_from, priority,
deduplication_id, workflow_timeout_ms, workflow_deadline_epoch_ms, started_at_epoch_ms,
completed_at_epoch_ms
"""

SELECT_WORKFLOW = (
    "SELECT "
    + WORKFLOW_COLUMNS
    + " FROM dbos.workflow_status WHERE workflow_uuid = %(workflow_uuid)s"
)

SELECT_STEPS = """
SELECT function_id, function_name, output, error, child_workflow_id, started_at_epoch_ms,
       completed_at_epoch_ms
FROM dbos.operation_outputs
WHERE workflow_uuid = %(workflow_uuid)s
ORDER BY function_id
"""

SELECT_OWNERSHIP = """
SELECT status, owner_epoch FROM dbos.workflow_status WHERE workflow_uuid = %(workflow_uuid)s
"""

SELECT_STATUS_RESULT = """
SELECT status, output, error FROM dbos.workflow_status WHERE workflow_uuid = %(workflow_uuid)s
"""

# -- messages, events, sleep -----------------------------------------------------------------------
# Each is one round trip that does the operation and records it as the workflow's step together,
# under the same owner-epoch fence as RECORD_STEP, so it happens exactly once.

_FENCED_WF = """
wf AS (
    SELECT status, owner_epoch FROM dbos.workflow_status
    WHERE workflow_uuid = %(workflow_uuid)s
    FOR SHARE
)"""

_RECORD_OP = (
    """
ins AS (
    INSERT INTO dbos.operation_outputs (
        workflow_uuid, function_id, function_name, output, error, child_workflow_id,
        started_at_epoch_ms, completed_at_epoch_ms
    )
    SELECT %(workflow_uuid)s, %(function_id)s, %(function_name)s, {output}, NULL, NULL,
           %(started_at)s, """
    + NOW_MS
    + """
    FROM wf
    WHERE wf.owner_epoch = %(owner_epoch)s AND wf.status IN ('PENDING', 'CANCELLED') {extra}
    ON CONFLICT (workflow_uuid, function_id) DO NOTHING
    RETURNING 1
)"""
)

SEND_FROM_WORKFLOW = (
    "WITH "
    + _FENCED_WF
    + """,
dest AS (SELECT 1 FROM dbos.workflow_status WHERE workflow_uuid = %(destination)s),"""
    + _RECORD_OP.format(output="NULL", extra="AND EXISTS (SELECT 1 FROM dest)")
    + """,
msg AS (
    INSERT INTO dbos.notifications (destination_uuid, topic, message)
    SELECT %(destination)s, %(topic)s, %(message)s WHERE EXISTS (SELECT 1 FROM ins)
    RETURNING 1
)
SELECT wf.status, wf.owner_epoch, EXISTS (SELECT 1 FROM ins), EXISTS (SELECT 1 FROM dest)
FROM wf
"""
)

# From outside a workflow; with an idempotency key the message is delivered at most once per key.
SEND_FROM_OUTSIDE = """
WITH dest AS (SELECT 1 FROM dbos.workflow_status WHERE workflow_uuid = %(destination)s),
key AS (
    INSERT INTO dbos.idempotent_sends (destination_uuid, idempotency_key)
    SELECT %(destination)s, %(idempotency_key)s
    FROM dest WHERE %(idempotency_key)s::text IS NOT NULL
    ON CONFLICT (destination_uuid, idempotency_key) DO NOTHING
    RETURNING 1
),
msg AS (
    INSERT INTO dbos.notifications (destination_uuid, topic, message)
    SELECT %(destination)s, %(topic)s, %(message)s
    FROM dest
    WHERE %(idempotency_key)s::text IS NULL OR EXISTS (SELECT 1 FROM key)
    RETURNING 1
)
SELECT EXISTS (SELECT 1 FROM dest), EXISTS (SELECT 1 FROM msg)
"""

# Consume the oldest message on (workflow, topic) and record it as the recv's outcome, in one
# statement: a message is received exactly once even if the process dies right after.
RECV = (
    "WITH "
    + _FENCED_WF
    + """,
msg AS (
    DELETE FROM dbos.notifications
    WHERE message_uuid = (
        SELECT message_uuid FROM dbos.notifications
        WHERE destination_uuid = %(workflow_uuid)s AND topic IS NOT DISTINCT FROM %(topic)s
        ORDER BY seq
        LIMIT 1
        FOR UPDATE SKIP LOCKED
    )
    AND EXISTS (
        SELECT 1 FROM wf
        WHERE owner_epoch = %(owner_epoch)s AND status IN ('PENDING', 'CANCELLED')
    )
    -- A retry after a lost reply must not consume a second message for the same recv.
    AND NOT EXISTS (
        SELECT 1 FROM dbos.operation_outputs
        WHERE workflow_uuid = %(workflow_uuid)s AND function_id = %(function_id)s
    )
    RETURNING message
),"""
    + _RECORD_OP.format(output="(SELECT message FROM msg)", extra="AND EXISTS (SELECT 1 FROM msg)")
    + """
SELECT wf.status, wf.owner_epoch, (SELECT message FROM msg), EXISTS (SELECT 1 FROM ins)
FROM wf
"""
)

SET_EVENT = (
    "WITH "
    + _FENCED_WF
    + ","
    + _RECORD_OP.format(output="NULL", extra="")
    + """,
ev AS (
    INSERT INTO dbos.workflow_events (workflow_uuid, key, value)
    SELECT %(workflow_uuid)s, %(key)s, %(value)s WHERE EXISTS (SELECT 1 FROM ins)
    ON CONFLICT (workflow_uuid, key) DO UPDATE SET value = EXCLUDED.value
    RETURNING 1
)
SELECT wf.status, wf.owner_epoch, EXISTS (SELECT 1 FROM ins) FROM wf
"""
)

GET_EVENT = """
SELECT value FROM dbos.workflow_events WHERE workflow_uuid = %(workflow_uuid)s AND key = %(key)s
"""

# -- queues ----------------------------------------------------------------------------------------

# Serialises the dispatchers of one queue (across processes) while they count and claim, so a global
# concurrency limit or a rate limit is never exceeded. Queues without either skip the lock.
LOCK_QUEUE = "SELECT pg_advisory_xact_lock(hashtextextended(%(lock_key)s, 0))"

COUNT_QUEUE_RUNNING = """
SELECT count(*) FROM dbos.workflow_status
WHERE queue_name = %(queue_name)s AND status = 'PENDING'
"""

COUNT_QUEUE_STARTS = """
SELECT count(*), min(started_at_epoch_ms) FROM dbos.workflow_status
WHERE queue_name = %(queue_name)s AND started_at_epoch_ms > %(since_ms)s
"""

# Claim up to %(limit)s ready workflows in priority then arrival order; skip rows another dispatcher
# holds. Workflows enqueued without a version (by a client) take the claimer's.
DEQUEUE = f"""
UPDATE dbos.workflow_status w
SET status = 'PENDING',
    executor_id = %(executor_id)s,
    owner_process = %(process_id)s,
    application_version = coalesce(w.application_version, %(application_version)s),
    owner_epoch = w.owner_epoch + 1,
    started_at_epoch_ms = {NOW_MS},
    updated_at = {NOW_MS},
    workflow_deadline_epoch_ms = CASE WHEN w.workflow_timeout_ms IS NOT NULL
        THEN {NOW_MS} + w.workflow_timeout_ms ELSE w.workflow_deadline_epoch_ms END
WHERE w.workflow_uuid IN (
    SELECT workflow_uuid FROM dbos.workflow_status
    WHERE queue_name = %(queue_name)s AND status = 'ENQUEUED'
      AND (application_version IS NULL OR application_version = %(application_version)s)
      AND name = ANY(%(names)s)
    ORDER BY priority, created_at
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
RETURNING w.workflow_uuid, w.status, w.owner_epoch, w.name, w.class_name, w.inputs,
          w.workflow_deadline_epoch_ms, w.recovery_attempts, w.application_version,
          w.queue_name,
          EXISTS (SELECT 1 FROM dbos.operation_outputs o WHERE o.workflow_uuid = w.workflow_uuid),
          w.priority, w.created_at
"""

# -- management ------------------------------------------------------------------------------------

# list_workflows composes its WHERE clause from these fixed fragments (never from user text); each
# filter is served by an index of the form (column, created_at).
LIST_WORKFLOWS_SELECT = (
    "SELECT workflow_uuid, status, name, class_name, "
    "CASE WHEN %(load_input)s THEN inputs END, "
    "CASE WHEN %(load_output)s THEN output END, "
    "CASE WHEN %(load_output)s THEN error END, "
    "executor_id, application_version, queue_name, recovery_attempts, created_at, updated_at, "
    "parent_workflow_id, forked_from, priority, deduplication_id, workflow_timeout_ms, "
    "workflow_deadline_epoch_ms, started_at_epoch_ms, completed_at_epoch_ms "
    "FROM dbos.workflow_status"
)
LIST_FILTERS = {
    "workflow_ids": "workflow_uuid = ANY(%(workflow_ids)s)",
    "status": "status = ANY(%(status)s)",
    "name": "name = %(name)s",
    "app_version": "application_version = %(app_version)s",
    "queue_name": "queue_name = %(queue_name)s",
    "start_time": "created_at >= %(start_time)s",
    "end_time": "created_at <= %(end_time)s",
    "queued_only": "queue_name IS NOT NULL AND status IN ('ENQUEUED', 'PENDING')",
    # Keyset pagination (newest first): rows older than the last one shown.
    "before": "(created_at, workflow_uuid) < (%(before_ts)s, %(before_id)s)",
}
ORDER_ASC = " ORDER BY created_at ASC, workflow_uuid ASC"
ORDER_DESC = " ORDER BY created_at DESC, workflow_uuid DESC"
LIMIT_OFFSET = " LIMIT %(limit)s OFFSET %(offset)s"

# Management acts on the database alone: a resumed workflow is made ready on the internal queue
# (its inputs and recorded steps stay), and a live executor of its version picks it up.
RESUME_WORKFLOW = f"""
UPDATE dbos.workflow_status
SET status = 'ENQUEUED',
    queue_name = %(internal_queue)s,
    priority = 0,
    recovery_attempts = 0,
    deduplication_id = NULL,
    executor_id = NULL,
    owner_process = NULL,
    workflow_deadline_epoch_ms = NULL,
    updated_at = {NOW_MS}
WHERE workflow_uuid = %(workflow_uuid)s
  AND status IN ('CANCELLED', 'PENDING', 'ENQUEUED', 'MAX_RECOVERY_ATTEMPTS_EXCEEDED')
RETURNING 1
"""

MAX_FUNCTION_ID = """
SELECT coalesce(max(function_id), 0) FROM dbos.operation_outputs
WHERE workflow_uuid = %(workflow_uuid)s
"""

# Fork: a new workflow with the original's inputs, ready on the internal queue, keeping the recorded
# outcomes of the steps before %(start_step)s (copied in the same transaction).
FORK_WORKFLOW = f"""
INSERT INTO dbos.workflow_status (
    workflow_uuid, status, name, class_name, inputs, application_version, queue_name, priority,
    max_recovery_attempts, workflow_timeout_ms, forked_from, created_at, updated_at
)
SELECT %(new_id)s, 'ENQUEUED', name, class_name, inputs,
       coalesce(%(application_version)s, application_version), %(internal_queue)s, 0,
       max_recovery_attempts, workflow_timeout_ms, workflow_uuid, {NOW_MS}, {NOW_MS}
FROM dbos.workflow_status
WHERE workflow_uuid = %(workflow_uuid)s
"""

COPY_STEPS = """
INSERT INTO dbos.operation_outputs (
    workflow_uuid, function_id, function_name, output, error, child_workflow_id,
    started_at_epoch_ms, completed_at_epoch_ms
)
SELECT %(new_id)s, function_id, function_name, output, error, child_workflow_id,
       started_at_epoch_ms, completed_at_epoch_ms
FROM dbos.operation_outputs
WHERE workflow_uuid = %(workflow_uuid)s AND function_id < %(start_step)s
"""

# -- executors -------------------------------------------------------------------------------------

REGISTER_EXECUTOR = f"""
INSERT INTO dbos.executors (
    process_id, executor_id, hostname, pid, application_version, lease_ms, started_at,
    last_heartbeat_at
) VALUES (
    %(process_id)s, %(executor_id)s, %(hostname)s, %(pid)s, %(application_version)s,
    %(lease_ms)s, {NOW_MS}, {NOW_MS}
)
"""

# Heartbeat, and report the other live processes that use the same executor ID (a configuration
# mistake that the operator must hear about: they will take each other's workflows).
HEARTBEAT = f"""
WITH beat AS (
    UPDATE dbos.executors SET last_heartbeat_at = {NOW_MS}, stopped_at = NULL
    WHERE process_id = %(process_id)s
    RETURNING executor_id
)
SELECT e.process_id, e.hostname, e.pid
FROM dbos.executors e, beat
WHERE e.executor_id = beat.executor_id AND e.process_id <> %(process_id)s
  AND e.stopped_at IS NULL AND e.last_heartbeat_at > {NOW_MS} - e.lease_ms
"""

STOP_EXECUTOR = f"""
WITH stopped AS (
    UPDATE dbos.executors SET stopped_at = {NOW_MS} WHERE process_id = %(process_id)s
    RETURNING executor_id
)
SELECT pg_notify('dbos_executor_channel', executor_id) FROM stopped
"""

# PENDING workflows of this version whose process is dead (silent past its lease, stopped, or
# forgotten): ready for takeover. Served by the partial index on live workflows per version.
TAKEOVER_CANDIDATES = f"""
SELECT w.workflow_uuid, w.owner_process
FROM dbos.workflow_status w
WHERE w.status = 'PENDING' AND w.application_version = %(application_version)s
  AND w.owner_process IS NOT NULL AND w.owner_process <> %(process_id)s
  AND NOT EXISTS (
      SELECT 1 FROM dbos.executors e
      WHERE e.process_id = w.owner_process AND e.stopped_at IS NULL
        AND e.last_heartbeat_at > {NOW_MS} - e.lease_ms
  )
ORDER BY w.created_at
LIMIT %(limit)s
"""

# This process's PENDING workflows untouched for a while: those it does not run are claims whose
# reply was lost (the caller filters out the ones it runs).
OWN_PENDING = f"""
SELECT workflow_uuid FROM dbos.workflow_status
WHERE status = 'PENDING' AND owner_process = %(process_id)s
  AND updated_at < {NOW_MS} - %(grace_ms)s
"""

# Forget processes that have been gone for a day; their workflows were taken over long ago.
PRUNE_EXECUTORS = f"""
DELETE FROM dbos.executors
WHERE last_heartbeat_at < {NOW_MS} - 86400000
"""

LIST_EXECUTORS = f"""
SELECT e.process_id, e.executor_id, e.hostname, e.pid, e.application_version, e.lease_ms,
       e.started_at, e.last_heartbeat_at, e.stopped_at,
       (e.stopped_at IS NULL AND e.last_heartbeat_at > {NOW_MS} - e.lease_ms) AS alive,
       (SELECT count(*) FROM dbos.workflow_status w
        WHERE w.status = 'PENDING' AND w.executor_id = e.executor_id) AS pending
FROM dbos.executors e
ORDER BY e.started_at DESC
LIMIT %(limit)s
"""

# Which versions still have work to do, and how many live processes run each: an old deployment
# can be shut down when its version has nothing PENDING or ENQUEUED.
VERSION_WORK = f"""
SELECT v.application_version,
       (SELECT count(*) FROM dbos.workflow_status w
        WHERE w.application_version = v.application_version AND w.status = 'PENDING'),
       (SELECT count(*) FROM dbos.workflow_status w
        WHERE w.application_version = v.application_version AND w.status = 'ENQUEUED'),
       (SELECT count(*) FROM dbos.executors e
        WHERE e.application_version = v.application_version AND e.stopped_at IS NULL
          AND e.last_heartbeat_at > {NOW_MS} - e.lease_ms)
FROM (
    SELECT DISTINCT application_version FROM dbos.executors
    UNION
    SELECT DISTINCT application_version FROM dbos.workflow_status
    WHERE status IN ('PENDING', 'ENQUEUED') AND application_version IS NOT NULL
) v
ORDER BY 1
"""

# -- queue overview --------------------------------------------------------------------------------

RECORD_QUEUE_CONFIG = f"""
INSERT INTO dbos.queue_config (
    queue_name, concurrency, worker_concurrency, limit_count, limit_period_s, priority_enabled,
    application_version, updated_at
) VALUES (
    %(queue_name)s, %(concurrency)s, %(worker_concurrency)s, %(limit_count)s, %(limit_period_s)s,
    %(priority_enabled)s, %(application_version)s, {NOW_MS}
)
ON CONFLICT (queue_name) DO UPDATE SET
    concurrency = EXCLUDED.concurrency,
    worker_concurrency = EXCLUDED.worker_concurrency,
    limit_count = EXCLUDED.limit_count,
    limit_period_s = EXCLUDED.limit_period_s,
    priority_enabled = EXCLUDED.priority_enabled,
    application_version = EXCLUDED.application_version,
    updated_at = EXCLUDED.updated_at
"""

# Every queue that is declared or holds live work: its limits, depth and running count.
QUEUE_OVERVIEW = """
SELECT n.queue_name, c.concurrency, c.worker_concurrency, c.limit_count, c.limit_period_s,
       coalesce(c.priority_enabled, false), c.application_version, c.updated_at,
       (SELECT count(*) FROM dbos.workflow_status w
        WHERE w.queue_name = n.queue_name AND w.status = 'ENQUEUED'),
       (SELECT count(*) FROM dbos.workflow_status w
        WHERE w.queue_name = n.queue_name AND w.status = 'PENDING')
FROM (
    SELECT queue_name FROM dbos.queue_config
    UNION
    SELECT DISTINCT queue_name FROM dbos.workflow_status
    WHERE status IN ('ENQUEUED', 'PENDING') AND queue_name IS NOT NULL
) n
LEFT JOIN dbos.queue_config c ON c.queue_name = n.queue_name
ORDER BY n.queue_name
"""

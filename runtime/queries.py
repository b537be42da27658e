"""Every DML statement the runtime sends, as a named constant. Only ``system_db`` executes them.

Values are always parameters. The schema name is fixed (``dbos``) because the table names are part
of the contract; nothing here is built by string formatting.

Times are epoch milliseconds computed by the server (``NOW_MS``) unless the caller measured them
(a step's start time), so every executor agrees on one clock.
"""

from __future__ import annotations

NOW_MS = "(extract(epoch FROM clock_timestamp()) * 1000)::bigint"

# A process is alive while it has not stopped and has heartbeated within its lease.
_ALIVE_PROCESS = f"""
    SELECT 1 FROM dbos.executors e
    WHERE e.process_id = w.owner_process AND e.stopped_at IS NULL
      AND e.last_heartbeat_at > {NOW_MS} - e.lease_ms"""

# The rule every claim obeys: a workflow row may be claimed only when no live process owns it (no
# owner, or one that stopped or went silent past its lease). So a runner that an operator cancelled
# keeps the workflow until it has really stopped, and a rolling restart never takes over what a
# live process is running. The row alias must be ``w``.
OWNER_ABSENT = f"(w.owner_process IS NULL OR NOT EXISTS ({_ALIVE_PROCESS}))"

# -- starting a workflow ---------------------------------------------------------------------------

# One round trip: insert the workflow, or (when the ID exists) return what is there so the caller
# can decide between attaching to it, returning its result, or raising a conflict.
INSERT_WORKFLOW = f"""
WITH ins AS (
    INSERT INTO dbos.workflow_status (
        workflow_uuid, status, name, class_name, inputs, executor_id, application_version,
        queue_name, priority, deduplication_id, max_recovery_attempts, workflow_timeout_ms,
        workflow_deadline_epoch_ms, parent_workflow_id, forked_from, created_at, updated_at,
        started_at_epoch_ms, owner_process, recovery_attempts, config_name, queue_partition_key,
        delay_until_epoch_ms, attributes, debounce_deadline_epoch_ms, is_debounced, schedule_name
    ) VALUES (
        %(workflow_uuid)s, %(status)s, %(name)s, %(class_name)s, %(inputs)s, %(executor_id)s,
        %(application_version)s, %(queue_name)s, %(priority)s, %(deduplication_id)s,
        %(max_recovery_attempts)s, %(workflow_timeout_ms)s,
        CASE WHEN %(status)s = 'PENDING' AND %(workflow_timeout_ms)s::bigint IS NOT NULL
             THEN least(%(deadline)s::bigint, {NOW_MS} + %(workflow_timeout_ms)s::bigint)
             ELSE %(deadline)s::bigint END,
        %(parent_workflow_id)s, %(forked_from)s, {NOW_MS}, {NOW_MS},
        CASE WHEN %(status)s = 'PENDING' THEN {NOW_MS} END,
        CASE WHEN %(status)s = 'PENDING' THEN %(owner_process)s END,
        -- As DBOS counts: each start of a run is an attempt (the first included), recovery or not.
        CASE WHEN %(status)s = 'PENDING' THEN 1 ELSE 0 END, %(config_name)s,
        %(queue_partition_key)s, %(delay_until_epoch_ms)s, %(attributes)s::jsonb,
        %(debounce_deadline_epoch_ms)s, %(is_debounced)s, %(schedule_name)s
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
        started_at_epoch_ms, completed_at_epoch_ms, wait_target, attempts
    )
    SELECT %(workflow_uuid)s, %(function_id)s, %(function_name)s, %(output)s, %(error)s,
           %(child_workflow_id)s, %(started_at)s, %(completed_at)s, %(wait_target)s,
           %(attempts)s
    FROM wf
    WHERE wf.owner_epoch = %(owner_epoch)s AND wf.status IN ('PENDING', 'CANCELLED', 'ENQUEUED')
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

# The one claim of recorded PENDING workflows (recovery at launch, takeover, a parent's replay
# reaching its child, a lost reply's orphan): bump the epoch (fencing out any previous runner) and
# count the attempt (the first run was attempt 1, so a workflow may reach max_recovery_attempts +
# 1); past the workflow's limit it goes to MAX_RECOVERY_ATTEMPTS_EXCEEDED instead, owned by no one.
# Only rows no live process owns are claimed (``OWNER_ABSENT``), except this
# process's own orphans when ``reclaim_from`` names it. A row another transaction holds (a takeover
# under way, a step's fencing-token check in flight) is skipped, never waited for: a claim must not
# stall the process that makes it. Of the IDs given, nothing else can be claimed.
# A workflow's recovery limit: its own (set when it started in a process that registers it), else
# the limit its name is registered with in the claiming process (a client's enqueue records none:
# DBOS then applies the decorator's), else the default.
_RECOVERY_LIMIT = (
    "coalesce(w.max_recovery_attempts, (%(name_limits)s::jsonb ->> w.name)::int, %(default_max)s)"
)
CLAIM_PENDING = f"""
WITH claimable AS MATERIALIZED (
    SELECT w.workflow_uuid FROM dbos.workflow_status w
    WHERE w.workflow_uuid = ANY(%(workflow_ids)s) AND w.status = 'PENDING'
      AND w.application_version = %(application_version)s
      AND (w.owner_process = %(reclaim_from)s OR {OWNER_ABSENT})
    FOR UPDATE OF w SKIP LOCKED
)
UPDATE dbos.workflow_status w
SET owner_epoch = nextval('dbos.owner_epoch_seq'::regclass),  -- never an epoch held before
    recovery_attempts = w.recovery_attempts + 1,
    executor_id = %(executor_id)s,
    owner_process = CASE WHEN w.recovery_attempts > {_RECOVERY_LIMIT}
                         THEN NULL ELSE %(process_id)s END,
    updated_at = {NOW_MS},
    status = CASE WHEN w.recovery_attempts > {_RECOVERY_LIMIT}
                  THEN 'MAX_RECOVERY_ATTEMPTS_EXCEEDED' ELSE 'PENDING' END
FROM claimable
WHERE w.workflow_uuid = claimable.workflow_uuid
RETURNING w.workflow_uuid, w.status, w.owner_epoch, w.name, w.class_name, w.inputs,
          w.workflow_deadline_epoch_ms, w.recovery_attempts, w.application_version, w.queue_name,
          w.config_name
"""

# A runner that stops without finishing (cancelled, or its final write refused) gives the workflow
# back, so that a resume can claim it; its queue slot frees at the same moment. Only while it still
# owns it (epoch and process), and never a PENDING row (that one is still to be run: a shutdown
# leaves it to the process's successor).
RELEASE_WORKFLOW = f"""
WITH released AS (
    UPDATE dbos.workflow_status
    SET owner_process = NULL, updated_at = {NOW_MS}
    WHERE workflow_uuid = %(workflow_uuid)s AND owner_epoch = %(owner_epoch)s
      AND owner_process = %(process_id)s AND status <> 'PENDING'
    RETURNING queue_name
)
SELECT pg_notify('dbos_queue_channel', queue_name) FROM released WHERE queue_name IS NOT NULL
"""

# Rows a process holds without running them: cancelled or resumed workflows whose runner died
# before releasing them (any dead owner), or whose release this process failed to write (its own).
RELEASE_ABANDONED = f"""
WITH abandoned AS MATERIALIZED (
    SELECT w.workflow_uuid FROM dbos.workflow_status w
    WHERE w.owner_process IS NOT NULL AND w.status IN ('CANCELLED', 'ENQUEUED')
      AND ((w.owner_process = %(process_id)s AND NOT w.workflow_uuid = ANY(%(running)s))
           OR NOT EXISTS ({_ALIVE_PROCESS}))
    FOR UPDATE OF w SKIP LOCKED
), released AS (
    UPDATE dbos.workflow_status w
    SET owner_process = NULL, updated_at = {NOW_MS}
    FROM abandoned
    WHERE w.workflow_uuid = abandoned.workflow_uuid
    RETURNING w.queue_name
)
SELECT pg_notify('dbos_queue_channel', q.queue_name)
FROM (SELECT DISTINCT queue_name FROM released WHERE queue_name IS NOT NULL) q
"""

SELECT_RECORDED_STEPS_BATCH = """
SELECT workflow_uuid, function_id, function_name, output, error, child_workflow_id
FROM dbos.operation_outputs
WHERE workflow_uuid = ANY(%(workflow_ids)s)
"""

# What a parked workflow needs to go on (no claim: its runner still owns it, at the same epoch).
SELECT_TO_RUN = """
SELECT workflow_uuid, status, owner_epoch, name, class_name, inputs, workflow_deadline_epoch_ms,
       recovery_attempts, application_version, queue_name, config_name
FROM dbos.workflow_status WHERE workflow_uuid = ANY(%(workflow_ids)s)
"""

# Wake-ups of parked workflows that a notification may not have brought: the awaited workflows
# that finished, the parked ones no longer PENDING here (cancelled, taken over), and the messages
# and events they wait for that are there.
SELECT_AWAITED_FINISHED = """
SELECT workflow_uuid FROM dbos.workflow_status
WHERE workflow_uuid = ANY(%(workflow_ids)s)
  AND status IN ('SUCCESS', 'ERROR', 'MAX_RECOVERY_ATTEMPTS_EXCEEDED')
"""
SELECT_PARKED_CHANGED = """
SELECT workflow_uuid FROM dbos.workflow_status
WHERE workflow_uuid = ANY(%(workflow_ids)s)
  AND (status <> 'PENDING' OR owner_process IS DISTINCT FROM %(process_id)s)
"""
SELECT_MESSAGES_WAITING = """
SELECT DISTINCT destination_uuid, topic FROM dbos.notifications
WHERE destination_uuid = ANY(%(workflow_ids)s)
"""
SELECT_EVENTS_SET = """
SELECT workflow_uuid, key FROM dbos.workflow_events WHERE workflow_uuid = ANY(%(workflow_ids)s)
"""

SELECT_PENDING_FOR_EXECUTOR = """
SELECT workflow_uuid FROM dbos.workflow_status
WHERE status = 'PENDING' AND executor_id = %(executor_id)s
  AND application_version = %(application_version)s
ORDER BY created_at
"""

# -- cancellation and timeouts ---------------------------------------------------------------------

# The workflows a cancel takes (alias w); a dry run of a cancel evaluates the same predicate.
CANCELLABLE = "w.status IN ('PENDING', 'ENQUEUED', 'DELAYED')"

CANCEL_WORKFLOW = f"""
UPDATE dbos.workflow_status w
SET status = 'CANCELLED', updated_at = {NOW_MS}, deduplication_id = NULL
WHERE w.workflow_uuid = %(workflow_uuid)s AND {CANCELLABLE}
RETURNING 1
"""

# Workflows past their deadline are cancelled by whichever executor notices first, so a timeout
# holds even when the process running the workflow is stuck or gone. A row held by another
# transaction is left for the next sweep rather than waited for.
CANCEL_EXPIRED = f"""
WITH expired AS MATERIALIZED (
    SELECT w.workflow_uuid FROM dbos.workflow_status w
    WHERE w.status IN ('PENDING', 'ENQUEUED')
      AND w.workflow_deadline_epoch_ms IS NOT NULL AND w.workflow_deadline_epoch_ms < {NOW_MS}
    FOR UPDATE OF w SKIP LOCKED
)
UPDATE dbos.workflow_status w
SET status = 'CANCELLED', updated_at = {NOW_MS}, deduplication_id = NULL
FROM expired
WHERE w.workflow_uuid = expired.workflow_uuid
RETURNING w.workflow_uuid
"""

# -- reading ---------------------------------------------------------------------------------------

# DBOS's WorkflowStatus.was_forked_from (does a fork name this workflow?), computed: a probe of
# the forked_from index per row. An EXISTS may be planned as a full scan hashing every forked_from.
WAS_FORKED_FROM = (
    "coalesce((SELECT true FROM dbos.workflow_status f "
    "WHERE f.forked_from = workflow_status.workflow_uuid LIMIT 1), false)"
)

WORKFLOW_COLUMNS = """
workflow_uuid, status, name, class_name, inputs, output, error, executor_id, application_version,
queue_name, recovery_attempts, created_at, updated_at, parent_workflow_id, forked_from, priority,
deduplication_id, workflow_timeout_ms, workflow_deadline_epoch_ms, started_at_epoch_ms,
completed_at_epoch_ms, config_name, queue_partition_key, delay_until_epoch_ms, """ + (
    WAS_FORKED_FROM + ", attributes, schedule_name"
)

SELECT_WORKFLOW = (
    "SELECT "
    + WORKFLOW_COLUMNS
    + " FROM dbos.workflow_status WHERE workflow_uuid = %(workflow_uuid)s"
)

SELECT_STEPS = """
SELECT function_id, function_name, output, error, child_workflow_id, started_at_epoch_ms,
       completed_at_epoch_ms, attempts
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
    WHERE wf.owner_epoch = %(owner_epoch)s
      AND wf.status IN ('PENDING', 'CANCELLED', 'ENQUEUED') {extra}
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
picked AS MATERIALIZED (
    SELECT message_uuid FROM dbos.notifications
    WHERE destination_uuid = %(workflow_uuid)s AND topic IS NOT DISTINCT FROM %(topic)s
    ORDER BY seq
    LIMIT 1
    FOR UPDATE SKIP LOCKED
),
msg AS (
    DELETE FROM dbos.notifications n
    USING picked
    WHERE n.message_uuid = picked.message_uuid
    AND EXISTS (
        SELECT 1 FROM wf
        WHERE owner_epoch = %(owner_epoch)s AND status IN ('PENDING', 'CANCELLED', 'ENQUEUED')
    )
    -- A retry after a lost reply must not consume a second message for the same recv.
    AND NOT EXISTS (
        SELECT 1 FROM dbos.operation_outputs
        WHERE workflow_uuid = %(workflow_uuid)s AND function_id = %(function_id)s
    )
    RETURNING n.message
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

# A workflow that left PENDING (cancelled, or resumed to ENQUEUED) while its runner is still alive
# (it is in a step): it keeps its queue slot until that runner stops. The row alias must be ``w``.
SLOT_HELD_AFTER_RUN = (
    f"w.owner_process IS NOT NULL AND w.status IN ('CANCELLED', 'ENQUEUED') AND NOT {OWNER_ABSENT}"
)

# The dequeue's version rule: a claimer takes unversioned rows and rows of its own version.
DEQUEUE_VERSION = (
    "(w.application_version IS NULL OR w.application_version = %(application_version)s)"
)

# A row the dequeue may claim (apart from version and registered names): ENQUEUED, and no live
# runner still holds it. Its order is DEQUEUE_ORDER.
DEQUEUE_READY = f"w.status = 'ENQUEUED' AND {OWNER_ABSENT}"
DEQUEUE_ORDER = "w.priority, w.created_at"

# A queue's slots in use: its running (PENDING) workflows, plus those holding a slot after their
# run (SLOT_HELD_AFTER_RUN); two counts, each by its own index. ``{part}``: a partition or nothing.
_COUNT_QUEUE_RUNNING = f"""
SELECT (SELECT count(*) FROM dbos.workflow_status w
        WHERE w.queue_name = %(queue_name)s AND w.status = 'PENDING' {{part}})
     + (SELECT count(*) FROM dbos.workflow_status w
        WHERE {SLOT_HELD_AFTER_RUN} AND w.queue_name = %(queue_name)s {{part}})
"""

_COUNT_QUEUE_STARTS = """
SELECT count(*), min(started_at_epoch_ms) FROM dbos.workflow_status
WHERE queue_name = %(queue_name)s AND started_at_epoch_ms > %(since_ms)s {part}
"""

# How many a claim may take: %(limit)s, and with a global concurrency no more than the free slots,
# counted in the claim itself under the queue's lock (taken by an earlier statement of the same
# transaction, so this snapshot sees every claim committed before). No concurrency: no count.
_DEQUEUE_LIMIT = f"""CASE WHEN %(concurrency)s::int IS NULL THEN %(limit)s::int
         ELSE greatest(0, least(%(limit)s::int, %(concurrency)s::int - (
{_COUNT_QUEUE_RUNNING.strip()}))) END"""

# Claim up to _DEQUEUE_LIMIT ready workflows in priority then arrival order; skip rows another
# dispatcher holds, and rows whose previous runner (cancelled, then resumed) has not stopped yet.
# The rows are chosen once, in a MATERIALIZED CTE, and the UPDATE joins to them: with ``IN (SELECT
# ... LIMIT n FOR UPDATE SKIP LOCKED)`` Postgres may run the sub-select again for each outer row
# (a nested loop on a table it believes tiny) or on a recheck, and each run can skip to other rows,
# so one statement could claim more than n. Workflows enqueued without a version (by a client) take
# the claimer's.
_DEQUEUE = f"""
WITH picked AS MATERIALIZED (
    SELECT w.workflow_uuid FROM dbos.workflow_status w
    WHERE w.queue_name = %(queue_name)s AND {DEQUEUE_READY} {{part}}
      AND {DEQUEUE_VERSION}
      AND w.name = ANY(%(names)s)
    ORDER BY {DEQUEUE_ORDER}
    LIMIT {_DEQUEUE_LIMIT}
    FOR UPDATE OF w SKIP LOCKED
)
UPDATE dbos.workflow_status w
SET status = 'PENDING',
    executor_id = %(executor_id)s,
    owner_process = %(process_id)s,
    application_version = coalesce(w.application_version, %(application_version)s),
    owner_epoch = nextval('dbos.owner_epoch_seq'::regclass),
    recovery_attempts = w.recovery_attempts + 1,  -- a dequeue starts a run: one attempt
    started_at_epoch_ms = {NOW_MS},
    updated_at = {NOW_MS},
    workflow_deadline_epoch_ms = CASE WHEN w.workflow_timeout_ms IS NOT NULL
        THEN {NOW_MS} + w.workflow_timeout_ms ELSE w.workflow_deadline_epoch_ms END
FROM picked
WHERE w.workflow_uuid = picked.workflow_uuid
RETURNING w.workflow_uuid, w.status, w.owner_epoch, w.name, w.class_name, w.inputs,
          w.workflow_deadline_epoch_ms, w.recovery_attempts, w.application_version,
          w.queue_name,
          EXISTS (SELECT 1 FROM dbos.operation_outputs o WHERE o.workflow_uuid = w.workflow_uuid),
          w.priority, w.created_at, w.config_name
"""

# For a queue, and for one partition (equality: the partition indexes of migration 4 serve it).
_IN_PARTITION = "AND queue_partition_key = %(partition)s"
COUNT_QUEUE_RUNNING = _COUNT_QUEUE_RUNNING.format(part="")
COUNT_PARTITION_RUNNING = _COUNT_QUEUE_RUNNING.format(part=_IN_PARTITION)
COUNT_QUEUE_STARTS = _COUNT_QUEUE_STARTS.format(part="")
COUNT_PARTITION_STARTS = _COUNT_QUEUE_STARTS.format(part=_IN_PARTITION)
DEQUEUE = _DEQUEUE.format(part="")
DEQUEUE_PARTITION = _DEQUEUE.format(part="AND w." + _IN_PARTITION.removeprefix("AND "))

# The partitions of a partitioned queue that have ENQUEUED work (one index-only skip per key).
READY_PARTITIONS = """
SELECT DISTINCT queue_partition_key FROM dbos.workflow_status
WHERE queue_name = %(queue_name)s AND status = 'ENQUEUED' AND queue_partition_key IS NOT NULL
"""

# DELAYED workflows of these queues whose delay has passed become ENQUEUED (created_at kept); a
# NOTIFY wakes every process's dispatchers. now() (stable), not NOW_MS: the delay bound is an index
# condition. Rows another holds wait for the next pass (SKIP LOCKED: no lock-order cycle).
PROMOTE_DELAYED = f"""
WITH picked AS MATERIALIZED (
    SELECT workflow_uuid FROM dbos.workflow_status
    WHERE status = 'DELAYED' AND delay_until_epoch_ms <= (extract(epoch FROM now()) * 1000)::bigint
      AND queue_name = ANY(%(queue_names)s) FOR UPDATE SKIP LOCKED
), due AS (
    UPDATE dbos.workflow_status w SET status = 'ENQUEUED', updated_at = {NOW_MS},
        -- A debounce key is held only while DELAYED: a later call starts a new workflow.
        deduplication_id = CASE WHEN w.is_debounced THEN NULL ELSE w.deduplication_id END
    FROM picked WHERE w.workflow_uuid = picked.workflow_uuid
    RETURNING w.queue_name
)
SELECT q.queue_name, pg_notify('dbos_queue_channel', q.queue_name)
FROM (SELECT DISTINCT queue_name FROM due) q
"""

# -- management ------------------------------------------------------------------------------------

# Management acts on the database alone: a resumed workflow is made ready again (its inputs and
# recorded steps stay) and a live executor of its version picks it up. One that came from a queue
# goes back to that queue, keeping its place, so the queue's limits still hold; an ENQUEUED one
# (or one from no queue) goes to the internal queue, which starts it now. A PENDING workflow is
# resumed only when no live process owns it (else it is running: nothing to resume). Its owner is
# kept: until a cancelled runner has really stopped and released it, no one may claim it.
# The workflows a resume takes (alias w): stopped or waiting ones, and running ones whose process
# is gone. Anything that prepares a resume (a move to another version) or previews one (a dry
# run) selects the same ones.
RESUMABLE = f"""(w.status IN ('CANCELLED', 'ENQUEUED', 'DELAYED', 'MAX_RECOVERY_ATTEMPTS_EXCEEDED')
       OR (w.status = 'PENDING' AND {OWNER_ABSENT}))"""

RESUME_WORKFLOW = f"""
UPDATE dbos.workflow_status w
SET status = 'ENQUEUED',
    queue_name = CASE WHEN w.status IN ('ENQUEUED', 'DELAYED') OR w.queue_name IS NULL
                      THEN %(internal_queue)s ELSE w.queue_name END,
    priority = CASE WHEN w.status IN ('ENQUEUED', 'DELAYED') OR w.queue_name IS NULL
                    THEN 0 ELSE w.priority END,
    recovery_attempts = 0,
    deduplication_id = NULL,
    executor_id = NULL,
    workflow_deadline_epoch_ms = NULL,
    updated_at = {NOW_MS}
WHERE w.workflow_uuid = %(workflow_uuid)s AND {RESUMABLE}
RETURNING 1
"""

# Fork: a new workflow with the original's inputs, ready on the internal queue, keeping the recorded
# outcomes of the steps before %(start_step)s (copied in the same transaction).
FORK_WORKFLOW = f"""
INSERT INTO dbos.workflow_status (
    workflow_uuid, status, name, class_name, inputs, application_version, queue_name, priority,
    max_recovery_attempts, workflow_timeout_ms, forked_from, created_at, updated_at, config_name,
    attributes
)
SELECT %(new_id)s, 'ENQUEUED', name, class_name, inputs,
       coalesce(%(application_version)s, application_version), %(internal_queue)s, 0,
       max_recovery_attempts, coalesce(%(workflow_timeout_ms)s, workflow_timeout_ms), workflow_uuid,
       {NOW_MS}, {NOW_MS}, config_name, attributes
FROM dbos.workflow_status
WHERE workflow_uuid = %(workflow_uuid)s
FOR KEY SHARE  -- held to the commit: garbage collection cannot delete the steps being copied
"""

# With the steps go the stream values they wrote (a replayed write appends nothing again).
COPY_STEPS = """
WITH copied_streams AS (
    INSERT INTO dbos.streams (workflow_uuid, key, value, "offset", function_id)
    SELECT %(new_id)s, key, value, "offset", function_id FROM dbos.streams
    WHERE workflow_uuid = %(workflow_uuid)s AND function_id < %(start_step)s
)
INSERT INTO dbos.operation_outputs (
    workflow_uuid, function_id, function_name, output, error, child_workflow_id,
    started_at_epoch_ms, completed_at_epoch_ms
)
SELECT %(new_id)s, function_id, function_name, output, error, child_workflow_id,
       started_at_epoch_ms, completed_at_epoch_ms
FROM dbos.operation_outputs
WHERE workflow_uuid = %(workflow_uuid)s AND function_id < %(start_step)s
"""

# What the PENDING and ENQUEUED workflows of a listing page wait for (runtime.waiting derives it),
# in one round trip: per workflow one row per step of its two highest (the primary key read
# backwards; one row with NULL steps when it has none), with the status of a child each started.
# Only a DBOS.sleep step's output is read (its end time): another step's can be large.
SELECT_WAIT_SNAPSHOTS = """
SELECT w.workflow_uuid, w.status, w.queue_name, s.function_id, s.function_name, s.output,
       s.child_workflow_id, c.status, s.wait_target, s.started_at_epoch_ms
FROM dbos.workflow_status w
LEFT JOIN LATERAL (
    SELECT o.function_id, o.function_name, o.child_workflow_id, o.wait_target,
           o.started_at_epoch_ms,
           CASE WHEN o.function_name = 'DBOS.sleep' THEN o.output END AS output
    FROM dbos.operation_outputs o
    WHERE o.workflow_uuid = w.workflow_uuid
    ORDER BY o.function_id DESC
    LIMIT 2
) s ON true
LEFT JOIN dbos.workflow_status c ON c.workflow_uuid = s.child_workflow_id
WHERE w.workflow_uuid = ANY(%(workflow_ids)s) AND w.status IN ('PENDING', 'ENQUEUED', 'DELAYED')
ORDER BY w.workflow_uuid, s.function_id DESC
"""

# -- executors -------------------------------------------------------------------------------------

REGISTER_EXECUTOR = f"""
INSERT INTO dbos.executors (
    process_id, executor_id, hostname, pid, application_version, lease_ms, started_at,
    last_heartbeat_at, process_identity
) VALUES (
    %(process_id)s, %(executor_id)s, %(hostname)s, %(pid)s, %(application_version)s,
    %(lease_ms)s, {NOW_MS}, {NOW_MS}, %(process_identity)s
)
"""

# Heartbeat, and report the other live processes that share this host (so that this process can
# tell which of them are really gone: their pid no longer runs) or this executor ID. A row marked
# stopped stays stopped (its workflows may be taken over already): then one row of NULLs says so.
HEARTBEAT = f"""
WITH beat AS (
    UPDATE dbos.executors SET last_heartbeat_at = {NOW_MS}, running_steps = %(running_steps)s::jsonb
    WHERE process_id = %(process_id)s AND stopped_at IS NULL
    RETURNING executor_id, hostname
)
SELECT e.process_id, e.executor_id, e.hostname, e.pid, e.process_identity
FROM dbos.executors e, beat
WHERE (e.executor_id = beat.executor_id OR e.hostname = beat.hostname)
  AND e.process_id <> %(process_id)s
  AND e.stopped_at IS NULL AND e.last_heartbeat_at > {NOW_MS} - e.lease_ms
UNION ALL
SELECT NULL, NULL, NULL, 0, NULL WHERE NOT EXISTS (SELECT 1 FROM beat)
"""

# runtime.running_steps: the steps of this workflow that live processes published as running.
SELECT_RUNNING_STEPS = f"""
SELECT (s->>'function_id')::integer, s->>'function_name', (s->>'started_at')::bigint
FROM dbos.executors e, jsonb_array_elements(e.running_steps) s
WHERE e.running_steps IS NOT NULL AND e.stopped_at IS NULL
  AND e.last_heartbeat_at > {NOW_MS} - e.lease_ms
  AND s->>'workflow_id' = %(workflow_uuid)s
ORDER BY 1
"""

# Processes found gone without stopping (killed): stopped now, so that their workflows are taken
# over at once instead of after their lease.
MARK_EXECUTORS_GONE = f"""
WITH gone AS (
    UPDATE dbos.executors SET stopped_at = {NOW_MS}, found_gone = true
    WHERE process_id = ANY(%(process_ids)s) AND stopped_at IS NULL
    RETURNING executor_id
)
SELECT pg_notify('dbos_executor_channel', g.executor_id)
FROM (SELECT DISTINCT executor_id FROM gone) g
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
SELECT w.workflow_uuid
FROM dbos.workflow_status w
WHERE w.status = 'PENDING' AND w.application_version = %(application_version)s
  AND w.owner_process IS DISTINCT FROM %(process_id)s
  AND {OWNER_ABSENT}
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

# Forget processes that stopped (or went silent) an hour ago and own no PENDING workflow: the
# executors view keeps recent history, not every start since the beginning.
PRUNE_EXECUTORS = f"""
DELETE FROM dbos.executors e
WHERE coalesce(e.stopped_at, e.last_heartbeat_at + e.lease_ms) < {NOW_MS} - 3600000
  AND NOT EXISTS (
      SELECT 1 FROM dbos.workflow_status w
      WHERE w.status = 'PENDING' AND w.owner_process = e.process_id
  )
"""

# Each process with its state and the PENDING workflows it owns (not those of its executor ID:
# processes that share an ID, or a stopped one, must not show each other's work).
_LIST_EXECUTORS = f"""
SELECT e.process_id, e.executor_id, e.hostname, e.pid, e.application_version, e.lease_ms,
       e.started_at, e.last_heartbeat_at, e.stopped_at,
       (e.stopped_at IS NULL AND e.last_heartbeat_at > {NOW_MS} - e.lease_ms) AS alive,
       (SELECT count(*) FROM dbos.workflow_status w
        WHERE w.status = 'PENDING' AND w.owner_process = e.process_id) AS pending,
       e.found_gone, e.process_identity
FROM dbos.executors e
{{where}}
ORDER BY e.started_at DESC
{{limit}}
"""

LIST_EXECUTORS = _LIST_EXECUTORS.format(where="", limit="LIMIT %(limit)s")
# Every live process, however many started since (liveness decisions must not miss an old one).
LIST_LIVE_EXECUTORS = _LIST_EXECUTORS.format(
    where=f"WHERE e.stopped_at IS NULL AND e.last_heartbeat_at > {NOW_MS} - e.lease_ms", limit=""
)

# Which versions still have work to do, and how many live processes run each: an old deployment
# can be shut down when its version has nothing PENDING or ENQUEUED.
VERSION_WORK = f"""
SELECT v.application_version,
       (SELECT count(*) FROM dbos.workflow_status w
        WHERE w.application_version = v.application_version AND w.status = 'PENDING'),
       (SELECT count(*) FROM dbos.workflow_status w
        WHERE w.application_version = v.application_version AND w.status = 'ENQUEUED')
     + (SELECT count(*) FROM dbos.workflow_status w
        WHERE w.application_version = v.application_version AND w.status = 'DELAYED'),
       (SELECT count(*) FROM dbos.executors e
        WHERE e.application_version = v.application_version AND e.stopped_at IS NULL
          AND e.last_heartbeat_at > {NOW_MS} - e.lease_ms)
FROM (
    SELECT DISTINCT application_version FROM dbos.executors
    UNION
    SELECT DISTINCT application_version FROM dbos.workflow_status
    WHERE status IN ('PENDING', 'ENQUEUED') AND application_version IS NOT NULL
    UNION
    SELECT DISTINCT application_version FROM dbos.workflow_status
    WHERE status = 'DELAYED' AND application_version IS NOT NULL
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
        WHERE w.queue_name = n.queue_name AND w.status IN ('ENQUEUED', 'DELAYED')),
       (SELECT count(*) FROM dbos.workflow_status w
        WHERE w.queue_name = n.queue_name AND w.status = 'PENDING')
FROM (
    SELECT queue_name FROM dbos.queue_config
    UNION
    SELECT DISTINCT queue_name FROM dbos.workflow_status
    WHERE status IN ('DELAYED', 'ENQUEUED', 'PENDING') AND queue_name IS NOT NULL
) n
LEFT JOIN dbos.queue_config c ON c.queue_name = n.queue_name
ORDER BY n.queue_name
"""

"""Typed functions over the system tables; the only code that runs the statements of ``queries``.

Each public method is one round trip unless its docstring says otherwise; the engine's cost model
(one statement to start a workflow, one per step, one to finish) is built from these.

Every public method returns a named value (a frozen dataclass of ``runtime.records``, the public
``WorkflowStatus``/``StepInfo`` records, a scalar, or lists of them), never a row: the column order
of a statement is known here alone, where each result shape is decoded in one place, next to the
statement's constant in ``queries``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import psycopg.errors
from psycopg_pool import PoolTimeout

from runtime import db, queries, serialization
from runtime.attempts import decode as decode_attempts
from runtime.errors import (
    DBOSConflictingWorkflowError,
    DBOSDatabaseError,
    DBOSNonExistentWorkflowError,
    DBOSQueueDeduplicatedError,
)
from runtime.listener import event_key, message_key
from runtime.queue_claim import claim_rows
from runtime.queues import INTERNAL_QUEUE
from runtime.records import (
    DESTINATION_KEYS,
    ClaimedWorkflow,
    DequeuedWorkflow,
    DequeueResult,
    DestinationDeleted,
    InsertResult,
    LastStep,
    NewWorkflow,
    OutsideSend,
    Ownership,
    QueueInfo,
    RecordedStep,
    RecordResult,
    RecvResult,
    SendResult,
    StatusResult,
    VersionWork,
    WaitSnapshot,
    WakeSignals,
)
from runtime.serialization import check_text
from runtime.status import StepInfo, WorkflowStatus
from runtime.workflow_list import list_workflows_query

# A row as the driver returns it; private to this module (see the module docstring).
_Row = tuple[Any, ...]
# Parked workflows are looked up this many IDs per query.
WAKE_CHUNK = 10_000


class SystemDatabase:
    """The system tables of one database, through a pool of autocommit connections."""

    def __init__(
        self,
        url: str,
        *,
        pool_size: int = 16,
        idle_in_transaction_timeout_s: float | None = None,
        pool_wait_s: float = 15.0,
        schema: str = "dbos",
        read_only: bool = False,
    ) -> None:
        self.url = url
        # The statements say `dbos.`; the pool's connections send them naming this schema.
        self.schema = schema
        self.pool = db.make_pool(
            url,
            max_size=pool_size,
            name="dbos-system",
            idle_in_transaction_timeout_s=idle_in_transaction_timeout_s,
            wait_timeout_s=pool_wait_s,
            schema=schema,
            read_only=read_only,
        )

    def close(self) -> None:
        """Close every pooled connection."""
        self.pool.close()

    # Every statement checks a connection out here, so this is on the hot path (each checkpoint):
    # the pool's own getconn/putconn in one context manager, where ``pool.connection()`` inside
    # ``db.translated`` would be three. An autocommit connection needs no commit on return; the
    # pool discards a broken one.
    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection[Any]]:
        """A pooled autocommit connection, with driver errors translated."""
        try:
            try:
                conn = self.pool.getconn()
            except PoolTimeout as exc:
                raise db.pool_timeout(exc, self.pool, self.url) from exc
            try:
                yield conn
            finally:
                self.pool.putconn(conn)
        except psycopg.errors.ForeignKeyViolation as exc:
            if exc.diag.constraint_name in DESTINATION_KEYS:
                raise DestinationDeleted(exc.diag.message_detail or "") from exc
            raise db.translate(exc, self.url) from exc
        except psycopg.Error as exc:
            raise db.translate(exc, self.url) from exc
        except UnicodeEncodeError as exc:  # a parameter with a lone surrogate: the caller's data
            raise db.unstorable_text(exc) from None

    def _one(self, query: str, params: dict[str, Any]) -> _Row | None:
        with self.connection() as conn:
            return conn.execute(query, params).fetchone()

    def _all(self, query: str, params: dict[str, Any]) -> list[_Row]:
        with self.connection() as conn:
            return conn.execute(query, params).fetchall()

    # -- starting ---------------------------------------------------------------------------------

    def insert_workflow(self, wf: NewWorkflow) -> InsertResult:
        """Record a new workflow, or report the one already holding its ID (one round trip; a
        second only in the rare race where the other insert committed during ours)."""
        check_text(wf.workflow_id, "workflow ID")
        check_text(wf.queue_name, "queue name")
        check_text(wf.deduplication_id, "deduplication ID")
        check_text(wf.application_version, "application version")
        params = {
            "workflow_uuid": wf.workflow_id,
            "status": wf.status,
            "name": wf.name,
            "class_name": wf.class_name,
            "inputs": wf.inputs,
            "executor_id": wf.executor_id,
            "application_version": wf.application_version,
            "queue_name": wf.queue_name,
            "priority": wf.priority,
            "deduplication_id": wf.deduplication_id,
            "max_recovery_attempts": wf.max_recovery_attempts,
            "workflow_timeout_ms": wf.timeout_ms,
            "deadline": wf.deadline_ms,
            "parent_workflow_id": wf.parent_workflow_id,
            "forked_from": wf.forked_from,
            "owner_process": wf.owner_process,
            "config_name": wf.config_name,
            "queue_partition_key": wf.queue_partition_key,
            "delay_until_epoch_ms": wf.delay_until_epoch_ms,
            "attributes": wf.attributes,
            "debounce_deadline_epoch_ms": wf.debounce_deadline_epoch_ms,
            "is_debounced": wf.is_debounced,
            "schedule_name": wf.schedule_name,
        }
        try:
            row = self._one(queries.INSERT_WORKFLOW, params)
        except DBOSDatabaseError as exc:
            cause = exc.__cause__
            if (
                isinstance(cause, psycopg.errors.UniqueViolation)
                and cause.diag.constraint_name == "workflow_status_dedup_idx"
            ):
                raise DBOSQueueDeduplicatedError(
                    f"queue {wf.queue_name!r} already holds a queued or running workflow with "
                    f"deduplication ID {wf.deduplication_id!r}"
                ) from None
            raise
        if row is None:
            row = self._one(queries.SELECT_WORKFLOW_BRIEF, {"workflow_uuid": wf.workflow_id})
        if row is None:  # pragma: no cover - deleted between the two statements
            raise DBOSDatabaseError(f"workflow {wf.workflow_id!r} vanished while starting")
        return InsertResult(
            created=bool(row[0]),
            status=row[1],
            name=row[2],
            owner_epoch=int(row[3]),
            deadline_ms=row[4],
            output=row[5],
            error=row[6],
            executor_id=row[7],
            owner_process=row[8],
        )

    # -- checkpoints ------------------------------------------------------------------------------

    def record_step(
        self,
        workflow_id: str,
        owner_epoch: int,
        function_id: int,
        function_name: str,
        *,
        output: str | None = None,
        error: str | None = None,
        child_workflow_id: str | None = None,
        started_at_ms: int | None = None,
        completed_at_ms: int | None = None,
        conn: psycopg.Connection[Any] | None = None,
        wait_target: str | None = None,
        attempts: str | None = None,
    ) -> RecordResult:
        """Record one operation's outcome if this runner still owns the workflow (one round trip).
        With ``conn``, the write joins that connection's open transaction. ``wait_target``: what
        a recv/get_event timeout row waits for (JSON, ``runtime.waiting.WaitTarget``);
        ``attempts``: a retried step's failed attempts (JSON, ``runtime.attempts``)."""
        params = {
            "workflow_uuid": workflow_id,
            "owner_epoch": owner_epoch,
            "function_id": function_id,
            "function_name": function_name,
            "output": output,
            "error": error,
            "child_workflow_id": child_workflow_id,
            "started_at": started_at_ms,
            "completed_at": completed_at_ms,
            "wait_target": wait_target,
            "attempts": attempts,
        }
        if conn is not None:
            row = conn.execute(queries.RECORD_STEP, params).fetchone()
        else:
            row = self._one(queries.RECORD_STEP, params)
        return _record_from(row)

    def get_step(self, workflow_id: str, function_id: int) -> RecordedStep | None:
        """One recorded operation (used when a checkpoint write found the step already recorded)."""
        row = self._one(
            queries.SELECT_STEP, {"workflow_uuid": workflow_id, "function_id": function_id}
        )
        return RecordedStep(row[0], row[1], row[2], row[3]) if row else None

    def complete_workflow(
        self,
        workflow_id: str,
        owner_epoch: int,
        status: str,
        *,
        output: str | None = None,
        error: str | None = None,
    ) -> bool:
        """Record the final outcome; False when this runner no longer owns a PENDING workflow."""
        row = self._one(
            queries.COMPLETE_WORKFLOW,
            {
                "workflow_uuid": workflow_id,
                "owner_epoch": owner_epoch,
                "status": status,
                "output": output,
                "error": error,
            },
        )
        return row is not None

    # -- resuming ---------------------------------------------------------------------------------

    def load_recorded_steps(self, workflow_id: str) -> dict[int, RecordedStep]:
        """Everything a previous run recorded, in one query."""
        rows = self._all(queries.SELECT_RECORDED_STEPS, {"workflow_uuid": workflow_id})
        return {int(r[0]): RecordedStep(r[1], r[2], r[3], r[4]) for r in rows}

    def claim_pending(
        self,
        workflow_ids: list[str],
        *,
        executor_id: str,
        process_id: str,
        application_version: str,
        default_max_attempts: int,
        name_limits: dict[str, int] | None = None,
        reclaim_from: str | None = None,
    ) -> list[ClaimedWorkflow]:
        """Claim PENDING workflows of ``application_version`` for new runs here, in one statement,
        fencing out their previous runners: only those that no live process owns (or, with
        ``reclaim_from``, that this process owns without running them). A claim past a
        workflow's recovery limit (its own; else ``name_limits[name]``, the limits its name is
        registered with here; else ``default_max_attempts``) returns it as
        MAX_RECOVERY_ATTEMPTS_EXCEEDED, unowned."""
        rows = self._all(
            queries.CLAIM_PENDING,
            {
                "workflow_ids": workflow_ids,
                "executor_id": executor_id,
                "process_id": process_id,
                "application_version": application_version,
                "default_max": default_max_attempts,
                "name_limits": json.dumps(name_limits or {}),
                "reclaim_from": reclaim_from,
            },
        )
        return [_claimed_from(r[0], r[1:10], r[10]) for r in rows]

    def release_workflow(self, workflow_id: str, owner_epoch: int, process_id: str) -> None:
        """Give back a workflow whose run stopped without finishing (cancelled, or its final
        write refused), if this runner still owns it and it is not PENDING; frees its queue
        slot and lets a resume claim it."""
        self._all(
            queries.RELEASE_WORKFLOW,
            {"workflow_uuid": workflow_id, "owner_epoch": owner_epoch, "process_id": process_id},
        )

    def release_abandoned(self, process_id: str, running: list[str]) -> int:
        """Release the cancelled or resumed workflows held by dead processes, and this process's
        own that it no longer runs (a release it failed to write). Returns the queues woken."""
        rows = self._all(queries.RELEASE_ABANDONED, {"process_id": process_id, "running": running})
        return len(rows)

    def load_recorded_steps_batch(
        self, workflow_ids: list[str]
    ) -> dict[str, dict[int, RecordedStep]]:
        """The recorded steps of many workflows, in one query."""
        found: dict[str, dict[int, RecordedStep]] = {wid: {} for wid in workflow_ids}
        for r in self._all(queries.SELECT_RECORDED_STEPS_BATCH, {"workflow_ids": workflow_ids}):
            found[r[0]][int(r[1])] = RecordedStep(r[2], r[3], r[4], r[5])
        return found

    def load_workflows_to_run(self, workflow_ids: list[str]) -> list[ClaimedWorkflow]:
        """What parked workflows need to go on, without claiming them (their runner still owns
        them); the caller compares status and owner epoch with its own."""
        rows = self._all(queries.SELECT_TO_RUN, {"workflow_ids": workflow_ids})
        return [_claimed_from(r[0], r[1:10], r[10]) for r in rows]

    def parked_wake_signals(
        self,
        process_id: str,
        *,
        awaited: list[str],
        parked: list[str],
        messages: list[tuple[str, str | None]],
        events: list[tuple[str, str]],
    ) -> WakeSignals:
        """The wake-ups of parked workflows that are in the database (see ``WakeSignals``), in
        one connection and at most four queries, in chunks of ``WAKE_CHUNK`` IDs."""
        finished: list[str] = []
        changed: list[str] = []
        found_messages: list[str] = []
        found_events: list[str] = []
        wanted_messages = {message_key(d, t) for d, t in messages}
        wanted_events = {event_key(w, k) for w, k in events}
        with self.connection() as conn:

            def rows(query: str, ids: list[str], **params: Any) -> Iterator[_Row]:
                for i in range(0, len(ids), WAKE_CHUNK):
                    chunk = {"workflow_ids": ids[i : i + WAKE_CHUNK], **params}
                    yield from conn.execute(query, chunk).fetchall()

            finished.extend(r[0] for r in rows(queries.SELECT_AWAITED_FINISHED, awaited))
            changed.extend(
                r[0] for r in rows(queries.SELECT_PARKED_CHANGED, parked, process_id=process_id)
            )
            destinations = sorted({d for d, _ in messages})
            for r in rows(queries.SELECT_MESSAGES_WAITING, destinations):
                if (key := message_key(r[0], r[1])) in wanted_messages:
                    found_messages.append(key)
            for r in rows(queries.SELECT_EVENTS_SET, sorted({w for w, _ in events})):
                if (key := event_key(r[0], r[1])) in wanted_events:
                    found_events.append(key)
        return WakeSignals(finished, changed, found_messages, found_events)

    def pending_workflow_ids(self, executor_id: str, application_version: str) -> list[str]:
        """PENDING workflows recorded for this executor and version, oldest first."""
        rows = self._all(
            queries.SELECT_PENDING_FOR_EXECUTOR,
            {"executor_id": executor_id, "application_version": application_version},
        )
        return [r[0] for r in rows]

    # -- cancellation -----------------------------------------------------------------------------

    def cancel_workflow(self, workflow_id: str) -> bool:
        """Mark a PENDING or ENQUEUED workflow CANCELLED; False when it was in another status."""
        return self._one(queries.CANCEL_WORKFLOW, {"workflow_uuid": workflow_id}) is not None

    def cancel_expired(self) -> list[str]:
        """Cancel every workflow past its deadline; returns their IDs."""
        return [r[0] for r in self._all(queries.CANCEL_EXPIRED, {})]

    # -- messages and events ---------------------------------------------------------------------

    def _op_params(
        self, workflow_id: str, owner_epoch: int, function_id: int, name: str, started_at_ms: int
    ) -> dict[str, Any]:
        return {
            "workflow_uuid": workflow_id,
            "owner_epoch": owner_epoch,
            "function_id": function_id,
            "function_name": name,
            "started_at": started_at_ms,
        }

    def send_from_workflow(
        self,
        workflow_id: str,
        owner_epoch: int,
        function_id: int,
        started_at_ms: int,
        destination: str,
        topic: str | None,
        message: str,
    ) -> SendResult:
        """Deliver a message and record the send as the sender's step, atomically."""
        check_text(destination, "destination workflow ID")
        check_text(topic, "topic")
        params = self._op_params(workflow_id, owner_epoch, function_id, "DBOS.send", started_at_ms)
        params.update(destination=destination, topic=topic, message=message)
        try:
            row = self._one(queries.SEND_FROM_WORKFLOW, params)
        except DestinationDeleted:
            # As the statement reports a missing destination: not recorded, this runner still
            # the owner (if it is not, the error's record that follows is fenced).
            return SendResult("PENDING", owner_epoch, False, destination_exists=False)
        if row is None:
            # The sender's row is gone: the caller stops as fenced before it looks at the
            # destination, so report it as existing rather than raise a misleading error.
            return SendResult(None, None, False, destination_exists=True)
        return SendResult(row[0], int(row[1]), bool(row[2]), destination_exists=bool(row[3]))

    def send_from_outside(
        self, destination: str, topic: str | None, message: str, idempotency_key: str | None
    ) -> OutsideSend:
        """Deliver a message from outside any workflow. With an idempotency key, a repeated send
        delivers nothing."""
        check_text(destination, "destination workflow ID")
        check_text(topic, "topic")
        check_text(idempotency_key, "idempotency key")
        params = {"destination": destination, "topic": topic, "message": message}
        try:
            row = self._one(
                queries.SEND_FROM_OUTSIDE, params | {"idempotency_key": idempotency_key}
            )
        except DestinationDeleted:
            return OutsideSend(destination_exists=False, delivered=False)
        assert row is not None
        return OutsideSend(destination_exists=bool(row[0]), delivered=bool(row[1]))

    def recv(
        self,
        workflow_id: str,
        owner_epoch: int,
        function_id: int,
        started_at_ms: int,
        topic: str | None,
    ) -> RecvResult:
        """Consume the oldest message on the topic and record it as the recv's outcome, in one
        statement. ``recorded`` is False when there was no message (or the runner was fenced:
        compare the returned epoch)."""
        check_text(topic, "topic")
        params = self._op_params(workflow_id, owner_epoch, function_id, "DBOS.recv", started_at_ms)
        params["topic"] = topic
        row = self._one(queries.RECV, params)
        if row is None:
            return RecvResult(None, None, False, message=None)
        return RecvResult(row[0], int(row[1]), bool(row[3]), message=row[2])

    def set_event(
        self,
        workflow_id: str,
        owner_epoch: int,
        function_id: int,
        started_at_ms: int,
        key: str,
        value: str,
    ) -> RecordResult:
        """Publish (or overwrite) an event of the workflow and record it as a step, atomically."""
        check_text(key, "event key")
        params = self._op_params(
            workflow_id, owner_epoch, function_id, "DBOS.setEvent", started_at_ms
        )
        params.update(key=key, value=value)
        return _record_from(self._one(queries.SET_EVENT, params))

    def get_event(self, workflow_id: str, key: str) -> str | None:
        """The serialized value of a workflow's event; None when it is not set (a set event's
        value is never NULL: the column is NOT NULL)."""
        check_text(workflow_id, "workflow ID")
        check_text(key, "event key")
        row = self._one(queries.GET_EVENT, {"workflow_uuid": workflow_id, "key": key})
        return row[0] if row else None

    # -- queues -----------------------------------------------------------------------------------

    def dequeue(
        self,
        queue_name: str,
        *,
        executor_id: str,
        process_id: str,
        application_version: str,
        names: list[str],
        max_claim: int,
        concurrency: int | None,
        limiter: tuple[int, float] | None,
        partition: str | None = None,
    ) -> DequeueResult:
        """Claim up to ``max_claim`` ready workflows of a queue within its global concurrency and
        rate limit, in one transaction. With ``partition``, of that partition of a partitioned
        queue, the concurrency and rate limit counting that partition alone."""
        params: dict[str, Any] = {
            "queue_name": queue_name,
            "partition": partition,
            "executor_id": executor_id,
            "process_id": process_id,
            "application_version": application_version,
            "names": names,
            "limit": max_claim,
            "concurrency": concurrency,  # the claim counts the free slots itself
        }
        claim = queries.DEQUEUE if partition is None else queries.DEQUEUE_PARTITION
        with self.connection() as conn:
            rows, window_reopens = claim_rows(conn, claim, params, limiter=limiter)
        next_possible = window_reopens if len(rows) == params["limit"] else None
        rows.sort(key=lambda r: (r[11], r[12]))
        # The columns after the ID are those of the recovery claim's RETURNING.
        claimed = [
            DequeuedWorkflow(_claimed_from(r[0], r[1:10], r[13]), has_steps=bool(r[10]))
            for r in rows
        ]
        return DequeueResult(claimed, next_possible)

    # -- management -------------------------------------------------------------------------------

    def list_workflow_statuses(
        self,
        filters: dict[str, Any],
        *,
        sort_desc: bool,
        limit: int | None,
        offset: int | None,
        load_input: bool,
        load_output: bool,
    ) -> list[WorkflowStatus]:
        """Workflows matching ``filters`` (keys of ``workflow_list.LIST_FILTERS``; a value of True
        turns on a fragment without a parameter), newest or oldest first; inputs and outcomes
        decoded only when loaded."""
        query, params = list_workflows_query(
            filters,
            sort_desc=sort_desc,
            limit=limit,
            offset=offset,
            load_input=load_input,
            load_output=load_output,
        )
        return [
            _status_from_row(r, load_input=load_input, load_output=load_output)
            for r in self._all(query, params)
        ]

    def resume_workflow(self, workflow_id: str, internal_queue: str) -> bool:
        """Make a cancelled, pending, enqueued or failed-recovery workflow ready on the internal
        queue. False when it is finished (or missing)."""
        row = self._one(
            queries.RESUME_WORKFLOW,
            {"workflow_uuid": workflow_id, "internal_queue": internal_queue},
        )
        return row is not None

    def fork_workflow(
        self,
        workflow_id: str,
        new_id: str,
        start_step: int,
        application_version: str | None,
        internal_queue: str,
        timeout_ms: int | None = None,
    ) -> None:
        """Create the fork, ready on the internal queue, with the steps before ``start_step``
        copied, in one transaction; its timeout is ``timeout_ms``, else the original's."""
        check_text(new_id, "workflow ID")
        check_text(application_version, "application version")
        params = {
            "workflow_uuid": workflow_id,
            "new_id": new_id,
            "start_step": start_step,
            "application_version": application_version,
            "internal_queue": internal_queue,
            "workflow_timeout_ms": timeout_ms,
        }
        try:
            with self.connection() as conn, conn.transaction():
                if conn.execute(queries.FORK_WORKFLOW, params).rowcount == 0:
                    # Deleted (garbage-collected) since the caller looked it up.
                    raise DBOSNonExistentWorkflowError(workflow_id)
                conn.execute(queries.COPY_STEPS, params)
        except DBOSDatabaseError as exc:
            if isinstance(exc.__cause__, psycopg.errors.UniqueViolation):
                raise DBOSConflictingWorkflowError(
                    new_id, "a workflow with that ID exists already"
                ) from None
            raise

    def wait_snapshots(self, workflow_ids: list[str]) -> list[WaitSnapshot]:
        """For the PENDING and ENQUEUED workflows among ``workflow_ids``: status, queue, two
        highest recorded steps and their children's status (``runtime.waiting`` tells from it
        what each waits for), in one round trip for a whole listing page."""
        steps: dict[str, list[LastStep]] = {}
        snapshots: list[WaitSnapshot] = []
        for r in self._all(queries.SELECT_WAIT_SNAPSHOTS, {"workflow_ids": workflow_ids}):
            if r[0] not in steps:  # rows come grouped by workflow, highest step first
                steps[r[0]] = []
                snapshots.append(WaitSnapshot(r[0], r[1], r[2], steps[r[0]]))
            if r[3] is not None:
                steps[r[0]].append(LastStep(int(r[3]), r[4], r[5], r[6], r[7], r[8], r[9]))
        return snapshots

    # -- executors --------------------------------------------------------------------------------

    def takeover_candidates(
        self, process_id: str, application_version: str, limit: int
    ) -> list[str]:
        """PENDING workflows of this version that no live process owns."""
        rows = self._all(
            queries.TAKEOVER_CANDIDATES,
            {"process_id": process_id, "application_version": application_version, "limit": limit},
        )
        return [r[0] for r in rows]

    def own_pending(self, process_id: str, grace_ms: int) -> list[str]:
        """This process's PENDING workflows not claimed or started within ``grace_ms``."""
        rows = self._all(queries.OWN_PENDING, {"process_id": process_id, "grace_ms": grace_ms})
        return [r[0] for r in rows]

    def version_work(self) -> list[VersionWork]:
        """Per application version: PENDING and ENQUEUED workflows, and live processes."""
        rows = self._all(queries.VERSION_WORK, {})
        return [VersionWork(r[0], int(r[1]), int(r[2]), int(r[3])) for r in rows]

    def record_queue_config(self, rows: list[dict[str, Any]]) -> None:
        """Upsert the declared queues' limits (one round trip per queue, at launch)."""
        with self.connection() as conn:
            for row in rows:
                conn.execute(queries.RECORD_QUEUE_CONFIG, row)

    def queue_overview(self) -> list[QueueInfo]:
        """Every declared queue or queue with live work: its limits, depth and running count."""
        return [
            QueueInfo(
                name=r[0],
                concurrency=r[1],
                worker_concurrency=r[2],
                limit=r[3],
                period_s=r[4],
                priority_enabled=bool(r[5]),
                application_version=r[6],
                declared_at=r[7],
                enqueued=int(r[8]),
                running=int(r[9]),
            )
            for r in self._all(queries.QUEUE_OVERVIEW, {})
        ]

    # -- reading ----------------------------------------------------------------------------------

    def get_workflow_status(self, workflow_id: str) -> WorkflowStatus | None:
        """A workflow's record, its input and outcome decoded; None when it does not exist."""
        row = self._one(queries.SELECT_WORKFLOW, {"workflow_uuid": workflow_id})
        return _status_from_row(row) if row else None

    def get_status_result(self, workflow_id: str) -> StatusResult | None:
        """A workflow's status and serialized outcome, or None when it does not exist."""
        row = self._one(queries.SELECT_STATUS_RESULT, {"workflow_uuid": workflow_id})
        return StatusResult(row[0], row[1], row[2]) if row else None

    def get_ownership(self, workflow_id: str) -> Ownership | None:
        """A workflow's status and owner epoch, or None when it does not exist."""
        row = self._one(queries.SELECT_OWNERSHIP, {"workflow_uuid": workflow_id})
        return Ownership(row[0], int(row[1])) if row else None

    def get_steps(self, workflow_id: str) -> list[StepInfo]:
        """A workflow's recorded steps in order, their outcomes decoded."""
        return [
            _step_from_row(r)
            for r in self._all(queries.SELECT_STEPS, {"workflow_uuid": workflow_id})
        ]


def _record_from(row: _Row | None) -> RecordResult:
    """A checkpoint write's outcome from ``RECORD_STEP`` or ``SET_EVENT`` (status, owner epoch,
    recorded); no row: the workflow is gone."""
    if row is None:
        return RecordResult(None, None, False)
    return RecordResult(row[0], int(row[1]), bool(row[2]))


def _status_from_row(
    row: _Row, *, load_input: bool = True, load_output: bool = True
) -> WorkflowStatus:
    """Decode a ``WORKFLOW_COLUMNS`` row (also ``LIST_WORKFLOWS_SELECT``'s) into a
    ``WorkflowStatus``."""
    inputs = None
    if load_input and row[4] is not None:
        args, kwargs = serialization.deserialize_args(row[4])
        inputs = {"args": list(args), "kwargs": kwargs}
    return WorkflowStatus(
        workflow_id=row[0],
        status=row[1],
        name=row[2],
        class_name=row[3],
        input=inputs,
        output=serialization.deserialize(row[5]) if load_output and row[5] is not None else None,
        error=serialization.deserialize_exception(row[6])
        if load_output and row[6] is not None
        else None,
        executor_id=row[7],
        app_version=row[8],
        # The internal queue (resume, restart, fork, schedules) is how it was started, not a queue
        # the application put it on: shown as no queue (`queue_name=` still finds it).
        queue_name=None if row[9] == INTERNAL_QUEUE else row[9],
        recovery_attempts=int(row[10]),
        created_at=row[11],
        updated_at=row[12],
        parent_workflow_id=row[13],
        forked_from=row[14],
        priority=int(row[15]),
        deduplication_id=row[16],
        workflow_timeout_ms=row[17],
        workflow_deadline_epoch_ms=row[18],
        started_at=row[19],
        completed_at=row[20],
        config_name=row[21],
        queue_partition_key=row[22],
        delay_until_epoch_ms=row[23],
        was_forked_from=bool(row[24]),
        dequeued_at=row[19] if row[9] is not None else None,
        attributes=row[25],
        schedule_name=row[26],
    )


def _step_from_row(row: _Row) -> StepInfo:
    """Decode a ``SELECT_STEPS`` row into a ``StepInfo``."""
    return StepInfo(
        function_id=int(row[0]),
        function_name=row[1],
        output=serialization.deserialize(row[2]) if row[2] is not None else None,
        error=serialization.deserialize_exception(row[3]) if row[3] is not None else None,
        child_workflow_id=row[4],
        started_at=row[5],
        completed_at=row[6],
        attempts=decode_attempts(row[7]),
    )


def _claimed_from(workflow_id: str, row: _Row, config_name: str | None) -> ClaimedWorkflow:
    """A ``ClaimedWorkflow`` from the columns a claim returns (status ... queue_name), and the
    config_name each statement returns last."""
    return ClaimedWorkflow(
        workflow_id=workflow_id,
        status=row[0],
        owner_epoch=int(row[1]),
        name=row[2],
        class_name=row[3],
        inputs=row[4],
        deadline_ms=row[5],
        recovery_attempts=int(row[6]),
        application_version=row[7],
        queue_name=row[8],
        config_name=config_name,
    )

"""The statements behind DBOS's many-at-once calls: sends with idempotency keys or in bulk, events
published from a step, all events of a workflow, and which of several workflows has finished.

Kept out of ``SystemDatabase`` (which is at its size limit); it shares that object's connection
pool. Like it, each public method is one round trip and returns named values, never rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from runtime.records import DestinationDeleted, RecordResult
from runtime.serialization import check_text
from runtime.system_db import SystemDatabase

# The statuses in which a workflow has not finished yet (DBOS's wait_first waits past them).
UNFINISHED = ("PENDING", "ENQUEUED", "DELAYED")

# The messages of one call, as parallel arrays, numbered to keep their order.
_INPUT = """
input AS (
    SELECT * FROM unnest(%(dests)s::text[], %(topics)s::text[], %(messages)s::text[],
                         %(keys)s::text[]) WITH ORDINALITY AS m(dest, topic, message, key, ord)
),
missing AS (
    SELECT m.dest FROM input m
    WHERE NOT EXISTS (SELECT 1 FROM dbos.workflow_status s WHERE s.workflow_uuid = m.dest)
    LIMIT 1
)"""

# A keyed message is delivered only if its (destination, key) is new: the key is kept after the
# message is consumed, so a retried send never delivers twice. Nothing is delivered when any
# destination does not exist. {gate} is what else must hold (the sender's record, from a workflow).
_DELIVER = """
keyed AS (
    INSERT INTO dbos.idempotent_sends (destination_uuid, idempotency_key)
    SELECT m.dest, m.key FROM input m
    WHERE m.key IS NOT NULL AND NOT EXISTS (SELECT 1 FROM missing) {gate}
    ON CONFLICT (destination_uuid, idempotency_key) DO NOTHING
    RETURNING destination_uuid, idempotency_key
),
msg AS (
    INSERT INTO dbos.notifications (destination_uuid, topic, message)
    SELECT m.dest, m.topic, m.message FROM input m
    WHERE NOT EXISTS (SELECT 1 FROM missing) {gate}
      AND (m.key IS NULL OR EXISTS (
          SELECT 1 FROM keyed k WHERE k.destination_uuid = m.dest AND k.idempotency_key = m.key))
    ORDER BY m.ord
    RETURNING 1
)"""

# The only interpolation in these statements is constant SQL text; values are parameters.
# Which of these workflow IDs exist.
EXISTING_WORKFLOWS = (
    "SELECT workflow_uuid FROM dbos.workflow_status WHERE workflow_uuid = ANY(%(ids)s)"
)

SEND_MANY_OUTSIDE = (
    "WITH "  # noqa: S608
    + _INPUT
    + ","
    + _DELIVER.format(gate="")
    + """
SELECT (SELECT dest FROM missing), (SELECT count(*) FROM msg)
"""
)

# From a workflow: the send is the sender's step, recorded in the same statement under the
# owner-epoch fence, and delivered only when the record is written (so exactly once).
SEND_MANY_FROM_WORKFLOW = (
    "WITH "  # noqa: S608
    + """wf AS (
    SELECT status, owner_epoch FROM dbos.workflow_status
    WHERE workflow_uuid = %(workflow_uuid)s
    FOR SHARE
),"""
    + _INPUT
    + """,
ins AS (
    INSERT INTO dbos.operation_outputs (
        workflow_uuid, function_id, function_name, output, error, child_workflow_id,
        started_at_epoch_ms, completed_at_epoch_ms
    )
    SELECT %(workflow_uuid)s, %(function_id)s, %(function_name)s, NULL, NULL, NULL,
           %(started_at)s, (extract(epoch FROM clock_timestamp()) * 1000)::bigint
    FROM wf
    WHERE wf.owner_epoch = %(owner_epoch)s
      AND wf.status IN ('PENDING', 'CANCELLED', 'ENQUEUED')
      AND NOT EXISTS (SELECT 1 FROM missing)
    ON CONFLICT (workflow_uuid, function_id) DO NOTHING
    RETURNING 1
),"""
    + _DELIVER.format(gate="AND EXISTS (SELECT 1 FROM ins)")
    + """
SELECT wf.status, wf.owner_epoch, EXISTS (SELECT 1 FROM ins), (SELECT dest FROM missing)
FROM wf
"""
)

# An event published from inside a step: not a step of its own (DBOS's rule), but still only
# while the runner owns the workflow.
SET_EVENT_FROM_STEP = """
WITH wf AS (
    SELECT status, owner_epoch FROM dbos.workflow_status
    WHERE workflow_uuid = %(workflow_uuid)s
    FOR SHARE
),
ev AS (
    INSERT INTO dbos.workflow_events (workflow_uuid, key, value)
    SELECT %(workflow_uuid)s, %(key)s, %(value)s FROM wf
    WHERE wf.owner_epoch = %(owner_epoch)s AND wf.status IN ('PENDING', 'CANCELLED', 'ENQUEUED')
    ON CONFLICT (workflow_uuid, key) DO UPDATE SET value = EXCLUDED.value
    RETURNING 1
)
SELECT wf.status, wf.owner_epoch, EXISTS (SELECT 1 FROM ev) FROM wf
"""

GET_ALL_EVENTS = """
SELECT key, value FROM dbos.workflow_events WHERE workflow_uuid = %(workflow_uuid)s ORDER BY key
"""

STATUSES_OF = """
SELECT workflow_uuid, status FROM dbos.workflow_status WHERE workflow_uuid = ANY(%(ids)s::text[])
"""


@dataclass(frozen=True)
class OutgoingMessage:
    """One message of a send, its value already serialized."""

    destination_id: str
    message: str
    topic: str | None = None
    idempotency_key: str | None = None


@dataclass(frozen=True)
class ManySent(RecordResult):
    """Outcome of a send from a workflow: the checkpoint write, and a destination that does not
    exist (then nothing was delivered or recorded)."""

    missing: str | None


class MessageDatabase:
    """The statements above, over the system database's pool."""

    def __init__(self, sysdb: SystemDatabase) -> None:
        self.sysdb = sysdb

    @staticmethod
    def _arrays(messages: list[OutgoingMessage]) -> dict[str, Any]:
        for m in messages:
            check_text(m.destination_id, "destination workflow ID")
            check_text(m.topic, "topic")
            check_text(m.idempotency_key, "idempotency key")
        return {
            "dests": [m.destination_id for m in messages],
            "topics": [m.topic for m in messages],
            "messages": [m.message for m in messages],
            "keys": [m.idempotency_key for m in messages],
        }

    def _deleted_destination(self, messages: list[OutgoingMessage]) -> str:
        """A destination of ``messages`` that no longer exists (one was deleted mid-send)."""
        dests = list(dict.fromkeys(m.destination_id for m in messages))
        with self.sysdb.connection() as conn:
            found = {r[0] for r in conn.execute(EXISTING_WORKFLOWS, {"ids": dests}).fetchall()}
        return next((d for d in dests if d not in found), dests[0])

    def send_outside(self, messages: list[OutgoingMessage]) -> str | None:
        """Deliver messages from outside any workflow (a repeated key delivers nothing); returns
        a destination that does not exist (then nothing was delivered), else None."""
        try:
            with self.sysdb.connection() as conn:
                row = conn.execute(SEND_MANY_OUTSIDE, self._arrays(messages)).fetchone()
        except DestinationDeleted:
            return self._deleted_destination(messages)
        assert row is not None
        return None if row[0] is None else str(row[0])

    def send_from_workflow(
        self,
        workflow_id: str,
        owner_epoch: int,
        function_id: int,
        function_name: str,
        started_at_ms: int,
        messages: list[OutgoingMessage],
    ) -> ManySent:
        """Deliver messages and record the send as the sender's step, atomically."""
        params = self._arrays(messages)
        params.update(
            workflow_uuid=workflow_id,
            owner_epoch=owner_epoch,
            function_id=function_id,
            function_name=function_name,
            started_at=started_at_ms,
        )
        try:
            with self.sysdb.connection() as conn:
                row = conn.execute(SEND_MANY_FROM_WORKFLOW, params).fetchone()
        except DestinationDeleted:
            # As the statement reports a missing destination (SystemDatabase.send_from_workflow).
            missing = self._deleted_destination(messages)
            return ManySent("PENDING", owner_epoch, False, missing=missing)
        if row is None:  # the sender's row is gone: the caller stops as fenced
            return ManySent(None, None, False, missing=None)
        return ManySent(row[0], int(row[1]), bool(row[2]), missing=row[3])

    def set_event_from_step(
        self, workflow_id: str, owner_epoch: int, key: str, value: str
    ) -> RecordResult:
        """Publish (or overwrite) an event of the workflow whose step runs; ``recorded`` says
        whether it was written (not when the runner no longer owns the workflow)."""
        check_text(key, "event key")
        params = {"workflow_uuid": workflow_id, "owner_epoch": owner_epoch}
        params.update(key=key, value=value)
        with self.sysdb.connection() as conn:
            row = conn.execute(SET_EVENT_FROM_STEP, params).fetchone()
        if row is None:
            return RecordResult(None, None, False)
        return RecordResult(row[0], int(row[1]), bool(row[2]))

    def get_all_events(self, workflow_id: str) -> dict[str, str]:
        """Every event of the workflow: key to serialized value."""
        check_text(workflow_id, "workflow ID")
        with self.sysdb.connection() as conn:
            rows = conn.execute(GET_ALL_EVENTS, {"workflow_uuid": workflow_id}).fetchall()
        return {str(r[0]): str(r[1]) for r in rows}

    def statuses(self, workflow_ids: list[str]) -> dict[str, str]:
        """The status of each of the workflows that exist, by ID."""
        for wid in workflow_ids:
            check_text(wid, "workflow ID")
        with self.sysdb.connection() as conn:
            rows = conn.execute(STATUSES_OF, {"ids": workflow_ids}).fetchall()
        return {str(r[0]): str(r[1]) for r in rows}

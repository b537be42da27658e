"""The one statement of a debounce (``runtime.debouncer``): move a waiting debounced workflow's
delay on and replace its inputs, or else say who holds the debounce key. Apart from
``SystemDatabase`` (at its size limit), through the same pool; one round trip."""

from __future__ import annotations

from dataclasses import dataclass

from runtime.serialization import check_text
from runtime.system_db import SystemDatabase

# The bounce: only a DELAYED, debounced workflow of the same name on the same queue under the key
# is extended, and never past its cap (debounce_deadline_epoch_ms). Under READ COMMITTED a row
# that a dispatcher promoted meanwhile fails the re-checked WHERE, so a bounce never rewrites the
# inputs of a workflow that has begun. When nothing was extended, the holder of (queue, key) is
# returned (a holder as the unique deduplication index counts one, so that index serves it), as
# the statement's snapshot saw it, for the caller to decide: none (start one), a
# debounced one of this workflow (it is leaving DELAYED: try again), anything else (a conflict).
BOUNCE = """
WITH bounced AS (
    UPDATE dbos.workflow_status
    SET delay_until_epoch_ms = CASE
            WHEN debounce_deadline_epoch_ms IS NOT NULL
                 AND debounce_deadline_epoch_ms < %(delay_until)s
            THEN debounce_deadline_epoch_ms ELSE %(delay_until)s END,
        inputs = %(inputs)s,
        updated_at = (extract(epoch FROM clock_timestamp()) * 1000)::bigint
    WHERE queue_name = %(queue_name)s AND deduplication_id = %(key)s AND name = %(name)s
      AND status = 'DELAYED' AND is_debounced
    RETURNING workflow_uuid
)
SELECT workflow_uuid, true, NULL::boolean, NULL::text FROM bounced
UNION ALL
SELECT workflow_uuid, false, is_debounced, name FROM dbos.workflow_status
WHERE queue_name = %(queue_name)s AND deduplication_id = %(key)s
  AND status IN ('DELAYED', 'ENQUEUED', 'PENDING')
  AND NOT EXISTS (SELECT 1 FROM bounced)
"""


@dataclass(frozen=True)
class Bounce:
    """What a bounce did: extended ``workflow_id`` (``bounced``), or found it holding the key
    (``holder_is_debounced``, ``holder_name``), or found the key free (``workflow_id`` None)."""

    workflow_id: str | None
    bounced: bool = False
    holder_is_debounced: bool = False
    holder_name: str | None = None


class DebounceTable:
    """The debounce statement on the system database's pool."""

    def __init__(self, sysdb: SystemDatabase) -> None:
        self.sysdb = sysdb

    def bounce(
        self, *, name: str, queue_name: str, key: str, delay_until_ms: int, inputs: str
    ) -> Bounce:
        """Extend the DELAYED debounced workflow ``name`` holding ``key`` on ``queue_name`` to
        ``delay_until_ms`` (capped by its deadline) with ``inputs`` (serialized), or report the
        key's holder."""
        check_text(key, "debounce key")
        with self.sysdb.connection() as conn:
            row = conn.execute(
                BOUNCE,
                {
                    "queue_name": queue_name,
                    "key": key,
                    "name": name,
                    "delay_until": delay_until_ms,
                    "inputs": inputs,
                },
            ).fetchone()
        if row is None:
            return Bounce(None)
        if row[1]:
            return Bounce(row[0], bounced=True)
        return Bounce(row[0], holder_is_debounced=bool(row[2]), holder_name=row[3])

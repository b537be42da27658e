"""Replacing (or merging into) a workflow's custom attributes: the statement behind
``DBOS.update_workflow_attributes`` and ``DBOSClient.update_workflow_attributes``. Apart from
``SystemDatabase`` (at its size limit), through the same pool; one round trip."""

from __future__ import annotations

from runtime.system_db import SystemDatabase

# The attributes become the given JSON object (NULL: none). With merge, its top-level keys are
# written over the current ones, in the same statement (so two concurrent merges both land); a
# workflow without attributes merges into an empty object.
UPDATE_ATTRIBUTES = """
UPDATE dbos.workflow_status
SET attributes = CASE
        WHEN %(merge)s THEN
            (CASE WHEN jsonb_typeof(attributes) = 'object' THEN attributes ELSE '{}'::jsonb END)
            || %(attributes)s::jsonb
        ELSE %(attributes)s::jsonb
    END,
    updated_at = (extract(epoch FROM clock_timestamp()) * 1000)::bigint
WHERE workflow_uuid = %(workflow_uuid)s
RETURNING 1
"""


class AttributeTable:
    """Writes of ``workflow_status.attributes`` on the system database's pool."""

    def __init__(self, sysdb: SystemDatabase) -> None:
        self.sysdb = sysdb

    def update(self, workflow_id: str, attributes: str | None, *, merge: bool = False) -> bool:
        """Set a workflow's attributes to ``attributes`` (a JSON object's text; None clears
        them), or with ``merge`` write its keys over the current ones. False when no workflow
        has that ID."""
        with self.sysdb.connection() as conn:
            row = conn.execute(
                UPDATE_ATTRIBUTES,
                {"workflow_uuid": workflow_id, "attributes": attributes, "merge": merge},
            ).fetchone()
        return row is not None

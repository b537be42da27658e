"""What a cancel or a resume would do to each of some workflows, without doing it: the dry run of
``DBOSClient.cancel_each``/``resume_each``. Each statement evaluates the very predicate the real
UPDATE has in its WHERE clause (``queries.CANCELLABLE``, ``queries.RESUMABLE``), so a preview
cannot promise a change the real run would skip. Kept out of ``SystemDatabase`` (at its size
limit); it shares that object's pool and writes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from runtime import queries
from runtime.system_db import SystemDatabase

# One row per existing workflow: its status and whether the action's predicate holds for it now.
# The only interpolation is constant SQL text; the IDs are a parameter.
_PREVIEW = (
    "SELECT w.workflow_uuid, w.status, {predicate} "
    "FROM dbos.workflow_status w WHERE w.workflow_uuid = ANY(%(workflow_ids)s)"
)
PREVIEW_CANCEL = _PREVIEW.format(predicate=queries.CANCELLABLE)
PREVIEW_RESUME = _PREVIEW.format(predicate=queries.RESUMABLE)


@dataclass(frozen=True)
class Eligibility:
    """A workflow's status and whether the action would change it."""

    status: str
    eligible: bool


class ActionPreview:
    """Read-only evaluation of the cancel and resume predicates, through a system database's
    pool."""

    def __init__(self, sysdb: SystemDatabase) -> None:
        self.sysdb = sysdb

    def _evaluate(self, statement: str, workflow_ids: list[str]) -> dict[str, Eligibility]:
        if not workflow_ids:
            return {}
        with self.sysdb.connection() as conn:
            rows = conn.execute(statement, {"workflow_ids": workflow_ids}).fetchall()
        return {r[0]: Eligibility(r[1], bool(r[2])) for r in rows}

    def cancel(self, workflow_ids: list[str]) -> dict[str, Eligibility]:
        """Per existing workflow (unknown IDs are absent): would a cancel change it now?"""
        return self._evaluate(PREVIEW_CANCEL, workflow_ids)

    def resume(self, workflow_ids: list[str]) -> dict[str, Eligibility]:
        """Per existing workflow (unknown IDs are absent): would a resume change it now?"""
        return self._evaluate(PREVIEW_RESUME, workflow_ids)

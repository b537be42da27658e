"""Workflow attributes from the facade: ``DBOS.update_workflow_attributes`` and its async twin.
Inside a workflow the update is one of its steps (``DBOS.updateWorkflowAttributes``, DBOS's
name), so a recovered workflow does not repeat it."""

from __future__ import annotations

from typing import Any

from runtime import management
from runtime.engine.steps import StepOptions
from runtime.facade.base import FacadeBase

_STEP: StepOptions = {"name": "DBOS.updateWorkflowAttributes"}


class AttributeCalls(FacadeBase):
    """Replacing a workflow's custom attributes."""

    @classmethod
    def update_workflow_attributes(
        cls, workflow_id: str, attributes: dict[str, Any] | None, *, merge: bool = False
    ) -> None:
        """Replace the custom attributes of workflow ``workflow_id`` (a dict of JSON values with
        string keys; None clears them), or with ``merge`` write the given top-level keys over its
        current ones. Bad attributes raise ``DBOSException`` before anything is recorded; an
        unknown ID changes nothing (as in DBOS). In a workflow it is a step: done once."""
        text = management.attributes_text(attributes, merge)
        args = (cls._rt().sysdb, workflow_id, text, merge)
        cls._engine().steps.run_step(_STEP, management.update_attributes, args, {})

    @classmethod
    async def update_workflow_attributes_async(
        cls, workflow_id: str, attributes: dict[str, Any] | None, *, merge: bool = False
    ) -> None:
        """``update_workflow_attributes`` for asyncio code (the update runs in a worker
        thread)."""
        text = management.attributes_text(attributes, merge)
        args = (cls._rt().sysdb, workflow_id, text, merge)
        await cls._engine().steps.run_step_async(_STEP, management.update_attributes, args, {})

"""Queues, from the facade: what ``Queue.enqueue`` calls."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from runtime.engine import EnqueueRequest
from runtime.errors import DBOSException
from runtime.facade.base import BACKEND, workflow_of
from runtime.facade.decorators import Decorators
from runtime.handles import WorkflowHandle
from runtime.queues import Queue, current_enqueue_options


class QueueCalls(Decorators):
    """Enqueueing workflows and looking at queues."""

    @classmethod
    def _enqueue(
        cls, queue: Queue, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> WorkflowHandle[Any]:
        info, call_args = workflow_of(func, args)
        dedup, priority = current_enqueue_options()
        if priority is not None and priority != 0 and not queue.priority_enabled:
            raise DBOSException(
                f"queue {queue.name!r} does not have priority_enabled=True; "
                "a priority would be ignored"
            )
        request = EnqueueRequest(queue.name, priority or 0, dedup)
        wid = cls._engine().enqueue_workflow(info, call_args, kwargs, request)
        return WorkflowHandle(BACKEND, wid)

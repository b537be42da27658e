"""Queues, from the facade: what ``Queue.enqueue`` calls, and DBOS's queue methods."""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Sequence
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from runtime import queues
from runtime.enqueueing import (
    assigned_by_options,
    request_for,
    request_from_options,
    workflow_by_name,
)
from runtime.facade.base import BACKEND, FacadeBase, workflow_of
from runtime.facade.decorators import Decorators
from runtime.handles import WorkflowHandle, WorkflowHandleAsync
from runtime.queues import Limiter, Queue

if TYPE_CHECKING:
    from runtime.client import EnqueueOptions

P = ParamSpec("P")
R = TypeVar("R")


class QueueCalls(Decorators):
    """Enqueueing workflows, and declaring, finding and listening to queues."""

    @classmethod
    def _enqueue(
        cls, queue: Queue, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> WorkflowHandle[Any]:
        info, call_args = workflow_of(func, args)
        request = request_for(queue.name, cls._rt().app_version)
        wid = cls._engine().enqueue_workflow(info, call_args, kwargs, request)
        return WorkflowHandle(BACKEND, wid)

    @classmethod
    async def _enqueue_async(
        cls, queue: Queue, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> WorkflowHandleAsync[Any]:
        info, call_args = workflow_of(func, args)
        request = request_for(queue.name, cls._rt().app_version)
        wid = await cls._engine().enqueue_workflow_async(info, call_args, kwargs, request)
        return WorkflowHandleAsync(BACKEND, wid)

    @classmethod
    def register_queue(
        cls,
        name: str,
        concurrency: int | None = None,
        limiter: Limiter | None = None,
        *,
        worker_concurrency: int | None = None,
        priority_enabled: bool = False,
        partition_queue: bool = False,
        polling_interval_sec: float = 1.0,
    ) -> Queue:
        """Declare a queue (the parameters of ``Queue``) and return it; raises
        ``DBOSException`` if this process already declared that name."""
        return Queue(
            name,
            concurrency,
            limiter,
            worker_concurrency=worker_concurrency,
            priority_enabled=priority_enabled,
            partition_queue=partition_queue,
            polling_interval_sec=polling_interval_sec,
        )

    @classmethod
    async def register_queue_async(
        cls,
        name: str,
        concurrency: int | None = None,
        limiter: Limiter | None = None,
        *,
        worker_concurrency: int | None = None,
        priority_enabled: bool = False,
        partition_queue: bool = False,
        polling_interval_sec: float = 1.0,
    ) -> Queue:
        """``register_queue`` for asyncio code."""
        return cls.register_queue(
            name,
            concurrency,
            limiter,
            worker_concurrency=worker_concurrency,
            priority_enabled=priority_enabled,
            partition_queue=partition_queue,
            polling_interval_sec=polling_interval_sec,
        )

    @classmethod
    def retrieve_queue(cls, name: str) -> Queue | None:
        """The queue declared under ``name`` in this process; None when there is none."""
        return queues.get_queue(name)

    @classmethod
    async def retrieve_queue_async(cls, name: str) -> Queue | None:
        """``retrieve_queue`` for asyncio code."""
        return queues.get_queue(name)

    @classmethod
    def list_queues(cls) -> list[Queue]:
        """The queues declared in this process (not the runtime's internal one)."""
        return [q for q in queues.declared_queues() if q.name != queues.INTERNAL_QUEUE]

    @classmethod
    async def list_queues_async(cls) -> list[Queue]:
        """``list_queues`` for asyncio code."""
        return cls.list_queues()

    @classmethod
    def delete_queue(cls, name: str) -> None:
        """Forget the queue declared under ``name``: this process no longer dequeues from it
        (its recorded workflows stay as they are; a process that declares it still runs them)."""
        queues.delete_queue(name)

    @classmethod
    async def delete_queue_async(cls, name: str) -> None:
        """``delete_queue`` for asyncio code."""
        queues.delete_queue(name)

    @classmethod
    def listen_queues(cls, queues_to_listen: Sequence[Queue | str]) -> None:
        """Dequeue, in this process, only from these queues (``Queue`` objects or names; the
        runtime's internal queue is always served). Call it before ``DBOS.launch()``, once:
        ``DBOSException`` otherwise."""
        names = [q if isinstance(q, str) else q.name for q in queues_to_listen]
        queues.listen(names, launched=FacadeBase._runtime is not None)

    @classmethod
    def enqueue_workflow(
        cls, queue_name: str, func: Callable[P, R], *args: P.args, **kwargs: P.kwargs
    ) -> WorkflowHandle[R]:
        """Enqueue a workflow on the queue named ``queue_name`` (declared here or only in other
        processes of the app), under the enclosing ``SetEnqueueOptions``. A ``queue_name``
        that is not a non-empty string raises ``DBOSException``."""
        info, call_args = workflow_of(func, args)
        request = request_for(queue_name, cls._rt().app_version)
        wid = cls._engine().enqueue_workflow(info, call_args, dict(kwargs), request)
        return WorkflowHandle(BACKEND, wid)

    @classmethod
    async def enqueue_workflow_async(
        cls,
        queue_name: str,
        func: Callable[P, Coroutine[Any, Any, R]],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> WorkflowHandleAsync[R]:
        """``enqueue_workflow`` for asyncio code."""
        info, call_args = workflow_of(func, args)
        request = request_for(queue_name, cls._rt().app_version)
        wid = await cls._engine().enqueue_workflow_async(info, call_args, dict(kwargs), request)
        return WorkflowHandleAsync(BACKEND, wid)

    @classmethod
    def enqueue_workflow_with_options(
        cls, options: EnqueueOptions, *args: Any, **kwargs: Any
    ) -> WorkflowHandle[Any]:
        """Enqueue a workflow by name with DBOS's ``EnqueueOptions`` (those of
        ``DBOSClient.enqueue``: ``workflow_name`` and ``queue_name`` required), without a
        reference to its function: any process of the app that has it runs it. Inside a workflow
        it is recorded as a child. Without ``app_version`` the first executor to dequeue it gives
        it its own version. Bad options (an unknown key, a value of the wrong type or range)
        raise ``DBOSException`` before anything is recorded."""
        info = workflow_by_name(options.get("workflow_name"), queues.options_class_name(options))
        request = request_from_options(options)
        with assigned_by_options(options):
            wid = cls._engine().enqueue_workflow(info, args, dict(kwargs), request)
        return WorkflowHandle(BACKEND, wid)

    @classmethod
    async def enqueue_workflow_with_options_async(
        cls, options: EnqueueOptions, *args: Any, **kwargs: Any
    ) -> WorkflowHandleAsync[Any]:
        """``enqueue_workflow_with_options`` for asyncio code."""
        info = workflow_by_name(options.get("workflow_name"), queues.options_class_name(options))
        request = request_from_options(options)
        with assigned_by_options(options):
            wid = await cls._engine().enqueue_workflow_async(info, args, dict(kwargs), request)
        return WorkflowHandleAsync(BACKEND, wid)

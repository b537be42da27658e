"""What an enqueue from the app records: the ``EnqueueRequest`` for a queue, from the enclosing
``SetEnqueueOptions`` or from DBOS's ``EnqueueOptions`` (``DBOS.enqueue_workflow_with_options``),
checked before anything is recorded."""

from __future__ import annotations

import time
from collections.abc import Mapping
from contextlib import ExitStack
from typing import Any

from runtime.context import SetWorkflowAttributes, SetWorkflowID, SetWorkflowTimeout
from runtime.engine import DEFAULT_MAX_RECOVERY_ATTEMPTS, EnqueueRequest
from runtime.errors import DBOSException
from runtime.queues import (
    EnqueueOptionValues,
    check_enqueue_options,
    check_queue_name,
    current_enqueue_options,
    get_queue,
)
from runtime.registry import WorkflowInfo, get_workflow


def request_for(queue_name: str, app_version: str) -> EnqueueRequest:
    """The request for an enqueue on ``queue_name`` under the enclosing ``SetEnqueueOptions``,
    checked against the queue when it is declared in this process (a queue declared only by
    other processes of the app is not checked here). The workflow runs on ``app_version``
    unless the options name another."""
    options = current_enqueue_options()
    queue = get_queue(check_queue_name(queue_name))
    if queue is not None:
        queue.check_enqueue(options)
    return _request(queue_name, options, options.app_version or app_version)


def request_from_options(options: Mapping[str, Any]) -> EnqueueRequest:
    """The request DBOS's ``EnqueueOptions`` describe (``queue_name`` required; ``priority``,
    ``deduplication_id``, ``queue_partition_key``, ``app_version``, ``delay_seconds``
    optional). Without ``app_version`` the first executor to dequeue it gives it its own."""
    check_enqueue_options(options)
    queue_name, delay = options["queue_name"], options.get("delay_seconds")
    values = EnqueueOptionValues(
        deduplication_id=options.get("deduplication_id"),
        priority=options.get("priority"),
        app_version=options.get("app_version"),
        queue_partition_key=options.get("queue_partition_key"),
        delay_until_ms=int((time.time() + delay) * 1000) if delay is not None else None,
    )
    return _request(queue_name, values, values.app_version)


def _request(queue_name: str, options: EnqueueOptionValues, version: str | None) -> EnqueueRequest:
    return EnqueueRequest(
        queue_name,
        priority=options.priority or 0,
        deduplication_id=options.deduplication_id,
        queue_partition_key=options.queue_partition_key,
        app_version=version,
        delay_until_ms=options.delay_until_ms,
    )


def workflow_by_name(name: object, class_name: object = None) -> WorkflowInfo:
    """The workflow registered under ``name``, or, when this process does not have it (another
    process of the app implements it), a stand-in that records the start under that name."""
    if not isinstance(name, str) or not name:
        raise DBOSException("enqueue options need 'workflow_name' (a non-empty string)")
    found = get_workflow(name)
    if found is not None:
        return found
    return WorkflowInfo(
        name=name,
        func=_not_here,
        max_recovery_attempts=DEFAULT_MAX_RECOVERY_ATTEMPTS,
        class_name=class_name if isinstance(class_name, str) else None,
    )


def _not_here(*args: Any, **kwargs: Any) -> None:  # pragma: no cover - never run: only recorded
    raise DBOSException("this workflow is not registered in this process")


def assigned_by_options(options: Mapping[str, Any]) -> ExitStack:
    """A ``with`` block giving the enqueued workflow the options' ``workflow_id``,
    ``workflow_timeout`` (seconds) and ``attributes``, as ``SetWorkflowID``,
    ``SetWorkflowTimeout`` and ``SetWorkflowAttributes`` would."""
    stack = ExitStack()
    if options.get("attributes") is not None:
        stack.enter_context(SetWorkflowAttributes(options["attributes"]))
    workflow_id, timeout = options.get("workflow_id"), options.get("workflow_timeout")
    if workflow_id is not None:
        stack.enter_context(SetWorkflowID(workflow_id))
    if timeout:  # 0, like None, sets no timeout (as DBOSClient.enqueue)
        stack.enter_context(SetWorkflowTimeout(timeout))
    return stack

"""Async twins of blocking calls: one helper that runs the sync core in a worker thread, so that
each ``*_async`` method of ``DBOS`` and ``DBOSClient`` is a shell over the same code as its
twin, never a copy."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")

__all__ = ["twin"]


def twin(func: Callable[P, R]) -> Callable[P, Awaitable[R]]:
    """The async twin of a blocking function or bound method: same parameters, same result,
    awaited (``list_workflows_async = twin(list_workflows)``). ``asyncio.to_thread`` carries the
    caller's context variables (the enclosing workflow, ``SetWorkflowID``) into the thread."""

    @functools.wraps(func)
    async def run(*args: P.args, **kwargs: P.kwargs) -> R:
        return await asyncio.to_thread(func, *args, **kwargs)

    run.__name__ = f"{func.__name__}_async"
    run.__qualname__ = f"{func.__qualname__}_async"
    run.__doc__ = f"``{func.__name__}`` for asyncio code (run in a worker thread)."
    return run

"""One control loop for sync and async: durable operations written once, as generators.

Each durable operation (a step with its retries, a transaction with its retries, a wait for a
result, a message or an event) is a generator that decides what happens and yields an ``Effect``
for everything that touches the outside world: calling the user's function, database work, a
wait. Two drivers run it: ``run_sync`` performs each effect in the calling thread, ``run_async``
awaits the user's coroutine on the event loop and hands blocking work to a worker thread. So each
retry, replay and outcome rule exists once, and the ``*_async`` twins are one-line shells.

An effect's outcome is sent back into the generator, its exception thrown into it (so a
generator's ``try``/``except`` around a ``yield`` handles the user's error as ordinary code would).
Code before a generator's first ``yield`` runs synchronously when the driver starts it: durable
operations take their step number there, so under ``asyncio.gather`` they are numbered in call
order, and a replay numbers them the same way.

A ``StopIteration`` of the user's (``next()`` on an empty iterator in a step) must reach the user
as itself, but Python turns one that leaves a generator frame into ``RuntimeError`` (PEP 479). So
the drivers hand a thrown-in ``StopIteration`` to the operation as ``Carried`` (an ordinary
exception holding it), operations raise a recorded or awaited one with ``carry``, record the
user's error with ``uncarry``, and the drivers raise the original outside every generator frame.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Callable, Generator
from typing import Any, TypeVar, cast

T = TypeVar("T")
E = TypeVar("E", bound=BaseException)

# A durable operation: yields effects, receives their outcomes, returns its result.
Operation = Generator["Effect", Any, T]


class Effect(ABC):
    """Something a durable operation needs done; performed by whichever driver runs it."""

    @abstractmethod
    def run(self) -> Any:
        """Perform it in this thread."""

    @abstractmethod
    async def run_async(self) -> Any:
        """Perform it without blocking the event loop."""


class Call(Effect):
    """Call the user's function (a coroutine function under ``run_async``: awaited)."""

    __slots__ = ("func", "args", "kwargs")

    def __init__(self, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]):
        self.func, self.args, self.kwargs = func, args, kwargs

    def run(self) -> Any:
        return self.func(*self.args, **self.kwargs)

    async def run_async(self) -> Any:
        return await self.func(*self.args, **self.kwargs)


class Blocking(Effect):
    """Blocking work (a database round trip): in this thread, or on a worker thread."""

    __slots__ = ("fn",)

    def __init__(self, fn: Callable[[], Any]) -> None:
        self.fn = fn

    def run(self) -> Any:
        return self.fn()

    async def run_async(self) -> Any:
        return await asyncio.to_thread(self.fn)


class Carried(Exception):
    """A ``StopIteration`` on its way through generator frames (see the module docstring)."""

    def __init__(self, error: StopIteration) -> None:
        super().__init__(repr(error))
        self.error = error


def carry(error: BaseException) -> BaseException:
    """What an operation raises for ``error``: itself, or a ``StopIteration`` carried."""
    return Carried(error) if isinstance(error, StopIteration) else error


def uncarry(error: E) -> E:
    """The user's own exception behind what an operation caught (to record or to wrap); of the
    caught exception's kind (a carried ``StopIteration`` is an ``Exception`` like its carrier)."""
    return cast(E, error.error) if isinstance(error, Carried) else error


def _resume(operation: Operation[Any], send: Any, error: BaseException | None) -> tuple[bool, Any]:
    """Resume ``operation`` with an effect's outcome: (True, its result) when it ended, else
    (False, the next effect). A carried ``StopIteration`` that escapes it is raised as itself,
    from this ordinary frame."""
    escaped: StopIteration | None = None
    try:
        effect = operation.send(send) if error is None else operation.throw(carry(error))
    except StopIteration as stop:
        return True, stop.value
    except Carried as carried:
        escaped = carried.error
    if escaped is not None:
        raise escaped  # outside the except block: it keeps its own context
    return False, effect


def run_sync(operation: Operation[T]) -> T:
    """Drive ``operation`` to its end in this thread."""
    send: Any = None
    error: BaseException | None = None
    while True:
        done, effect = _resume(operation, send, error)
        if done:
            result: T = effect
            return result
        send, error = None, None
        try:
            send = effect.run()
        except BaseException as exc:  # handed to the operation, which decides
            error = exc


async def run_async(operation: Operation[T]) -> T:
    """Drive ``operation`` to its end on the running event loop. (A ``StopIteration`` that leaves
    a coroutine becomes ``RuntimeError`` whatever we do: Python's rule for coroutines.)"""
    send: Any = None
    error: BaseException | None = None
    while True:
        done, effect = _resume(operation, send, error)
        if done:
            result: T = effect
            return result
        send, error = None, None
        try:
            send = await effect.run_async()
        except BaseException as exc:  # handed to the operation, which decides
            error = exc

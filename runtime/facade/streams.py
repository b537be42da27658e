"""Streams as ``DBOS`` has them: ``write_stream`` and ``close_stream`` in a workflow (or a step),
``read_stream`` and ``read_stream_offset`` anywhere, each with its ``*_async`` twin. The rules
are in ``runtime.streams``."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Generator
from typing import Any

from runtime import streams
from runtime.facade.base import FacadeBase


class StreamCalls(FacadeBase):
    """Writing and reading streams."""

    @classmethod
    def write_stream(cls, key: str, value: Any, *, serialization_type: Any = None) -> None:
        """In a workflow: append ``value`` (JSON-serializable) to this workflow's stream ``key``,
        exactly once and in order (a durable step). In one of its steps: appended at once, not
        as a step (a retried step writes again). ``DBOSException`` outside a workflow, and for a
        key or value that cannot be stored (before anything is written).
        ``serialization_type`` (DBOS's) is accepted; values are always JSON."""
        cls._rt().streams.write(key, value, serialization_type)

    @classmethod
    def close_stream(cls, key: str) -> None:
        """In a workflow (or one of its steps): close its stream ``key``; readers stop after the
        values written before. ``DBOSException`` outside a workflow."""
        cls._rt().streams.close(key)

    @classmethod
    def read_stream(
        cls,
        workflow_id: str,
        key: str,
        *,
        offset: int = 0,
        polling_interval_sec: float | None = None,
        timeout_seconds: float | None = None,
    ) -> Generator[Any, Any, None]:
        """Yield the values of stream ``key`` of workflow ``workflow_id`` in order, from
        ``offset`` (0: the first), as they are written; ends when the stream is closed, or when
        the workflow has ended and every value is read. Waits are woken by notifications and
        look at the database at least every ``polling_interval_sec`` (>= 0.001; default the
        configured ``notification_listener_polling_interval_sec``, else 1 s).
        ``timeout_seconds``: the longest wait for each value, then ``DBOSStreamTimeoutError``.
        ``DBOSNonExistentWorkflowError`` when no workflow has that ID. In a workflow, each value
        read is recorded (a replay reads the same values)."""
        args = cls._rt().streams.reader(
            workflow_id, key, offset, polling_interval_sec, timeout_seconds
        )
        return streams.read_values(args)

    @classmethod
    def read_stream_offset(
        cls,
        workflow_id: str,
        key: str,
        offset: int,
        *,
        polling_interval_sec: float | None = None,
        timeout_seconds: float | None = None,
    ) -> Any:
        """The one value at ``offset`` of the stream, waiting for it to be written (at most
        ``timeout_seconds``; None: no limit). ``DBOSStreamTimeoutError`` when the timeout passes
        or the stream ends before that offset."""
        args = cls._rt().streams.reader(
            workflow_id, key, offset, polling_interval_sec, timeout_seconds
        )
        return streams.read_one(args)

    @classmethod
    async def write_stream_async(
        cls, key: str, value: Any, *, serialization_type: Any = None
    ) -> None:
        """``write_stream`` for async workflows."""
        await cls._rt().streams.write_async(key, value, serialization_type)

    @classmethod
    async def close_stream_async(cls, key: str) -> None:
        """``close_stream`` for async workflows."""
        await cls._rt().streams.close_async(key)

    @classmethod
    def read_stream_async(
        cls,
        workflow_id: str,
        key: str,
        *,
        offset: int = 0,
        polling_interval_sec: float | None = None,
        timeout_seconds: float | None = None,
    ) -> AsyncGenerator[Any, None]:
        """``read_stream`` as an async generator (``async for value in
        DBOS.read_stream_async(...)``): waits without holding a thread."""
        args = cls._rt().streams.reader(
            workflow_id, key, offset, polling_interval_sec, timeout_seconds
        )
        return streams.read_values_async(args)

    @classmethod
    async def read_stream_offset_async(
        cls,
        workflow_id: str,
        key: str,
        offset: int,
        *,
        polling_interval_sec: float | None = None,
        timeout_seconds: float | None = None,
    ) -> Any:
        """``read_stream_offset`` for asyncio code."""
        args = cls._rt().streams.reader(
            workflow_id, key, offset, polling_interval_sec, timeout_seconds
        )
        return await streams.read_one_async(args)

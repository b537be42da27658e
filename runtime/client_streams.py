"""``DBOSClient``'s stream readers (``read_stream``, ``read_stream_offset`` and their async
twins), apart so that the client class stays small. A client reader waits on the client's own
LISTEN connection (started on its first wait, as for ``get_event``) and looks at the database at
least every polling interval; it records nothing (a client has no workflow)."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Generator
from typing import TYPE_CHECKING, Any

from runtime.system_db import SystemDatabase

if TYPE_CHECKING:
    # The stream machinery (and the engine it builds on) loads only when a client reads.
    from runtime.listener import Notifications


class ClientStreams:
    """Stream reading for ``DBOSClient`` (which provides ``sysdb`` and ``_listen``)."""

    sysdb: SystemDatabase

    if TYPE_CHECKING:

        def _listen(self) -> Notifications: ...

    def _stream_reader(
        self,
        workflow_id: str,
        key: str,
        offset: int,
        polling_interval_sec: float | None,
        timeout_seconds: float | None,
    ) -> dict[str, Any]:
        from runtime import streams

        # Checked before the listener starts: a bad call costs no connection.
        streams.check_read_args(workflow_id, key, offset, polling_interval_sec, timeout_seconds)
        return streams.reader_args(
            self.sysdb,
            self._listen(),
            workflow_id,
            key,
            offset=offset,
            polling_interval_sec=polling_interval_sec,
            timeout_seconds=timeout_seconds,
            default_poll_s=streams.DEFAULT_POLL_S,
            ops=None,
        )

    def read_stream(
        self,
        workflow_id: str,
        key: str,
        *,
        offset: int = 0,
        polling_interval_sec: float | None = None,
        timeout_seconds: float | None = None,
    ) -> Generator[Any, Any, None]:
        """Yield the values of stream ``key`` of workflow ``workflow_id`` in order from
        ``offset`` (0: the first) as they are written, until the stream is closed or the workflow
        has ended and every value is read. Waits are woken by the client's own LISTEN connection
        (started on its first wait) and look at the database at least every
        ``polling_interval_sec`` (>= 0.001; default 1 s). ``timeout_seconds``: the longest wait
        for each value, then ``DBOSStreamTimeoutError``. ``DBOSNonExistentWorkflowError`` when
        no workflow has that ID."""
        from runtime import streams

        args = self._stream_reader(workflow_id, key, offset, polling_interval_sec, timeout_seconds)
        return streams.read_values(args)

    def read_stream_async(
        self,
        workflow_id: str,
        key: str,
        *,
        offset: int = 0,
        polling_interval_sec: float | None = None,
        timeout_seconds: float | None = None,
    ) -> AsyncGenerator[Any, None]:
        """``read_stream`` as an async generator (``async for``)."""
        from runtime import streams

        args = self._stream_reader(workflow_id, key, offset, polling_interval_sec, timeout_seconds)
        return streams.read_values_async(args)

    def read_stream_offset(
        self,
        workflow_id: str,
        key: str,
        offset: int,
        *,
        polling_interval_sec: float | None = None,
        timeout_seconds: float | None = None,
    ) -> Any:
        """The one value at ``offset`` of the stream, waiting for it (at most
        ``timeout_seconds``; None: no limit); ``DBOSStreamTimeoutError`` when the timeout passes
        or the stream ends before that offset."""
        from runtime import streams

        args = self._stream_reader(workflow_id, key, offset, polling_interval_sec, timeout_seconds)
        return streams.read_one(args)

    async def read_stream_offset_async(
        self,
        workflow_id: str,
        key: str,
        offset: int,
        *,
        polling_interval_sec: float | None = None,
        timeout_seconds: float | None = None,
    ) -> Any:
        """``read_stream_offset`` for asyncio code."""
        from runtime import streams

        args = self._stream_reader(workflow_id, key, offset, polling_interval_sec, timeout_seconds)
        return await streams.read_one_async(args)

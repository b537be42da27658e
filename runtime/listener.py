"""Every NOTIFY channel, the one LISTEN connection per process, and the in-memory waiters it wakes.

Cancellations, messages, events, stream values, enqueues and executor stops written by any
process reach this process within milliseconds without a query per step. If the connection
drops, the thread reconnects with backoff and LISTENs again; callers must treat a notification as
a hint and keep the database authoritative (a checkpoint write still reports a cancellation, and
waiters poll slowly as a fallback).

The channels and their payloads, as the triggers of ``schema.sql`` and its migrations (and
``queries.STOP_EXECUTOR``/``MARK_EXECUTORS_GONE``) send them (a test checks that the two agree):
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager

import psycopg
from psycopg import sql

from runtime import db, pg_hosts

logger = logging.getLogger("dbos")

Callback = Callable[[str], None]

# A message to a workflow; payload ``message_key(destination, topic)``.
MESSAGE_CHANNEL = "dbos_notifications_channel"
# An event set by a workflow; payload ``event_key(workflow_id, key)``.
EVENT_CHANNEL = "dbos_workflow_events_channel"
# A workflow cancelled; payload its ID.
CANCEL_CHANNEL = "dbos_workflow_cancel_channel"
# Work enqueued on (or a slot freed in) a queue; payload the queue's name.
QUEUE_CHANNEL = "dbos_queue_channel"
# An executor process stopped (or was found gone); payload its executor ID.
EXECUTOR_CHANNEL = "dbos_executor_channel"
# A value written to (or the close of) a stream; payload ``stream_key(workflow_id, key)``.
STREAM_CHANNEL = "dbos_streams_channel"
CHANNELS = (
    MESSAGE_CHANNEL,
    EVENT_CHANNEL,
    CANCEL_CHANNEL,
    QUEUE_CHANNEL,
    EXECUTOR_CHANNEL,
    STREAM_CHANNEL,
)

# With the listener up a notification wakes a waiter at once; the poll only guards against a
# notification lost in a reconnect. With it down, polling is the only way to notice, so it is fast.
POLL_LISTENING_S = 5.0
POLL_NOT_LISTENING_S = 0.5
# Waits are sliced so that a cancellation or shutdown is noticed promptly without a query.
WAIT_SLICE_S = 0.25


def fan_out(*callbacks: Callback) -> Callback:
    """One channel's payload handed to several callbacks."""

    def dispatch(payload: str) -> None:
        for callback in callbacks:
            callback(payload)

    return dispatch


def message_key(workflow_id: str, topic: str | None) -> str:
    """The notification payload of a message to ``workflow_id`` on ``topic``."""
    return f"{workflow_id}::{topic or ''}"


def event_key(workflow_id: str, key: str) -> str:
    """The notification payload of an event ``key`` of ``workflow_id``."""
    return f"{workflow_id}::{key}"


def stream_key(workflow_id: str, key: str) -> str:
    """The notification payload of a write to stream ``key`` of ``workflow_id``."""
    return f"{workflow_id}::{key}"


class Watch:
    """One waiter's wake-up flag, for a thread or for a task on an event loop. Registered before
    the waiter looks at the table, so a notification cannot slip between the look and the wait."""

    def __init__(self) -> None:
        self._flag = threading.Event()
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._async_flag: asyncio.Event | None = None

    def wake(self) -> None:
        """Set the flag (from the listener's thread)."""
        self._flag.set()
        with self._lock:
            loop, flag = self._loop, self._async_flag
        if loop is not None and flag is not None:
            loop.call_soon_threadsafe(flag.set)

    def wait(self, seconds: float) -> bool:
        """Wait in this thread until woken or ``seconds`` pass; whether it was woken."""
        return self._flag.wait(seconds)

    async def wait_async(self, seconds: float) -> bool:
        """Wait on the running loop until woken or ``seconds`` pass; whether it was woken."""
        with self._lock:
            if self._async_flag is None:
                self._loop, self._async_flag = asyncio.get_running_loop(), asyncio.Event()
            flag = self._async_flag
        if self._flag.is_set():
            return True
        try:
            await asyncio.wait_for(flag.wait(), seconds)
            return True
        except asyncio.TimeoutError:
            return False

    def is_set(self) -> bool:
        """Whether it was woken since the last ``clear``."""
        return self._flag.is_set()

    def clear(self) -> None:
        """Forget earlier wake-ups (the waiter is about to look at the table again)."""
        self._flag.clear()
        if self._async_flag is not None:
            self._async_flag.clear()


class Waiters:
    """Threads and tasks waiting for notifications, by payload."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiting: dict[str, set[Watch]] = {}

    @contextmanager
    def watch(self, key: str) -> Iterator[Watch]:
        """A flag set whenever a notification for ``key`` arrives while the block runs."""
        watch = Watch()
        with self._lock:
            self._waiting.setdefault(key, set()).add(watch)
        try:
            yield watch
        finally:
            with self._lock:
                waiting = self._waiting.get(key)
                if waiting is not None:
                    waiting.discard(watch)
                    if not waiting:
                        del self._waiting[key]

    def notify(self, key: str) -> None:
        """Wake everyone waiting for ``key``."""
        with self._lock:
            watches = list(self._waiting.get(key, ()))
        for watch in watches:
            watch.wake()

    def notify_all(self) -> None:
        """Wake every waiter (after a reconnect, when notifications may have been missed)."""
        with self._lock:
            watches = [w for group in self._waiting.values() for w in group]
        for watch in watches:
            watch.wake()


class Notifications:
    """The waiters for messages, events and stream values of one process, fed by its
    listener."""

    def __init__(self, *, poll_s: float | None = None) -> None:
        """``poll_s``: how often a waiter looks at the table while no LISTEN connection is up
        (``notification_listener_polling_interval_sec``), in seconds; None: 0.5."""
        self.messages = Waiters()
        self.events = Waiters()
        self.streams = Waiters()
        self.is_listening: Callable[[], bool] = lambda: False
        self.poll_not_listening_s = POLL_NOT_LISTENING_S if poll_s is None else poll_s

    def callbacks(self) -> dict[str, Callback]:
        """Listener channel → callback."""
        return {
            MESSAGE_CHANNEL: self.messages.notify,
            EVENT_CHANNEL: self.events.notify,
            STREAM_CHANNEL: self.streams.notify,
        }

    def wake_all(self) -> None:
        """Wake every waiter so it looks at the database again."""
        self.messages.notify_all()
        self.events.notify_all()
        self.streams.notify_all()

    def wait(
        self, watch: Watch, seconds: float, interrupt: Callable[[], None] | None = None
    ) -> bool:
        """Wait until ``watch`` is woken, ``seconds`` pass, or the poll interval passes,
        whichever is first; ``interrupt`` is called between slices and may raise. Returns
        whether it was woken or the poll interval ended the wait (either way: look again)."""
        poll = self._poll_s()
        end = time.monotonic() + min(seconds, poll)
        woken = seconds > poll
        while (left := end - time.monotonic()) > 0:
            if watch.wait(min(left, WAIT_SLICE_S)):
                woken = True
                break
            if interrupt is not None:
                interrupt()
        watch.clear()
        return woken

    async def wait_async(
        self,
        watch: Watch,
        seconds: float,
        interrupt: Callable[[], Awaitable[None]] | None = None,
    ) -> bool:
        """``wait`` for a task on the running loop."""
        poll = self._poll_s()
        end = time.monotonic() + min(seconds, poll)
        woken = seconds > poll
        while (left := end - time.monotonic()) > 0:
            if await watch.wait_async(min(left, WAIT_SLICE_S)):
                woken = True
                break
            if interrupt is not None:
                await interrupt()
        watch.clear()
        return woken

    def _poll_s(self) -> float:
        return POLL_LISTENING_S if self.is_listening() else self.poll_not_listening_s


class NotificationListener:
    """A daemon thread that LISTENs on a fixed set of channels and dispatches payloads."""

    def __init__(self, url: str, callbacks: dict[str, Callback]) -> None:
        self.url = url
        self.callbacks = dict(callbacks)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="dbos-listener", daemon=True)
        self._conn: psycopg.Connection[object] | None = None
        self.connected = threading.Event()
        # True while LISTEN is in place; waiters poll faster while it is False.
        self.listening = False
        # Called after every (re)connection: whoever waits on a notification may have missed one
        # while the connection was down, and should look at the database again.
        self.on_reconnect: list[Callable[[], None]] = []

    def start(self) -> None:
        """Start listening; returns once the first connection is up (or failed)."""
        self._thread.start()
        self.connected.wait(timeout=db.CONNECT_TIMEOUT_S)

    def run_reconnect_hooks(self) -> None:
        """Call the ``on_reconnect`` hooks once, without listening: with ``use_listen_notify``
        False the listener never starts, and whoever waits looks at the database now and then
        polls (``listening`` stays False)."""
        for hook in self.on_reconnect:
            hook()

    def stop(self) -> None:
        """Stop the thread and close its connection."""
        self._stop.set()
        conn = self._conn
        if conn is not None:
            try:
                conn.cancel_safe(timeout=1)
            except Exception:
                pass
        if self._thread.is_alive():  # never started when launch failed before it
            self._thread.join(timeout=5)

    def _run(self) -> None:
        backoff = 0.1
        while not self._stop.is_set():
            try:
                # With TCP keepalives (pg_hosts.session_defaults): this connection only
                # waits, so only probes tell it that its server vanished without a reset.
                with psycopg.connect(
                    self.url,
                    autocommit=True,
                    **pg_hosts.session_defaults(self.url, db.CONNECT_TIMEOUT_S),
                ) as conn:
                    self._conn = conn
                    for channel in self.callbacks:
                        conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
                    self.listening = True
                    self.connected.set()
                    backoff = 0.1
                    self.run_reconnect_hooks()
                    while not self._stop.is_set():
                        # A short wait slice lets stop() return promptly (a socket wait, no query).
                        for note in conn.notifies(timeout=0.2):
                            self._dispatch(note.channel, note.payload)
            except Exception as exc:
                self._conn = None
                self.listening = False
                self.connected.set()  # do not block start() on an unreachable database
                if self._stop.is_set():
                    break
                # One line, as every connection error is shown (a multi-host failure lists
                # each host), and never the password.
                logger.warning(
                    "notification listener lost its connection (%s); retrying",
                    db.translate(exc, self.url) if isinstance(exc, psycopg.Error) else exc,
                )
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)
        self._conn = None
        self.listening = False

    def _dispatch(self, channel: str, payload: str) -> None:
        callback = self.callbacks.get(channel)
        if callback is None:
            return
        try:
            callback(payload)
        except Exception:
            logger.exception("notification callback for %s failed", channel)

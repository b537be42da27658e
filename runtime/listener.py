"""One LISTEN connection per process, feeding in-memory callbacks.

Cancellations (and, later, messages and events) written by any process reach this process within
milliseconds without a query per step. If the connection drops, the thread reconnects with backoff
and LISTENs again; callers must treat a notification as a hint and keep the database authoritative
(a checkpoint write still reports a cancellation, and waiters poll slowly as a fallback).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import psycopg
from psycopg import sql

from runtime import db

logger = logging.getLogger("dbos")

Callback = Callable[[str], None]


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
                with psycopg.connect(
                    self.url, autocommit=True, connect_timeout=db.CONNECT_TIMEOUT_S
                ) as conn:
                    self._conn = conn
                    for channel in self.callbacks:
                        conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
                    self.listening = True
                    self.connected.set()
                    backoff = 0.1
                    for hook in self.on_reconnect:
                        hook()
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
                logger.warning("notification listener lost its connection (%s); retrying", exc)
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

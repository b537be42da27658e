"""Executor liveness: which processes are alive, so that many processes on one database recover
each other's work.

Every launched process registers a row in ``dbos.executors`` and heartbeats it every quarter of its
lease. A process is alive while it heartbeats within its lease and has not stopped; a workflow
whose owner process is not alive is claimed by a live process of its application version (the
takeover loop of ``runtime.recovery``, through the one claim path, which bumps the owner epoch so
a process that was only paused and comes back records nothing more). A live owner is never
claimed from, so a rolling restart (a new process with the same executor ID next to the old one)
leaves the old process's running work alone.

A clean shutdown marks the process stopped and NOTIFYs the others, who take over at once rather
than after the lease; so does a normal interpreter exit (``atexit``). A process that was killed is
dead when its lease expires, or at once for a process on the same host, which can see that its pid
no longer runs (or runs another program: the row records the process's start time).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from typing import Any

import psycopg

from runtime.errors import DBOSException
from runtime.executor_db import ExecutorTable
from runtime.liveness import gone_on_this_host, process_identity
from runtime.running_steps import RunningSteps
from runtime.system_db import SystemDatabase

logger = logging.getLogger("dbos")


class ExecutorRegistry:
    """This process's executor row and its heartbeat (which also finds gone processes on this
    host)."""

    def __init__(
        self,
        sysdb: SystemDatabase,
        *,
        executor_id: str,
        application_version: str,
        lease_s: float,
        process_id: str,
        running_steps: RunningSteps | None = None,
    ) -> None:
        self.table = ExecutorTable(sysdb)
        # Published with each beat: the steps running for at least this long (or one beat).
        self.running_steps = running_steps
        self.min_step_age_ms = int(min(1.0, max(0.25, lease_s / 4)) * 1000)
        self.executor_id = executor_id
        self.application_version = application_version
        self.lease_ms = int(lease_s * 1000)
        self.interval_s = max(0.25, lease_s / 4)
        self.process_id = process_id
        self._beat_stop = threading.Event()
        # The heartbeat has a thread and a connection of its own: it must never wait behind
        # workflows or a takeover (for a pooled connection, for the database), or this process's
        # lease would run out while it lives.
        self._beat_thread = threading.Thread(target=self._beat, name="dbos-heartbeat", daemon=True)
        self._conn: psycopg.Connection[Any] | None = None
        self._warned: set[str] = set()
        self._warned_stopped = False
        self.hostname = socket.gethostname()
        self.identity: str | None = None

    def register(self) -> None:
        """Record this process as a live executor (before it recovers anything), and mark the
        processes on this host that are gone without stopping (killed) as stopped, so that this
        process's recovery at launch takes their workflows at once."""
        self.identity = process_identity()
        self.table.register(
            self.process_id,
            self.executor_id,
            self.hostname,
            os.getpid(),
            self.application_version,
            self.lease_ms,
            self.identity,
        )
        self._heartbeat()

    def start(self) -> None:
        """Start heartbeating."""
        self._beat_thread.start()

    def stop(self, *, release: bool = True) -> None:
        """With ``release``, stop heartbeating and mark this process stopped, so others take over
        its workflows at once. Without it (a workflow of this process is still inside a step),
        keep heartbeating until ``finish`` (when that step has ended): until then this process is
        alive and no one else may run its workflows."""
        if release:
            self.finish()
        else:
            logger.warning(
                "workflows of this process are still in a step; they are handed over when those "
                "steps end, or when this process is gone"
            )

    def finish(self) -> None:
        """Stop heartbeating and mark this process stopped (others take over its workflows)."""
        self._beat_stop.set()
        if self._beat_thread.is_alive() and self._beat_thread is not threading.current_thread():
            self._beat_thread.join(timeout=5)
        try:
            if self._conn is None or self._conn.closed:
                self._conn = self.table.dedicated_connection()
            self.table.stop(self.process_id, self._conn)
        except DBOSException as exc:
            logger.warning("could not mark this executor stopped: %s", exc)
        finally:
            self._close_connection()

    def _beat(self) -> None:
        while not self._beat_stop.wait(self.interval_s):
            try:
                self._heartbeat()
            except DBOSException as exc:
                logger.warning("executor heartbeat failed (will retry): %s", exc)
                self._close_connection()
            except Exception:
                logger.exception("executor heartbeat failed (will retry)")
                self._close_connection()

    def _close_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:  # closing a broken connection: nothing left to do
                logger.debug("closing the heartbeat connection failed", exc_info=True)

    def _heartbeat(self) -> None:
        if self._conn is None or self._conn.closed:
            self._conn = self.table.dedicated_connection()
        steps = (
            self.running_steps.published(int(time.time() * 1000), self.min_step_age_ms)
            if self.running_steps is not None
            else None
        )
        peers = self.table.heartbeat(self.process_id, self._conn, steps)
        if peers is None:
            if not self._warned_stopped:
                self._warned_stopped = True
                logger.error(
                    "this process is marked stopped in dbos.executors although it runs: its "
                    "workflows may be taken over by others (which fences this process out)"
                )
            return
        gone = [p for p in peers if gone_on_this_host(p, self.hostname, self.identity)]
        if gone:
            self.table.mark_gone([p.process_id for p in gone], self._conn)
            for peer in gone:
                logger.info(
                    "executor process %s (pid %d on this host) is gone; its workflows are free",
                    peer.process_id,
                    peer.pid,
                )
        for peer in peers:
            if peer in gone or peer.executor_id != self.executor_id:
                continue
            if peer.process_id not in self._warned:
                self._warned.add(peer.process_id)
                logger.info(
                    "another live process uses executor ID %r (host %s, pid %d): expected during "
                    "a rolling restart (neither takes the other's running workflows); otherwise "
                    "give each process its own DBOS__VMID",
                    self.executor_id,
                    peer.hostname,
                    peer.pid,
                )

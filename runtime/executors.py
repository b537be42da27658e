"""Executor liveness and takeover: many processes on one database recover each other's work.

Every launched process registers a row in ``dbos.executors`` and heartbeats it every quarter of its
lease. A process is alive while it heartbeats within its lease and has not stopped; a workflow
whose owner process is not alive is claimed by a live process of its application version (the one
claim, ``Engine.recover``, which bumps the owner epoch so a process that was only paused and comes
back records nothing more). A live owner is never claimed from, so a rolling restart (a new process
with the same executor ID next to the old one) leaves the old process's running work alone.

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
from pathlib import Path
from typing import Any

import psycopg

from runtime.engine import Engine
from runtime.errors import DBOSException
from runtime.system_db import PeerProcess, SystemDatabase

logger = logging.getLogger("dbos")

EXECUTOR_CHANNEL = "dbos_executor_channel"
# Every this many heartbeats, look for our own orphaned workflows (rare: only lost replies).
SELF_HEAL_EVERY = 8


def process_identity(pid: int | None = None) -> str | None:
    """``boot-id/pid-namespace/pid/start-ticks`` of a process (this one by default) on Linux, so
    that another process on the same host can tell whether it still runs; None elsewhere or when
    the process does not exist."""
    pid = os.getpid() if pid is None else pid
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        namespace = os.stat(f"/proc/{pid}/ns/pid").st_ino
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: fields resume after the last ")".
    fields = stat[stat.rindex(")") + 2 :].split()
    return f"{boot}/{namespace}/{pid}/{fields[19]}"  # field 22 of stat: start time in ticks


def gone_on_this_host(peer: PeerProcess, hostname: str, own_identity: str | None) -> bool:
    """Whether a process recorded on this host is certainly not running any more."""
    if peer.hostname != hostname:
        return False
    if own_identity is not None and peer.process_identity is not None:
        boot, namespace = own_identity.split("/")[:2]
        peer_boot, peer_namespace = peer.process_identity.split("/")[:2]
        if (boot, namespace) != (peer_boot, peer_namespace):
            return False  # another boot's or container's pids: nothing to compare with
        return process_identity(peer.pid) != peer.process_identity
    if peer.pid == os.getpid():
        return True  # our pid, but not our row: that process is gone
    try:
        os.kill(peer.pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False
    return False


class ExecutorRegistry:
    """This process's executor row, its heartbeat, and takeover of dead executors' workflows."""

    def __init__(
        self,
        engine: Engine,
        sysdb: SystemDatabase,
        *,
        executor_id: str,
        application_version: str,
        lease_s: float,
        max_threads: int,
        process_id: str,
    ) -> None:
        self.engine = engine
        self.sysdb = sysdb
        self.executor_id = executor_id
        self.application_version = application_version
        self.lease_ms = int(lease_s * 1000)
        self.interval_s = max(0.25, lease_s / 4)
        self.max_threads = max_threads
        self.process_id = process_id
        self._stop = threading.Event()
        self._wake = threading.Event()
        # Liveness and takeover on threads of their own: a takeover may wait (for a pooled
        # connection, for the database), and this process's heartbeat must never wait behind it,
        # or its own lease would run out while it lives. The heartbeat has its own connection.
        self._beat_thread = threading.Thread(target=self._beat, name="dbos-heartbeat", daemon=True)
        self._thread = threading.Thread(target=self._run, name="dbos-executor", daemon=True)
        self._conn: psycopg.Connection[Any] | None = None
        self._warned: set[str] = set()
        self.hostname = socket.gethostname()
        self.identity: str | None = None

    def register(self) -> None:
        """Record this process as a live executor (before it recovers anything), and mark the
        processes on this host that are gone without stopping (killed) as stopped, so that this
        process's recovery at launch takes their workflows at once."""
        self.identity = process_identity()
        self.sysdb.register_executor(
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
        """Start heartbeating and watching for dead executors."""
        self._beat_thread.start()
        self._thread.start()

    def stop(self, *, release: bool = True) -> None:
        """Stop heartbeating, then (``release``) mark this process stopped so others take over its
        workflows at once. Without ``release`` (a workflow of this process may still be in a
        step), the others wait for the lease to run out."""
        self._stop.set()
        self._wake.set()
        for thread in (self._beat_thread, self._thread):
            if thread.is_alive():
                thread.join(timeout=5)
        self._close_connection()
        if not release:
            logger.warning(
                "workflows of this process are still in a step; other executors take them over "
                "when those steps end (if this process lives on) or its lease (%.0f s) runs out",
                self.lease_ms / 1000,
            )
            return
        try:
            self.sysdb.stop_executor(self.process_id)
        except DBOSException as exc:
            logger.warning("could not mark this executor stopped: %s", exc)

    def wake(self, _payload: str = "") -> None:
        """Another executor stopped: look for workflows to take over now."""
        self._wake.set()

    def _beat(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self._heartbeat()
            except DBOSException as exc:
                logger.warning("executor heartbeat failed (will retry): %s", exc)
                self._close_connection()
            except Exception:
                logger.exception("executor heartbeat failed (will retry)")
                self._close_connection()

    def _run(self) -> None:
        passes = 0
        while not self._stop.is_set():
            passes += 1
            try:
                self.take_over()
                if passes % SELF_HEAL_EVERY == 0:
                    self.reclaim_own()
            except DBOSException as exc:
                logger.warning("executor takeover failed (will retry): %s", exc)
            except Exception:
                logger.exception("executor takeover failed (will retry)")
            self._wake.wait(self.interval_s)
            self._wake.clear()

    def _close_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:  # closing a broken connection: nothing left to do
                logger.debug("closing the heartbeat connection failed", exc_info=True)

    def _heartbeat(self) -> None:
        if self._conn is None or self._conn.closed:
            self._conn = self.sysdb.dedicated_connection()
        peers = self.sysdb.heartbeat(self.process_id, self._conn)
        gone = [p for p in peers if gone_on_this_host(p, self.hostname, self.identity)]
        if gone:
            self.sysdb.mark_executors_gone([p.process_id for p in gone], self._conn)
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

    def reclaim_own(self) -> list[str]:
        """Run this process's own PENDING workflows that it is not running (claims whose reply
        was lost in a connection failure leave them so), and release the cancelled or resumed
        workflows it holds without running them, or that dead processes hold."""
        grace_ms = int(self.interval_s * 1000 * SELF_HEAL_EVERY)
        running = self.engine.running_ids()
        orphans = [
            wid for wid in self.sysdb.own_pending(self.process_id, grace_ms) if wid not in running
        ]
        self.sysdb.release_abandoned(self.process_id, sorted(running))
        if not orphans:
            return []
        taken = list(self.engine.recover(orphans, reclaim_own=True))
        for workflow_id in taken:
            logger.warning("resumed workflow %s, orphaned by a lost reply", workflow_id)
        return taken

    def take_over(self) -> list[str]:
        """Claim and run the PENDING workflows of this version that no live process owns, as many
        as this process has room for. Returns the IDs taken over."""
        room = self.max_threads - self.engine.running_in_background()
        if room <= 0:
            return []
        candidates = self.sysdb.takeover_candidates(self.process_id, self.application_version, room)
        if not candidates:
            return []
        taken = [wid for wid in self.engine.recover(candidates) if wid in candidates]
        if taken:
            logger.info("took over %d workflows from dead processes", len(taken))
        return taken

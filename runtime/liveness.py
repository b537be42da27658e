"""Whether an executor process recorded on this host still runs: read from ``/proc`` (Linux), so
that a process killed on this host is known dead at once instead of after its lease.

A process's identity is ``boot-id/pid-namespace/pid/start-ticks``: a pid that now runs another
program (pid reuse, a container restarted) is told apart by its start time, and pids of another
boot or PID namespace are not compared at all. What cannot be read (another user's process under
``hidepid``, a non-Linux system) is unknown, never "gone".
"""

from __future__ import annotations

import os
from pathlib import Path

from runtime.records import PeerProcess


def _boot_id() -> str | None:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None


def _start_ticks(pid: int) -> str | None:
    """The start time of ``pid`` in clock ticks since boot; None when no such process exists.
    Raises ``PermissionError`` (or another ``OSError``) when it cannot be read."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None
    # The command name (field 2) may hold spaces and parentheses: fields resume after the last ")".
    return stat[stat.rindex(")") + 2 :].split()[19]  # field 22 of stat: start time in ticks


def process_identity() -> str | None:
    """This process's ``boot-id/pid-namespace/pid/start-ticks``, or None off Linux."""
    boot = _boot_id()
    try:
        namespace = os.stat("/proc/self/ns/pid").st_ino
        ticks = _start_ticks(os.getpid())
    except OSError:
        return None
    if boot is None or ticks is None:
        return None
    return f"{boot}/{namespace}/{os.getpid()}/{ticks}"


def gone_on_this_host(peer: PeerProcess, hostname: str, own_identity: str | None) -> bool:
    """Whether a process recorded on this host is certainly not running any more. False whenever
    that cannot be known for sure (another host, boot or PID namespace, or /proc unreadable)."""
    if peer.hostname != hostname:
        return False
    if own_identity is not None and peer.process_identity is not None:
        boot, namespace = own_identity.split("/")[:2]
        peer_boot, peer_namespace, _, peer_ticks = peer.process_identity.split("/")
        if (boot, namespace) != (peer_boot, peer_namespace):
            return False  # another boot's or container's pids: nothing to compare with
        try:
            return _start_ticks(peer.pid) != peer_ticks
        except OSError:
            return False  # cannot read it (another user, hidepid): not known to be gone
    if peer.pid == os.getpid():
        return False  # perhaps this very process, under an earlier runtime: cannot tell
    try:
        os.kill(peer.pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False  # it exists (another user's): alive as far as we can tell
    return False

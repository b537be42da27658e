"""The chaos harness's ``failover`` fault: the primary of a replicated pair (``tests.replication``)
crashes mid-run and its standby is promoted, while the executors, the feeder, the operator and the
checks all hold the one multi-host URL.

Around every failover the fault measures what the new primary lacks of what the old one had
committed: just before the crash it reads, from the old primary directly, the workflows and their
statuses, the recorded step outcomes and the chaos ledgers; right after the promotion it reads the
same from the new primary. Anything missing was acknowledged to a client (a commit that returned)
and is gone. With synchronous replication nothing may be missing (a violation); with asynchronous
replication the figures are the point. After the run, ``rerun_figures`` counts what the losses led
to: steps whose recorded outcome was lost and that ran again, transactions committed again.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import psycopg

from tests.replication import Node, ReplicatedPostgres

_FINISHED = ("SUCCESS", "ERROR", "CANCELLED")


@dataclass
class Snapshot:
    """What one node holds of the run."""

    statuses: dict[str, str] = field(default_factory=dict)
    steps: set[tuple[str, int]] = field(default_factory=set)
    tx: set[tuple[str, int]] = field(default_factory=set)
    attempts: set[tuple[str, int, int]] = field(default_factory=set)

    @classmethod
    def read(cls, node: Node) -> Snapshot:
        snap = cls()
        with node.connect(5) as conn:
            snap.statuses = {
                str(w): str(s)
                for w, s in conn.execute(
                    "SELECT workflow_uuid, status FROM dbos.workflow_status"
                ).fetchall()
            }
            snap.steps = {
                (str(w), int(f))
                for w, f in conn.execute(
                    "SELECT workflow_uuid, function_id FROM dbos.operation_outputs"
                ).fetchall()
            }
            snap.tx = {
                (str(w), int(f))
                for w, f in conn.execute("SELECT workflow_id, function_id FROM chaos_tx").fetchall()
            }
            snap.attempts = {
                (str(w), int(f), int(t))
                for w, f, t in conn.execute(
                    "SELECT workflow_id, function_id, attempt_at_ms FROM chaos_attempts"
                ).fetchall()
            }
        return snap


@dataclass
class Losses:
    """What the new primary lacked, over every failover of a run."""

    workflows: list[str] = field(default_factory=list)  # acknowledged, then gone
    finished_reverted: list[str] = field(default_factory=list)  # finished, then not any more
    steps: set[tuple[str, int]] = field(default_factory=set)  # recorded outcomes gone
    tx: set[tuple[str, int]] = field(default_factory=set)  # committed transactions gone
    attempts: int = 0  # ledger rows of step attempts gone
    per_failover: list[dict[str, Any]] = field(default_factory=list)

    def total(self) -> int:
        return len(self.workflows) + len(self.finished_reverted) + len(self.steps) + len(self.tx)


def inject(
    cluster: ReplicatedPostgres, losses: Losses, executors: list[str], lag_s: float = 0.0
) -> dict[str, Any]:
    """One failover, with its timing, its losses, and how long after the promotion the
    ``executors`` (executor IDs, running and not paused) heartbeated on the new primary; returns
    its figures."""
    before: list[Snapshot] = []

    def snapshot_old_primary() -> None:
        try:
            before.append(Snapshot.read(cluster.primary))
        except psycopg.Error:
            pass  # the primary may be restarting (another fault): no figures for this one

    back: list[float] = []
    watcher: list[threading.Thread] = []

    def watch_executors() -> None:
        # From the promotion on, while the new standby is being built.
        since_ms = int(time.time() * 1000)
        thread = threading.Thread(
            target=lambda: back.append(executors_back(cluster.url, since_ms, executors)),
            daemon=True,
        )
        thread.start()
        watcher.append(thread)

    timing = cluster.failover(
        lag_s=lag_s, before_kill=snapshot_old_primary, after_promote=watch_executors
    )
    for thread in watcher:
        thread.join(40)
    figures: dict[str, Any] = {"at": round(timing.killed_at, 3), **timing.summary()}
    promoted_ms = int((timing.killed_at + timing.promoted_s) * 1000)
    figures["executors_back_s"] = back[0] if back else -1.0
    figures["promoted_ms"] = promoted_ms  # for first_checkpoint, after the run
    if before:
        after = Snapshot.read(cluster.primary)
        old = before[0]
        gone = [w for w in old.statuses if w not in after.statuses]
        reverted = [
            w
            for w, s in old.statuses.items()
            if s in _FINISHED and w in after.statuses and after.statuses[w] != s
        ]
        steps = old.steps - after.steps
        tx = old.tx - after.tx
        attempts = len(old.attempts - after.attempts)
        losses.workflows += gone
        losses.finished_reverted += reverted
        losses.steps |= steps
        losses.tx |= tx
        losses.attempts += attempts
        figures.update(
            workflows_lost=len(gone),
            finished_reverted=len(reverted),
            step_outcomes_lost=len(steps),
            transactions_lost=len(tx),
            attempt_rows_lost=attempts,
        )
    losses.per_failover.append(figures)
    return figures


def rerun_figures(url: str, losses: Losses) -> dict[str, int]:
    """After the run: of the lost step outcomes, how many steps ran again; of the lost transaction
    commits, how many committed again (their body ran twice, and a side effect outside the
    database would have happened twice)."""
    with psycopg.connect(url, connect_timeout=10) as conn:
        for figures in losses.per_failover:
            # Measured afterwards: the first step due after a promotion may come a while later.
            figures["first_checkpoint_s"] = first_checkpoint(url, figures["promoted_ms"])
        attempts = {
            (str(w), int(f))
            for w, f in conn.execute("SELECT workflow_id, function_id FROM chaos_attempts")
        }
        tx = {
            (str(w), int(f))
            for w, f in conn.execute("SELECT workflow_id, function_id FROM chaos_tx")
        }
    return {
        "steps_run_again": len(losses.steps & attempts),
        "transactions_committed_again": len(losses.tx & tx),
    }


def executors_back(url: str, since_ms: int, executors: list[str], timeout: float = 30) -> float:
    """Seconds from ``since_ms`` (epoch ms) until the last of ``executors`` heartbeats on the
    primary of ``url`` (-1 if one has not within ``timeout``): the first heartbeat each writes
    after ``since_ms``, seen by polling faster than they heartbeat. An upper bound of the time
    each took to reconnect, by at most one heartbeat interval (a quarter of the lease)."""
    first: dict[str, int] = {}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and len(first) < len(set(executors)):
        try:
            with psycopg.connect(url, connect_timeout=2) as conn:
                rows = conn.execute(
                    "SELECT executor_id, min(last_heartbeat_at) FROM dbos.executors "
                    "WHERE executor_id = ANY(%s) AND last_heartbeat_at > %s GROUP BY 1",
                    (executors, since_ms),
                ).fetchall()
            for executor, at in rows:
                first.setdefault(str(executor), int(at))
        except psycopg.Error:
            pass
        time.sleep(0.05)
    if len(first) < len(set(executors)):
        return -1.0
    return round(max(0, max(first.values()) - since_ms) / 1000, 3)


def first_checkpoint(url: str, since_ms: int) -> float | None:
    """Seconds from ``since_ms`` (epoch ms) to the first step outcome recorded after it."""
    with psycopg.connect(url, connect_timeout=10) as conn:
        row = conn.execute(
            "SELECT min(completed_at_epoch_ms) FROM dbos.operation_outputs "
            "WHERE completed_at_epoch_ms > %s",
            (since_ms,),
        ).fetchone()
    return round((int(row[0]) - since_ms) / 1000, 3) if row and row[0] is not None else None


def wait_carried_on(url: str, since_ms: int, timeout: float = 60) -> float | None:
    """Seconds until a step outcome is recorded after ``since_ms`` (epoch ms) on the primary of
    ``url``: how long the executors took to carry on; None if none was in ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with psycopg.connect(url, connect_timeout=5) as conn:
                row = conn.execute(
                    "SELECT min(completed_at_epoch_ms) FROM dbos.operation_outputs "
                    "WHERE completed_at_epoch_ms > %s",
                    (since_ms,),
                ).fetchone()
            if row is not None and row[0] is not None:
                return (int(row[0]) - since_ms) / 1000
        except psycopg.Error:
            pass
        time.sleep(0.1)
    return None

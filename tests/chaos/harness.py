"""The chaos harness: a mixed workload on several executor processes while faults are injected at
seeded random times, then invariants checked against independent ledgers.

    python -m tests.chaos.harness --minutes 30 --seed 7      # the long run (`make chaos`)

Faults: SIGKILL of an executor (restarted after a moment, or left for the others to take over),
SIGSTOP/SIGCONT (sometimes past the lease), Postgres restarted in fast and immediate mode,
connections killed with pg_terminate_backend, the listener connections dropped, and rolling
restarts (a new executor with the same executor ID started before the old one gets SIGTERM).
With ``--replication sync|async`` the database is a primary and a streaming standby
(``tests.replication``) behind one multi-host URL that everything uses, and a ``failover`` (the
primary crashes, the standby is promoted, a new standby is built) comes every ``--failover-every``
seconds on top of the other faults (``failover``).
Every statement runs under a hostile planner (``HOSTILE_PLANNER``). With ``--operator`` (the
default), half the faults are an operator's actions through the real
`dbos` CLI and ``DBOSClient`` (``operators``): cancel, resume, cancel-then-resume, restart and
fork of running, queued, waiting and finished workflows. Some workflows run under a timeout that
expires mid-run.

When the faults stop, the harness checks that what the operator cancelled stayed CANCELLED, then
resumes it all (as an operator ending the day), lets the work drain, and checks every invariant
against the ledgers (``invariants``).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from runtime import DBOSClient
from runtime.embedded import EmbeddedPostgres
from runtime.migrate import migrate
from tests.chaos import failover, invariants
from tests.chaos.chaos_app import LEDGER_DDL
from tests.chaos.operators import ACTIONS, Operator
from tests.replication import ReplicatedPostgres

ROOT = Path(__file__).resolve().parents[2]
DBOS_EXE = str(Path(sys.executable).with_name("dbos"))
LEASE_S = 2
FAULTS = [
    "kill",
    "pause",
    "pg_restart_fast",
    "pg_restart_immediate",
    "terminate",
    "listener",
    "rolling_restart",
]
# Every statement of the executors runs under the worst plans Postgres may legally pick: with these
# off, it rescans sub-selects in nested loops rather than hashing or materializing them once, the
# shape under which a claim written as `IN (SELECT ... LIMIT n FOR UPDATE SKIP LOCKED)` takes more
# than n rows. A claim must be correct whatever the plan.
HOSTILE_PLANNER = [
    "enable_hashagg",
    "enable_hashjoin",
    "enable_mergejoin",
    "enable_material",
    "enable_sort",
]
# Feeding stops while this many workflows wait in queues, so that a stalled queue (its slots
# held by parents waiting on cancelled children, say) does not leave hours of work to drain.
MAX_BACKLOG = 150
_CLIENTS = (
    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
    "WHERE datname = current_database() AND pid <> pg_backend_pid() "
    "AND backend_type = 'client backend' "
)
DROP_LISTENERS = _CLIENTS + "AND query LIKE 'LISTEN%'"
DROP_SOME_CONNECTIONS = _CLIENTS + "AND random() < 0.4"


@dataclass
class Report:
    """What a run did and what it found."""

    seed: int
    seconds: float = 0.0
    faults: Counter[str] = field(default_factory=Counter)
    workflows: int = 0
    steps_recorded: int = 0
    step_attempts: int = 0
    stale_attempts_refused: int = 0
    transactions: int = 0
    messages: int = 0
    launch_retries: int = 0
    feed_failures: int = 0
    final_statuses: dict[str, int] = field(default_factory=dict)
    deadline_bound: int = 0
    deadline_cancelled: int = 0
    orders_max_running: int = 0
    orders_moved_off_queue: int = 0
    rate_dispatches: int = 0
    rate_max_starts: int = 0
    resumed_at_end: int = 0
    operator: dict[str, Any] = field(default_factory=dict)
    replication: str | None = None
    failovers: list[dict[str, Any]] = field(default_factory=list)
    reruns: dict[str, int] = field(default_factory=dict)
    violations: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """The figures, as JSON-friendly data."""
        return {
            "seed": self.seed,
            "seconds": round(self.seconds, 1),
            "faults": dict(self.faults),
            "faults_total": sum(self.faults.values()),
            "operator_actions": sum(n for k, n in self.faults.items() if k.startswith("op_")),
            "workflows": self.workflows,
            "steps_recorded": self.steps_recorded,
            "step_attempts": self.step_attempts,
            "stale_attempts_refused": self.stale_attempts_refused,
            "transactions": self.transactions,
            "messages": self.messages,
            "launch_retries": self.launch_retries,
            "feed_failures": self.feed_failures,
            "final_statuses": self.final_statuses,
            "deadline_bound": self.deadline_bound,
            "deadline_cancelled": self.deadline_cancelled,
            "orders_max_running": self.orders_max_running,
            "orders_moved_off_queue": self.orders_moved_off_queue,
            "rate_dispatches": self.rate_dispatches,
            "rate_max_starts": self.rate_max_starts,
            "resumed_at_end": self.resumed_at_end,
            "operator": self.operator,
            "replication": self.replication,
            "failovers": self.failovers,
            "reruns_after_lost_commits": self.reruns,
            "violations": self.violations,
        }


class Executor:
    """One `dbos start` process of the chaos app (by executor ID), restartable; during a rolling
    restart its successor runs next to it until it has stopped."""

    def __init__(self, name: str, url: str, logs: Path, env: dict[str, str]) -> None:
        self.name = name
        self.url = url
        self.logs = logs
        self.env = env
        self.generation = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.paused = False
        self.expected_exit = False
        self.retiring: list[threading.Thread] = []
        self.retire_failures: list[str] = []

    @property
    def log_path(self) -> Path:
        return self.logs / f"{self.name}-{self.generation}.log"

    def _spawn(self) -> subprocess.Popen[bytes]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("DBOS")}
        env.update(self.env)
        env.update(
            DBOS_DATABASE_URL=self.url,
            DBOS__VMID=self.name,
            DBOS_EXECUTOR_LEASE_SECONDS=str(LEASE_S),
            PYTHONPATH=str(ROOT),
            PYTHONUNBUFFERED="1",
        )
        self.generation += 1
        log = open(self.log_path, "ab")
        log.write(f"=== start {time.time():.3f}\n".encode())
        log.flush()
        return subprocess.Popen(
            [DBOS_EXE, "start", "tests/chaos/chaos_app.py"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )

    def start(self) -> None:
        self.proc = self._spawn()
        self.paused = False
        self.expected_exit = False

    def serving(self, timeout: float) -> bool:
        """Wait until the current process has launched (its log says so)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.alive():
            if "serving" in self.log():
                return True
            time.sleep(0.1)
        return False

    def rolling_restart(self) -> None:
        """Start a successor with the same executor ID; once it serves, SIGTERM the old process
        (in the background: it ends its running steps first) and check that it exits cleanly."""
        old = self.proc
        if old is None or old.poll() is not None:
            return
        self.proc = self._spawn()
        self.paused = False
        self.expected_exit = False
        if not self.serving(60):
            return  # Postgres may be down: the old one goes anyway, as in a real deploy

        def retire() -> None:
            old.send_signal(signal.SIGCONT)
            old.send_signal(signal.SIGTERM)
            try:
                code = old.wait(60)
            except subprocess.TimeoutExpired:
                old.kill()
                code = old.wait()
            if code != 0:
                self.retire_failures.append(f"executor {self.name} (retired) exited with {code}")

        thread = threading.Thread(target=retire, daemon=True)
        thread.start()
        self.retiring.append(thread)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)

    def kill(self) -> None:
        self.expected_exit = True
        self.signal(signal.SIGCONT)
        self.signal(signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait()

    def stop(self) -> int | None:
        """SIGTERM and wait: a healthy executor exits 0."""
        for thread in self.retiring:
            thread.join(70)
        if self.proc is None:
            return None
        self.expected_exit = True
        self.signal(signal.SIGCONT)
        self.signal(signal.SIGTERM)
        try:
            return self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def log(self) -> str:
        """The current process's log."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def all_logs(self) -> str:
        return "".join(
            (self.logs / f"{self.name}-{g}.log").read_text(errors="replace")
            for g in range(1, self.generation + 1)
            if (self.logs / f"{self.name}-{g}.log").exists()
        )


class Chaos:
    """One run: server, executors, feeder, faults, operator."""

    def __init__(
        self,
        seed: int,
        workdir: Path,
        executors: int,
        env: dict[str, str],
        operator: bool = True,
        kinds: list[str] | None = None,
        replication: str | None = None,
    ) -> None:
        self.rng = random.Random(seed)
        self.report = Report(seed, replication=replication)
        self.workdir = workdir
        self.cluster: ReplicatedPostgres | None = None
        self.losses = failover.Losses()
        if replication is None:
            self.single = EmbeddedPostgres(workdir / "pg", settings={"max_connections": "300"})
            self.url = self.single.start()
        else:
            self.cluster = ReplicatedPostgres(workdir / "pg", mode=replication)
            self.url = self.cluster.start()
        migrate(self.url)
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(LEDGER_DDL)
            for setting in HOSTILE_PLANNER:
                conn.execute(f"ALTER DATABASE postgres SET {setting} = off")
        logs = workdir / "logs"
        logs.mkdir(exist_ok=True)
        self.executors = [Executor(f"c{i}", self.url, logs, env) for i in range(executors)]
        self.operator = Operator(self.url, random.Random(seed + 1))
        self.kinds = kinds or FAULTS + (ACTIONS if operator else [])
        self.receivers: dict[str, int] = {}
        self.event_readers: list[str] = []

    # -- workload ---------------------------------------------------------------------------------

    def backlog(self) -> int:
        with psycopg.connect(self.url, autocommit=True, connect_timeout=5) as conn:
            row = conn.execute(
                "SELECT count(*) FROM dbos.workflow_status WHERE status = 'ENQUEUED'"
            ).fetchone()
        return int(row[0]) if row else 0

    def feed(self, client: DBOSClient, batch: int) -> None:
        """Enqueue a few orders and families (some under a timeout that may expire mid-run), a
        rate-limited workflow, often a napper (its long sleep parks), now and then one that fails
        by design, a messaging pair and event readers."""
        for _ in range(batch):
            i = self.rng.randrange(1_000_000)
            handle = client.enqueue({"workflow_name": "order", "queue_name": "chaos_orders"}, i)
            if self.rng.random() < 0.3:
                reader = client.enqueue(
                    {"workflow_name": "event_reader", "queue_name": "chaos_free"},
                    handle.workflow_id,
                )
                self.event_readers.append(reader.workflow_id)
        timeout = round(self.rng.uniform(0.3, 1.5), 2) if self.rng.random() < 0.3 else None
        client.enqueue(
            {"workflow_name": "launch_family", "queue_name": "chaos_free"},
            self.rng.randrange(1_000_000),
            timeout,
        )
        client.enqueue({"workflow_name": "rated", "queue_name": "chaos_rate"}, 0)
        if self.rng.random() < 0.5:
            seconds = round(self.rng.uniform(1.5, 5.0), 2)
            client.enqueue({"workflow_name": "napper", "queue_name": "chaos_free"}, seconds)
        if self.rng.random() < 0.1:
            client.enqueue({"workflow_name": "failing", "queue_name": "chaos_free"}, 0)
        count = self.rng.randint(2, 6)
        receiver = client.enqueue({"workflow_name": "receiver", "queue_name": "chaos_free"}, count)
        client.enqueue(
            {"workflow_name": "sender", "queue_name": "chaos_free"}, receiver.workflow_id, count
        )
        self.receivers[receiver.workflow_id] = count

    # -- faults -----------------------------------------------------------------------------------

    @property
    def server(self) -> EmbeddedPostgres:
        """The server the database-restart faults restart: the primary, with replication."""
        return self.cluster.primary.server if self.cluster is not None else self.single

    def fail_over(self, lag_s: float = 0.0) -> None:
        """The ``failover`` fault (replication only); see ``failover``."""
        assert self.cluster is not None
        running = [e.name for e in self.executors if e.alive() and not e.paused]
        figures = failover.inject(self.cluster, self.losses, running, lag_s)
        self.report.faults["failover"] += 1
        self.report.failovers.append(figures)
        if self.cluster.mode == "sync" and self.losses.total():
            self.report.violations.append(
                f"failover lost acknowledged commits under synchronous replication: {figures}"
            )

    def inject(self) -> None:
        kind = self.rng.choice(self.kinds)
        victim = self.rng.choice(self.executors)
        if kind.startswith("op_"):
            if not self.operator.act(kind):
                return
        elif kind == "kill" and victim.alive():
            victim.kill()
            if self.rng.random() < 0.5:
                time.sleep(self.rng.uniform(0.0, 1.0))
                victim.start()  # the restart-after-crash path (same executor ID)
            # else: left dead for a while; the others take over after the lease
        elif kind == "pause" and victim.alive() and not victim.paused:
            victim.signal(signal.SIGSTOP)
            time.sleep(self.rng.uniform(0.5, 2.0 * LEASE_S + 1))  # sometimes past the lease
            victim.signal(signal.SIGCONT)
        elif kind == "rolling_restart" and victim.alive():
            victim.rolling_restart()
        elif kind in ("pg_restart_fast", "pg_restart_immediate"):
            self.server.stop("fast" if kind.endswith("fast") else "immediate")
            time.sleep(self.rng.uniform(0.2, 2.0))
            self.server.start()
        elif kind in ("terminate", "listener"):
            with psycopg.connect(self.url, autocommit=True) as conn:
                conn.execute(DROP_LISTENERS if kind == "listener" else DROP_SOME_CONNECTIONS)
        else:
            return
        self.report.faults[kind] += 1

    def revive(self) -> None:
        """Executors that died (killed and left, or a launch while Postgres was down) restart."""
        for executor in self.executors:
            if executor.proc is not None and not executor.alive():
                if not executor.expected_exit:
                    if "serving" in executor.log():
                        self.report.violations.append(
                            f"executor {executor.name} exited by itself after launching "
                            f"(code {executor.proc.returncode})"
                        )
                    else:
                        self.report.launch_retries += 1
                executor.start()

    # -- run --------------------------------------------------------------------------------------

    def run(
        self,
        seconds: float,
        fault_every: tuple[float, float],
        drain_timeout: float = 240,
        max_faults: int | None = None,
        covered: Callable[[Report], bool] | None = None,
        failover_every: tuple[float, float] = (30.0, 60.0),
        failover_lag: float = 0.0,
    ) -> Report:
        """Faults for ``seconds``; with ``covered``, on past them until it holds of the report
        (a loaded machine injects fewer faults in the same time), for at most 3 times as long.
        With replication, a failover every ``failover_every`` seconds, the standby first left
        ``failover_lag`` seconds behind."""
        started = time.monotonic()
        for executor in self.executors:
            executor.start()
        time.sleep(2)
        next_fault = time.monotonic() + self.rng.uniform(*fault_every)
        next_failover = time.monotonic() + self.rng.uniform(*failover_every)

        def going_on() -> bool:
            elapsed = time.monotonic() - started
            if max_faults is not None and sum(self.report.faults.values()) >= max_faults:
                return False
            if elapsed < seconds:
                return True
            return covered is not None and elapsed < 3 * seconds and not covered(self.report)

        while going_on():
            try:
                if self.backlog() < MAX_BACKLOG:
                    with DBOSClient(self.url) as client:
                        self.feed(client, batch=self.rng.randint(1, 4))
            except Exception:  # the database may be restarting: feed again on the next turn
                self.report.feed_failures += 1
            if time.monotonic() >= next_fault:
                self.inject()
                next_fault = time.monotonic() + self.rng.uniform(*fault_every)
            if self.cluster is not None and time.monotonic() >= next_failover:
                self.fail_over(failover_lag)
                next_failover = time.monotonic() + self.rng.uniform(*failover_every)
            self.revive()
            time.sleep(self.rng.uniform(0.2, 0.8))
        self.settle_executors()
        invariants.check_cancelled_stayed(self)
        self.resume_cancelled()
        self.drain(drain_timeout)
        self.report.seconds = time.monotonic() - started
        self.report.operator = self.operator.log.summary()
        invariants.check(self)
        if self.cluster is not None:
            self.report.reruns = failover.rerun_figures(self.url, self.losses)
        return self.report

    def settle_executors(self) -> None:
        """No more faults: every executor up and running, retired ones gone."""
        for executor in self.executors:
            executor.signal(signal.SIGCONT)
            for thread in executor.retiring:
                thread.join(70)
            self.report.violations.extend(executor.retire_failures)
        self.revive()

    def resume_cancelled(self) -> None:
        """The operator ends the day: everything cancelled is resumed through the CLI, except
        what a deadline cancelled."""
        with psycopg.connect(self.url, autocommit=True) as conn:
            bound = {w for (w,) in conn.execute(invariants.DEADLINE_BOUND).fetchall()}
            cancelled = conn.execute(
                "SELECT workflow_uuid FROM dbos.workflow_status WHERE status = 'CANCELLED'"
            ).fetchall()
        ids = [w for (w,) in cancelled if w not in bound]
        for first in range(0, len(ids), 200):
            chunk = ids[first : first + 200]
            done = subprocess.run(
                [DBOS_EXE, "workflow", "resume", *chunk, "--db-url", self.url, "--json"],
                capture_output=True,
                text=True,
                timeout=120,
            )
            if done.returncode != 0:
                self.report.violations.append(f"final resume failed: {done.stderr.strip()}")
        self.report.resumed_at_end = len(ids)

    def drain(self, timeout: float = 240) -> None:
        """Let every workflow finish with all executors up and no more faults."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.revive()
            with psycopg.connect(self.url) as conn:
                row = conn.execute(
                    "SELECT count(*) FROM dbos.workflow_status "
                    "WHERE status IN ('PENDING', 'ENQUEUED')"
                ).fetchone()
            if row is not None and row[0] == 0:
                return
            time.sleep(0.5)

    def close(self) -> None:
        for executor in self.executors:
            code = executor.stop()
            if code not in (0, None, -signal.SIGKILL):
                self.report.violations.append(f"executor {executor.name} exited with {code}")
            log = executor.all_logs()
            for marker in ("Exception in thread", "Fatal Python error"):
                if marker in log:
                    self.report.violations.append(f"executor {executor.name} log: {marker}")
        if self.cluster is not None:
            self.cluster.stop()
        else:
            self.single.stop("fast")


def run(
    seconds: float,
    seed: int,
    *,
    executors: int = 3,
    fault_every: tuple[float, float] = (2.0, 6.0),
    env: dict[str, str] | None = None,
    keep: bool = False,
    drain_timeout: float = 240,
    max_faults: int | None = None,
    operator: bool = True,
    kinds: list[str] | None = None,
    covered: Callable[[Report], bool] | None = None,
    replication: str | None = None,
    failover_every: tuple[float, float] = (30.0, 60.0),
    failover_lag: float = 0.0,
) -> Report:
    """One chaos run in a temporary folder; returns the report. ``kinds`` narrows the faults to
    those named (of ``FAULTS`` and ``operators.ACTIONS``). ``replication`` ("sync" or "async")
    runs on a primary and a standby, failing over every ``failover_every`` seconds."""
    workdir = Path(tempfile.mkdtemp(prefix=f"dbos-chaos-{seed}-"))
    chaos = Chaos(seed, workdir, executors, env or {}, operator, kinds, replication)
    try:
        report = chaos.run(
            seconds,
            fault_every,
            drain_timeout,
            max_faults,
            covered,
            failover_every=failover_every,
            failover_lag=failover_lag,
        )
    finally:
        chaos.close()
        if not keep and not chaos.report.violations:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"logs kept in {workdir}", file=sys.stderr)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=30, help="length of each run")
    parser.add_argument("--runs", type=int, default=1, help="how many runs, seeds seed..seed+n-1")
    parser.add_argument("--seed", type=int, default=1, help="first seed (runs are reproducible)")
    parser.add_argument("--executors", type=int, default=3, help="executor processes")
    parser.add_argument(
        "--faults", type=int, help="stop injecting after this many faults (or --minutes)"
    )
    parser.add_argument(
        "--fault-every",
        type=float,
        nargs=2,
        default=(2.0, 6.0),
        metavar=("MIN", "MAX"),
        help="seconds between faults, drawn uniformly",
    )
    parser.add_argument(
        "--no-operator",
        dest="operator",
        action="store_false",
        help="inject only process and database faults, no operator actions",
    )
    parser.add_argument(
        "--replication",
        choices=["sync", "async"],
        help="a primary and a streaming standby behind one multi-host URL, with failovers",
    )
    parser.add_argument(
        "--failover-every",
        type=float,
        nargs=2,
        default=(30.0, 60.0),
        metavar=("MIN", "MAX"),
        help="with --replication: seconds between failovers, drawn uniformly",
    )
    parser.add_argument(
        "--failover-lag",
        type=float,
        default=0.0,
        help="with --replication: seconds the standby is held behind before each crash",
    )
    parser.add_argument("--json", dest="json_out", help="also write the reports to this file")
    args = parser.parse_args()
    reports = []
    for n in range(args.runs):
        report = run(
            args.minutes * 60,
            args.seed + n,
            executors=args.executors,
            fault_every=tuple(args.fault_every),  # type: ignore[arg-type]
            max_faults=args.faults,
            operator=args.operator,
            replication=args.replication,
            failover_every=tuple(args.failover_every),  # type: ignore[arg-type]
            failover_lag=args.failover_lag,
        )
        reports.append(report.summary())
        print(json.dumps(report.summary(), indent=2), flush=True)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(reports, indent=2))
    # Under asynchronous replication lost commits are what the run measures, not a failure.
    if args.replication != "async" and any(r["violations"] for r in reports):
        sys.exit(1)


if __name__ == "__main__":
    main()

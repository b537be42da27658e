"""The chaos harness: a mixed workload on several executor processes while faults are injected at
seeded random times, then invariants checked against independent ledgers.

    python -m tests.chaos.harness --minutes 30 --seed 7      # the long run (`make chaos`)

Faults: SIGKILL of an executor (restarted after a moment, or left for the others to take over),
SIGSTOP/SIGCONT (sometimes past the lease), Postgres restarted in fast and immediate mode,
connections killed with pg_terminate_backend, and the listener connections dropped.

Invariants checked at the end (see ``check``): every workflow reaches SUCCESS; no step ran again
after its outcome was recorded; every recorded transaction's write exists exactly once (and no
unrecorded one exists); every message was received exactly once and in order; events were seen;
no step outcome is recorded twice; and every executor is alive and healthy, with no thread that
died silently.
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
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from runtime import DBOSClient
from runtime.embedded import EmbeddedPostgres
from runtime.migrate import migrate
from tests.chaos.chaos_app import LEDGER_DDL

ROOT = Path(__file__).resolve().parents[2]
DBOS_EXE = str(Path(sys.executable).with_name("dbos"))
LEASE_S = 2
FAULTS = ["kill", "pause", "pg_restart_fast", "pg_restart_immediate", "terminate", "listener"]
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
    violations: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """The figures, as JSON-friendly data."""
        return {
            "seed": self.seed,
            "seconds": round(self.seconds, 1),
            "faults": dict(self.faults),
            "faults_total": sum(self.faults.values()),
            "workflows": self.workflows,
            "steps_recorded": self.steps_recorded,
            "step_attempts": self.step_attempts,
            "stale_attempts_refused": self.stale_attempts_refused,
            "transactions": self.transactions,
            "messages": self.messages,
            "launch_retries": self.launch_retries,
            "feed_failures": self.feed_failures,
            "violations": self.violations,
        }


class Executor:
    """One `dbos start` process of the chaos app, restartable."""

    def __init__(self, name: str, url: str, logs: Path, env: dict[str, str]) -> None:
        self.name = name
        self.url = url
        self.log_path = logs / f"{name}.log"
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None
        self.paused = False
        self.expected_exit = False

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("DBOS")}
        env.update(self.env)
        env.update(
            DBOS_DATABASE_URL=self.url,
            DBOS__VMID=self.name,
            DBOS_EXECUTOR_LEASE_SECONDS=str(LEASE_S),
            PYTHONPATH=str(ROOT),
            PYTHONUNBUFFERED="1",
        )
        log = open(self.log_path, "ab")
        log.write(f"\n=== start {time.time():.3f}\n".encode())
        log.flush()
        self.proc = subprocess.Popen(
            [DBOS_EXE, "start", "tests/chaos/chaos_app.py"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        self.paused = False
        self.expected_exit = False

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
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


class Chaos:
    """One run: server, executors, feeder, faults."""

    def __init__(self, seed: int, workdir: Path, executors: int, env: dict[str, str]) -> None:
        self.rng = random.Random(seed)
        self.report = Report(seed)
        self.workdir = workdir
        self.server = EmbeddedPostgres(workdir / "pg", settings={"max_connections": "300"})
        self.url = self.server.start()
        migrate(self.url)
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(LEDGER_DDL)
        logs = workdir / "logs"
        logs.mkdir(exist_ok=True)
        self.executors = [Executor(f"c{i}", self.url, logs, env) for i in range(executors)]
        self.receivers: dict[str, int] = {}
        self.event_readers: list[str] = []
        self.server_down_until = 0.0

    # -- workload ---------------------------------------------------------------------------------

    def feed(self, client: DBOSClient, batch: int) -> None:
        """Enqueue a few orders, a messaging pair, and an event reader."""
        for _ in range(batch):
            i = self.rng.randrange(1_000_000)
            handle = client.enqueue({"workflow_name": "order", "queue_name": "chaos_orders"}, i)
            if self.rng.random() < 0.3:
                reader = client.enqueue(
                    {"workflow_name": "event_reader", "queue_name": "chaos_free"},
                    handle.workflow_id,
                )
                self.event_readers.append(reader.workflow_id)
        count = self.rng.randint(2, 6)
        receiver = client.enqueue({"workflow_name": "receiver", "queue_name": "chaos_free"}, count)
        client.enqueue(
            {"workflow_name": "sender", "queue_name": "chaos_free"}, receiver.workflow_id, count
        )
        self.receivers[receiver.workflow_id] = count

    # -- faults -----------------------------------------------------------------------------------

    def inject(self) -> None:
        kind = self.rng.choice(FAULTS)
        victim = self.rng.choice(self.executors)
        if kind == "kill" and victim.alive():
            victim.kill()
            if self.rng.random() < 0.5:
                time.sleep(self.rng.uniform(0.0, 1.0))
                victim.start()  # the restart-after-crash path (same executor ID)
            # else: left dead for a while; the others take over after the lease
        elif kind == "pause" and victim.alive() and not victim.paused:
            victim.signal(signal.SIGSTOP)
            time.sleep(self.rng.uniform(0.5, 2.0 * LEASE_S + 1))  # sometimes past the lease
            victim.signal(signal.SIGCONT)
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
                    log = executor.log()
                    last_start = log.rsplit("=== start", 1)[-1]
                    if "serving" in last_start:
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
    ) -> Report:
        started = time.monotonic()
        for executor in self.executors:
            executor.start()
        time.sleep(2)
        next_fault = time.monotonic() + self.rng.uniform(*fault_every)
        while time.monotonic() - started < seconds and (
            max_faults is None or sum(self.report.faults.values()) < max_faults
        ):
            try:
                with DBOSClient(self.url) as client:
                    self.feed(client, batch=self.rng.randint(1, 4))
            except Exception:  # the database may be restarting: feed again on the next turn
                self.report.feed_failures += 1
            if time.monotonic() >= next_fault:
                self.inject()
                next_fault = time.monotonic() + self.rng.uniform(*fault_every)
            self.revive()
            time.sleep(self.rng.uniform(0.2, 0.8))
        self.drain(drain_timeout)
        self.report.seconds = time.monotonic() - started
        check(self)
        return self.report

    def drain(self, timeout: float = 240) -> None:
        """Let every workflow finish with all executors up and no more faults."""
        for executor in self.executors:
            executor.signal(signal.SIGCONT)
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
            log = executor.log()
            for marker in ("Exception in thread", "Fatal Python error"):
                if marker in log:
                    self.report.violations.append(f"executor {executor.name} log: {marker}")
        self.server.stop("fast")


def check(chaos: Chaos) -> None:
    """Every invariant, against the ledgers; violations are appended to the report."""
    r = chaos.report
    v = r.violations
    with psycopg.connect(chaos.url) as conn:

        def q(sql: str) -> list[tuple[Any, ...]]:
            return conn.execute(sql).fetchall()  # type: ignore[arg-type]

        statuses = dict(q("SELECT status, count(*) FROM dbos.workflow_status GROUP BY status"))
        r.workflows = sum(int(n) for n in statuses.values())
        unfinished = {s: n for s, n in statuses.items() if s != "SUCCESS"}
        if unfinished:
            v.append(f"workflows not SUCCESS: {unfinished}")
        for wid, name, error in q(
            "SELECT workflow_uuid, name, error FROM dbos.workflow_status "
            "WHERE status = 'ERROR' LIMIT 3"
        ):
            v.append(f"  e.g. {name} {wid}: {str(error)[:200]}")

        r.steps_recorded = int(q("SELECT count(*) FROM dbos.operation_outputs")[0][0])
        r.step_attempts = int(q("SELECT count(*) FROM chaos_attempts")[0][0])
        r.stale_attempts_refused = int(q("SELECT count(*) FROM chaos_fenced")[0][0])
        late = q(
            """
            SELECT a.workflow_id, a.function_id, count(*)
            FROM chaos_attempts a
            JOIN dbos.operation_outputs o
              ON o.workflow_uuid = a.workflow_id AND o.function_id = a.function_id
            WHERE a.attempt_at_ms > o.completed_at_epoch_ms
            GROUP BY 1, 2
            """
        )
        if late:
            v.append(
                f"{len(late)} step attempts started after the step's outcome was recorded, "
                f"e.g. {late[:3]}"
            )
        phantom = q(
            """
            SELECT o.workflow_uuid, o.function_id FROM dbos.operation_outputs o
            WHERE o.function_name LIKE '%%step_op'
              AND NOT EXISTS (SELECT 1 FROM chaos_attempts a
                              WHERE a.workflow_id = o.workflow_uuid
                                AND a.function_id = o.function_id)
            """
        )
        if phantom:
            v.append(f"{len(phantom)} steps recorded without ever running, e.g. {phantom[:3]}")

        tx_recorded = {
            (w, f)
            for w, f in q(
                "SELECT workflow_uuid, function_id FROM dbos.operation_outputs "
                "WHERE function_name LIKE '%%tx_op'"
            )
        }
        tx_rows = Counter((w, f) for w, f in q("SELECT workflow_id, function_id FROM chaos_tx"))
        r.transactions = len(tx_recorded)
        dupes = [k for k, n in tx_rows.items() if n > 1]
        orphans = [k for k in tx_rows if k not in tx_recorded]
        missing = [k for k in tx_recorded if k not in tx_rows]
        if dupes:
            v.append(f"{len(dupes)} transactions committed more than once, e.g. {dupes[:3]}")
        if orphans:
            v.append(f"{len(orphans)} transaction writes without a recorded outcome: {orphans[:3]}")
        if missing:
            v.append(
                f"{len(missing)} recorded transactions whose writes are missing: {missing[:3]}"
            )

        twice = q(
            "SELECT workflow_uuid, function_id FROM dbos.operation_outputs "
            "GROUP BY 1, 2 HAVING count(*) > 1"
        )
        if twice:
            v.append(f"step outcomes recorded twice: {twice[:3]}")

        results = dict(
            q(
                "SELECT workflow_uuid, output FROM dbos.workflow_status "
                "WHERE name LIKE '%%receiver' OR name LIKE '%%event_reader'"
            )
        )
        for wid, count in chaos.receivers.items():
            got = json.loads(results[wid]) if results.get(wid) else None
            expected = [f"{wid}:{k}" for k in range(count)]
            r.messages += count
            if got != expected:
                v.append(f"receiver {wid} got {got}, expected {expected}")
        left = q("SELECT count(*) FROM dbos.notifications")[0][0]
        if left:
            v.append(f"{left} messages never received")
        for wid in chaos.event_readers:
            if results.get(wid) and json.loads(results[wid]) != "half":
                v.append(f"event reader {wid} saw {results[wid]}")

        alive = q(
            "SELECT executor_id FROM dbos.executors WHERE stopped_at IS NULL "
            "AND last_heartbeat_at > (extract(epoch FROM clock_timestamp()) * 1000) - lease_ms"
        )
        live_ids = {a for (a,) in alive}
        for executor in chaos.executors:
            if not executor.alive() or executor.name not in live_ids:
                v.append(f"executor {executor.name} is not alive and heartbeating at the end")


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
) -> Report:
    """One chaos run in a temporary folder; returns the report."""
    workdir = Path(tempfile.mkdtemp(prefix=f"dbos-chaos-{seed}-"))
    chaos = Chaos(seed, workdir, executors, env or {})
    try:
        report = chaos.run(seconds, fault_every, drain_timeout, max_faults)
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
        )
        reports.append(report.summary())
        print(json.dumps(report.summary(), indent=2), flush=True)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(reports, indent=2))
    if any(r["violations"] for r in reports):
        sys.exit(1)


if __name__ == "__main__":
    main()

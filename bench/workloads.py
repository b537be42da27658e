"""Benchmark workloads, written once for both systems: this project's runtime (``--system ours``)
and DBOS Transact (``--system peer``, run from its own virtual environment). Prints one JSON
document of measurements. Run by bench/compare.py; not imported by anything else."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
from typing import Any

from servers import postgres_cpu_s

parser = argparse.ArgumentParser()
parser.add_argument("--system", choices=["ours", "peer"], required=True)
parser.add_argument("--url", required=True)
parser.add_argument("--quick", action="store_true")
parser.add_argument(
    "--mode",
    choices=["all", "recovery-seed", "recovery-run"],
    default="all",
    help="recovery-seed: start N workflows that block, to be SIGKILLed; recovery-run: launch "
    "(recovering them) and time until all N have finished",
)
parser.add_argument("--count", type=int, default=1000, help="workflows for the recovery modes")
args = parser.parse_args()

if args.system == "ours":
    from runtime import DBOS, Queue

    config: dict[str, Any] = {"name": "bench", "database_url": args.url, "application_version": "b"}
else:
    from dbos import DBOS, Queue  # type: ignore[no-redef]

    config = {"name": "bench", "system_database_url": args.url, "application_version": "b"}

N = 100 if args.quick else 300
TOTAL = 400 if args.quick else 2000


@DBOS.step()
def trivial(i: int) -> int:
    return i


@DBOS.workflow()
def steps_wf(n: int) -> int:
    return sum(trivial(i) for i in range(n))


@DBOS.step()
def block_if_seeding() -> None:
    if args.mode == "recovery-seed":
        time.sleep(3600)  # the process is killed while its workflows wait here


@DBOS.workflow()
def recoverable(i: int) -> int:
    block_if_seeding()
    return trivial(i) + trivial(i)


@DBOS.workflow()
def started_at() -> float:
    return time.time()


@DBOS.workflow()
def receiver(count: int) -> list[float]:
    latencies = []
    for _ in range(count):
        sent = DBOS.recv("bench", timeout_seconds=60)
        latencies.append(time.time() - float(sent))
    return latencies


queues: dict[str, Any] = {}


def declare_queues() -> None:
    # DBOS Transact 3.4 declares queues with DBOS.register_queue (its Queue cannot be built
    # directly); ours are plain Queue objects declared at import.
    if args.system == "ours":
        queues["drain"] = Queue("bench_drain", concurrency=32)
        queues["idle"] = Queue("bench_idle")
    else:
        queues["drain"] = DBOS.register_queue("bench_drain", concurrency=32)  # type: ignore[attr-defined]
        queues["idle"] = DBOS.register_queue("bench_idle")  # type: ignore[attr-defined]


SENDER = """
import sys, time
from {module} import DBOSClient
try:
    client = DBOSClient({kw}=sys.argv[1])
except TypeError:
    client = DBOSClient(sys.argv[1])
for _ in range(int(sys.argv[3])):
    client.send(sys.argv[2], time.time(), topic="bench")
    time.sleep(0.02)
client.destroy()
"""


def timed(fn: Any, n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t0) / n * 1000


def calls(conn: Any) -> int:
    """Top-level statements run in this database so far (pg_stat_statements), less these reads."""
    row = conn.execute(
        "SELECT coalesce(sum(calls), 0) FROM pg_stat_statements WHERE toplevel AND dbid = "
        "(SELECT oid FROM pg_database WHERE datname = current_database()) "
        "AND query NOT LIKE '%pg_stat_statements%' AND query NOT LIKE '%pg_current_wal_lsn%'"
    ).fetchone()
    return int(row[0])


def lsn(conn: Any) -> str:
    return str(conn.execute("SELECT pg_current_wal_lsn()").fetchone()[0])


def wal_since(conn: Any, start: str) -> float:
    """WAL bytes the server wrote since ``start`` (an LSN)."""
    return float(conn.execute("SELECT pg_current_wal_lsn() - %s::pg_lsn", (start,)).fetchone()[0])


def throughput(total: int, threads: int) -> dict[str, float]:
    """Workflows/s of ``total`` 3-step workflows on ``threads`` threads, with the CPU seconds,
    statements and WAL bytes per workflow of this Python process and of the Postgres server (the
    last two include the little background work of the same seconds)."""
    import psycopg

    counter = iter(range(total))
    lock = threading.Lock()

    def worker() -> None:
        while True:
            with lock:
                if next(counter, None) is None:
                    return
            steps_wf(3)

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    with psycopg.connect(args.url, autocommit=True) as conn:
        calls0, wal0 = calls(conn), lsn(conn)
        pg0, cpu0, t0 = postgres_cpu_s(args.url), time.process_time(), time.perf_counter()
        for t in pool:
            t.start()
        for t in pool:
            t.join()
        elapsed = time.perf_counter() - t0
        cpu, pg = time.process_time() - cpu0, postgres_cpu_s(args.url) - pg0
        statements, wal = calls(conn) - calls0, wal_since(conn, wal0)
    return {
        "wps": total / elapsed,
        "python_cpu_ms_per_wf": cpu / total * 1000,
        "postgres_cpu_ms_per_wf": pg / total * 1000,
        "statements_per_wf": statements / total,
        "wal_bytes_per_wf": wal / total,
    }


def drain_backlog(total: int, queue_name: str) -> float:
    """Workflows/s draining a backlog: ``total`` 3-step workflows enqueued by a client on a queue
    no process serves yet, then the queue declared here (concurrency 32) and timed until the last
    has finished. Unlike the drain above, no enqueue runs while the queue drains: this is dispatch
    and execution alone, against the direct starts of the throughput row."""
    import psycopg

    module = "runtime" if args.system == "ours" else "dbos"
    kw = "database_url" if args.system == "ours" else "system_database_url"
    client_class = __import__(module, fromlist=["DBOSClient"]).DBOSClient
    client = client_class(**{kw: args.url})
    for _ in range(total):
        client.enqueue({"queue_name": queue_name, "workflow_name": "steps_wf"}, 3)
    client.destroy()

    def finished(conn: Any) -> int:
        row = conn.execute(
            "SELECT count(*) FROM dbos.workflow_status "
            "WHERE queue_name = %s AND status = 'SUCCESS'",
            (queue_name,),
        ).fetchone()
        return int(row[0])

    with psycopg.connect(args.url, autocommit=True) as conn:
        t0 = time.perf_counter()
        if args.system == "ours":
            Queue(queue_name, concurrency=32)
        else:
            DBOS.register_queue(queue_name, concurrency=32)  # type: ignore[attr-defined]
        while finished(conn) < total:
            time.sleep(0.01)
        return total / (time.perf_counter() - t0)


def writes_per_workflow(url: str, count: int, steps: int) -> tuple[float, float]:
    """Top-level statements the server ran (pg_stat_statements) and WAL bytes it wrote
    (``pg_current_wal_lsn`` before and after) per workflow of ``steps`` steps, run sequentially,
    less what the background work (queue polling, heartbeats) of an idle period as long did."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        conn.execute("CHECKPOINT")  # full-page images after a checkpoint weigh on both alike
        conn.execute("SELECT pg_stat_statements_reset()")
        t0, wal0 = time.perf_counter(), lsn(conn)
        for _ in range(count):
            steps_wf(steps)
        elapsed = time.perf_counter() - t0
        busy, busy_wal = calls(conn), wal_since(conn, wal0)
        conn.execute("SELECT pg_stat_statements_reset()")
        wal0 = lsn(conn)
        time.sleep(elapsed)
        idle_calls, idle_wal = calls(conn), wal_since(conn, wal0)
    return max(0.0, busy - idle_calls) / count, max(0.0, busy_wal - idle_wal) / count


def recovery(url: str) -> None:
    """The two halves of the recovery workload."""
    import psycopg

    def finished() -> int:
        with psycopg.connect(url) as conn:
            row = conn.execute(
                "SELECT count(*) FROM dbos.workflow_status WHERE name LIKE '%recoverable' "
                "AND status = 'SUCCESS'"
            ).fetchone()
        return int(row[0])

    DBOS(config=config)  # type: ignore[arg-type]
    t0 = time.perf_counter()
    DBOS.launch()
    if args.mode == "recovery-seed":
        for i in range(args.count):
            DBOS.start_workflow(recoverable, i)
        print("SEEDED", flush=True)
        time.sleep(3600)
    if args.count == 0:  # the listing benchmark wants one real row to clone
        DBOS.start_workflow(recoverable, 0).get_result()
    while finished() < args.count:
        time.sleep(0.05)
    print(json.dumps({"recovery_s": time.perf_counter() - t0}), flush=True)
    DBOS.destroy()


def main() -> None:
    if args.mode != "all":
        recovery(args.url)
        return
    DBOS(config=config)  # type: ignore[arg-type]
    if args.system == "ours":
        declare_queues()
    DBOS.launch()
    if args.system == "peer":
        declare_queues()
    drain, idle = queues["drain"], queues["idle"]
    out: dict[str, Any] = {}
    reps = 1 if args.quick else 3
    for _ in range(20):
        steps_wf(1)
    # Each figure is a list of samples (repetitions); compare.py reports median, min and max.
    for steps in (0, 1, 10):
        out[f"seq_{steps}_ms"] = [timed(lambda s=steps: steps_wf(s), N) for _ in range(3)]
    pairs = zip(out["seq_0_ms"], out["seq_10_ms"], strict=True)
    out["per_step_ms"] = [(ten - zero) / 10 for zero, ten in pairs]
    stmts_0, _ = writes_per_workflow(args.url, 100, 0)
    stmts_3, wal_3 = writes_per_workflow(args.url, 200, 3)
    out["statements_per_3_step_workflow"] = stmts_3
    out["wal_bytes_per_3_step_workflow"] = wal_3
    out["statements_per_step"] = (stmts_3 - stmts_0) / 3
    runs = [throughput(TOTAL, 32) for _ in range(reps)]
    out["throughput_wps"] = [r["wps"] for r in runs]
    out["steps_per_s"] = [r["wps"] * 3 for r in runs]
    out["python_cpu_ms_per_wf"] = [r["python_cpu_ms_per_wf"] for r in runs]
    out["postgres_cpu_ms_per_wf"] = [r["postgres_cpu_ms_per_wf"] for r in runs]
    out["statements_per_wf_32"] = [r["statements_per_wf"] for r in runs]
    out["wal_bytes_per_wf_32"] = [r["wal_bytes_per_wf"] for r in runs]

    out["drain_wps"] = []
    for _ in range(reps):
        t0 = time.perf_counter()
        handles = [drain.enqueue(steps_wf, 3) for _ in range(TOTAL)]
        for h in handles:
            h.get_result()
        out["drain_wps"].append(TOTAL / (time.perf_counter() - t0))

    out["drain_backlog_wps"] = [drain_backlog(TOTAL, f"bench_backlog_{r}") for r in range(reps)]

    lat = []
    for _ in range(30 if args.quick else 60):
        t = time.time()
        lat.append((idle.enqueue(started_at).get_result() - t) * 1000)
        time.sleep(0.02)
    out["enqueue_to_start_ms"] = lat

    count = 50 if args.quick else 200
    handle = DBOS.start_workflow(receiver, count)
    time.sleep(0.5)
    module = "runtime" if args.system == "ours" else "dbos"
    kw = "database_url" if args.system == "ours" else "system_database_url"
    subprocess.run(
        [
            sys.executable,
            "-c",
            SENDER.format(module=module, kw=kw),
            args.url,
            handle.workflow_id,
            str(count),
        ],
        check=True,
    )
    latencies = sorted(x * 1000 for x in handle.get_result())
    out["send_recv_median_ms"] = latencies
    out["send_recv_p99_ms"] = latencies[max(0, int(len(latencies) * 0.99) - 1)]
    DBOS.destroy()
    print(json.dumps(out))


if __name__ == "__main__":
    main()

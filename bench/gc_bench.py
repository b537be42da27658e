"""Garbage collection under load: deleting many finished workflows in batches, its rate, and what
it does to the checkpoint latency of a workload running at the same time.

1. **fill**: N finished workflows (SUCCESS, ERROR, CANCELLED, MAX_RECOVERY_ATTEMPTS_EXCEEDED),
   created 30-40 days ago, each with 3 step rows (``operation_outputs``); every 4th has an event,
   every 10th a message, every 20th an idempotency key. Set-based SQL (``generate_series``) in
   chunks, the secondary indexes of ``workflow_status`` dropped for the fill and rebuilt after
   (as they would be in production, built from the rows).
2. **workload**: a separate process (``--mode worker``) of this runtime runs 10-step workflows on
   2 threads without pause, timing each step call: a trivial step's wall time is its checkpoint
   (one round trip, one commit).
3. **without gc**: the latencies of a window with the workload alone (after a warm-up).
4. **with gc**: ``DBOSClient.garbage_collect(cutoff, None, batch_size=...)`` with a cutoff of one
   day ago, deleting all N (never the workload's own, recent workflows), while the workload
   runs; the latencies of that window.

Reported: the rate (workflows/s, and rows/s over every table), the median and p99 step latency
without and with gc, and the p99's rise (target: < 2x).

    python bench/gc_bench.py [--quick] [--n N] [--batch-size B] [--url URL] [--json FILE]
                             [--markdown FILE]

Without ``--url`` it starts an embedded Postgres (default durability: fsync on) in a temporary
folder; with ``--url`` it creates and then drops the database ``bench_gc`` on that server. Run by
``make bench`` (bench/compare.py, which adds the section to bench/results/latest.md). Named
gc_bench, not gc: a module named ``gc`` could not be imported (the interpreter's own ``gc`` is
built in and always found first).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parent.parent
# Workflows to delete: full run and --quick.
GC_N = (1_000_000, 100_000)
# The workload alone before gc starts: warm-up (discarded) and the measured window, seconds.
WARMUP_S = 3.0
BASELINE_S = (20.0, 10.0)
WORKLOAD_THREADS = 2
STEPS_PER_WORKFLOW = 10
FILL_CHUNK = 100_000
DAY_MS = 86_400_000
# The tables holding a workflow's rows (all cascade from workflow_status).
TABLES = (
    "workflow_status",
    "operation_outputs",
    "workflow_events",
    "notifications",
    "idempotent_sends",
)
P99_RISE_TARGET = 2.0


# -- the fill -------------------------------------------------------------------------------------

FILL_WORKFLOWS = """
INSERT INTO dbos.workflow_status (workflow_uuid, status, name, inputs, output, error, executor_id,
    application_version, created_at, updated_at, started_at_epoch_ms, completed_at_epoch_ms)
SELECT 'gc-' || i,
       (ARRAY['SUCCESS', 'SUCCESS', 'SUCCESS', 'ERROR', 'CANCELLED',
              'MAX_RECOVERY_ATTEMPTS_EXCEEDED'])[1 + i %% 6],
       'order_workflow', '{"args": [' || i || '], "kwargs": {}}',
       CASE WHEN i %% 6 < 3 THEN '{"ok": ' || i || '}' END,
       CASE WHEN i %% 6 = 3 THEN '{"type": "ValueError", "message": "bad"}' END,
       'local', 'v1', %(t0)s + i * %(spread)s, %(t0)s + i * %(spread)s + 50,
       %(t0)s + i * %(spread)s + 1, %(t0)s + i * %(spread)s + 50
FROM generate_series(%(lo)s::bigint, %(hi)s::bigint) AS i
"""
FILL_STEPS = """
INSERT INTO dbos.operation_outputs (workflow_uuid, function_id, function_name, output,
    started_at_epoch_ms, completed_at_epoch_ms)
SELECT 'gc-' || i, f, 'step_' || f, '{"value": ' || (i * 3 + f) || '}',
       %(t0)s + i * %(spread)s + f * 10, %(t0)s + i * %(spread)s + f * 10 + 5
FROM generate_series(%(lo)s::bigint, %(hi)s::bigint) AS i, generate_series(1, 3) AS f
"""
FILL_EVENTS = """
INSERT INTO dbos.workflow_events (workflow_uuid, key, value)
SELECT 'gc-' || i, 'progress', '"done"'
FROM generate_series(%(lo)s::bigint, %(hi)s::bigint) AS i WHERE i %% 4 = 0
"""
FILL_MESSAGES = """
INSERT INTO dbos.notifications (destination_uuid, topic, message, created_at_epoch_ms)
SELECT 'gc-' || i, 'payment', '{"paid": true}', %(t0)s + i * %(spread)s + 20
FROM generate_series(%(lo)s::bigint, %(hi)s::bigint) AS i WHERE i %% 10 = 0
"""
FILL_KEYS = """
INSERT INTO dbos.idempotent_sends (destination_uuid, idempotency_key, created_at_epoch_ms)
SELECT 'gc-' || i, 'key-' || i, %(t0)s + i * %(spread)s + 20
FROM generate_series(%(lo)s::bigint, %(hi)s::bigint) AS i WHERE i %% 20 = 0
"""


def fill(url: str, n: int) -> float:
    """Insert ``n`` old finished workflows with their rows; returns the seconds it took."""
    started = time.perf_counter()
    now_ms = int(time.time() * 1000)
    # Created between 40 and 30 days ago, evenly.
    params: dict[str, Any] = {"t0": now_ms - 40 * DAY_MS, "spread": max(1, 10 * DAY_MS // n)}
    with psycopg.connect(url, autocommit=True) as conn:
        indexes = conn.execute(
            "SELECT i.indexname, i.indexdef FROM pg_indexes i WHERE i.schemaname = 'dbos' "
            "AND i.tablename = 'workflow_status' AND NOT EXISTS "
            "(SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname)"
        ).fetchall()
        for name, _ in indexes:
            conn.execute(sql.SQL("DROP INDEX dbos.{}").format(sql.Identifier(name)))
        for lo in range(0, n, FILL_CHUNK):
            chunk = params | {"lo": lo, "hi": min(n, lo + FILL_CHUNK) - 1}
            with conn.transaction():
                for statement in (
                    FILL_WORKFLOWS,
                    FILL_STEPS,
                    FILL_EVENTS,
                    FILL_MESSAGES,
                    FILL_KEYS,
                ):
                    conn.execute(statement, chunk)
        for _, definition in indexes:
            conn.execute(definition)  # Postgres's own definition of the index it had
        for table in TABLES:
            conn.execute(sql.SQL("VACUUM ANALYZE dbos.{}").format(sql.Identifier(table)))
        conn.execute("CHECKPOINT")  # the fill's dirty pages written now, not during the windows
    return time.perf_counter() - started


# The column naming the workflow a row belongs to, per table.
OWNER_COLUMN = {
    "workflow_status": "workflow_uuid",
    "operation_outputs": "workflow_uuid",
    "workflow_events": "workflow_uuid",
    "notifications": "destination_uuid",
    "idempotent_sends": "destination_uuid",
}


def row_counts(url: str) -> dict[str, int]:
    """Rows per table belonging to the filled workflows (the workload adds its own meanwhile)."""
    out = {}
    with psycopg.connect(url, autocommit=True) as conn:
        for table in TABLES:
            row = conn.execute(
                sql.SQL("SELECT count(*) FROM dbos.{} WHERE {} LIKE 'gc-%%'").format(
                    sql.Identifier(table), sql.Identifier(OWNER_COLUMN[table])
                )
            ).fetchone()
            out[table] = int(row[0]) if row else 0
    return out


# -- the workload (a child process) ---------------------------------------------------------------


def worker(url: str, out: Path) -> None:
    """Run the checkpoint workload until stdin closes; then write the samples to ``out``:
    ``{"ends": [epoch seconds], "ms": [step latency]}``."""
    from runtime import DBOS

    ends: list[float] = []
    latencies: list[float] = []
    stop = threading.Event()

    @DBOS.step()
    def trivial(i: int) -> int:
        return i

    @DBOS.workflow()
    def steady(n: int) -> int:
        total = 0
        for i in range(n):
            t0 = time.perf_counter()
            total += trivial(i)
            latencies.append((time.perf_counter() - t0) * 1000)  # list.append is atomic
            ends.append(time.time())
        return total

    def loop() -> None:
        while not stop.is_set():
            steady(STEPS_PER_WORKFLOW)

    DBOS(config={"name": "gc-bench", "database_url": url, "application_version": "w"})  # type: ignore[arg-type]
    DBOS.launch()
    threads = [threading.Thread(target=loop) for _ in range(WORKLOAD_THREADS)]
    for t in threads:
        t.start()
    print("READY", flush=True)
    sys.stdin.read()  # the parent closes our stdin to stop us
    stop.set()
    for t in threads:
        t.join()
    DBOS.destroy()
    n = min(len(ends), len(latencies))
    out.write_text(json.dumps({"ends": ends[:n], "ms": latencies[:n]}))


def _window(samples: dict[str, list[float]], start: float, end: float) -> list[float]:
    return [ms for t, ms in zip(samples["ends"], samples["ms"], strict=True) if start <= t < end]


def _summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    if not ordered:
        return {"n": 0, "median_ms": float("nan"), "p99_ms": float("nan")}
    return {
        "n": len(ordered),
        "median_ms": statistics.median(ordered),
        "p99_ms": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))],
    }


# -- the measurement ------------------------------------------------------------------------------


def measure(
    url: str, n: int, *, baseline_s: float, batch_size: int | None = None
) -> dict[str, Any]:
    """Fill ``n`` workflows into the (migrated) database at ``url``, run the workload, measure a
    window without gc, then collect them all while the workload runs."""
    from runtime import DBOSClient
    from runtime.retention import DEFAULT_GC_BATCH_SIZE

    batch = batch_size or DEFAULT_GC_BATCH_SIZE
    fill_s = fill(url, n)
    before = row_counts(url)
    samples_file = Path(tempfile.mkstemp(prefix="gc-bench-", suffix=".json")[1])
    child = subprocess.Popen(
        [sys.executable, __file__, "--mode", "worker", "--url", url, "--json", str(samples_file)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        assert child.stdout is not None and child.stdin is not None
        if child.stdout.readline().strip() != "READY":
            raise SystemExit("the gc workload did not start")
        time.sleep(WARMUP_S)
        base_start = time.time()
        time.sleep(baseline_s)
        base_end = gc_start = time.time()
        client = DBOSClient(url)
        try:
            result = client.garbage_collect(
                cutoff_epoch_timestamp_ms=int(time.time() * 1000) - DAY_MS,
                rows_threshold=None,
                batch_size=batch,
            )
        finally:
            client.destroy()
        gc_end = time.time()
        child.stdin.close()
        child.wait(120)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    samples = json.loads(samples_file.read_text())
    samples_file.unlink()
    after = row_counts(url)
    rows_deleted = sum(before[t] - after[t] for t in TABLES)
    if any(after.values()):  # every filled workflow is old and finished: none may be left
        raise SystemExit(f"garbage collection left rows behind: {after}")
    gc_s = gc_end - gc_start
    without, during = (
        _summary(_window(samples, base_start, base_end)),
        _summary(_window(samples, gc_start, gc_end)),
    )
    return {
        "n": n,
        "batch_size": batch,
        "fill_s": fill_s,
        "rows_before": before,
        "deleted": result.deleted,
        "batches": result.batches,
        "rows_deleted": rows_deleted,
        "gc_s": gc_s,
        "workflows_per_s": result.deleted / gc_s,
        "rows_per_s": rows_deleted / gc_s,
        "without_gc": without,
        "with_gc": during,
        "p99_rise": during["p99_ms"] / without["p99_ms"],
        "median_rise": during["median_ms"] / without["median_ms"],
    }


TITLE = "Garbage collection under load (ours)"


def render(r: dict[str, Any]) -> str:
    """The markdown section of bench/results/latest.md."""
    rise_met = r["p99_rise"] < P99_RISE_TARGET
    rows = r["rows_before"]
    lines = [
        f"{r['n']:,} finished workflows created 30-40 days ago, each with 3 step rows; every "
        f"4th an event, every 10th a message, every 20th an idempotency key "
        f"({sum(rows.values()):,} rows in all; filled in {r['fill_s']:.0f} s). "
        f"`DBOSClient.garbage_collect` deletes them in batches of {r['batch_size']:,} while "
        f"another process runs {STEPS_PER_WORKFLOW}-step workflows on {WORKLOAD_THREADS} "
        "threads, timing every step (a trivial step's time is its checkpoint).",
        "",
        "| measure | value | target |",
        "|---|---|---|",
        f"| workflows deleted | {r['deleted']:,} in {r['batches']} batches, {r['gc_s']:.1f} s | |",
        f"| rate | {r['workflows_per_s']:,.0f} workflows/s, {r['rows_per_s']:,.0f} rows/s "
        "(all tables) | |",
    ]
    for key, label in (("without_gc", "without gc"), ("with_gc", "during gc")):
        s = r[key]
        lines.append(
            f"| step checkpoint latency {label} | median {s['median_ms']:.2f} ms, "
            f"p99 {s['p99_ms']:.2f} ms ({s['n']:,} steps) | |"
        )
    lines.append(
        f"| p99 rise during gc | {r['p99_rise']:.2f}x (median {r['median_rise']:.2f}x) | "
        f"< {P99_RISE_TARGET:g}x: {'met' if rise_met else 'NOT met'} |"
    )
    return "\n".join(lines)


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


def run(
    server_url: str, n: int, *, baseline_s: float, batch_size: int | None = None
) -> dict[str, Any]:
    """``measure`` in a fresh database ``bench_gc`` on the server of ``server_url``, dropped
    after."""
    from runtime.migrate import migrate

    url = _with_database(server_url, "bench_gc")
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute('DROP DATABASE IF EXISTS "bench_gc" WITH (FORCE)')
        conn.execute('CREATE DATABASE "bench_gc"')
    try:
        migrate(url)
        return measure(url, n, baseline_s=baseline_s, batch_size=batch_size)
    finally:
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute('DROP DATABASE IF EXISTS "bench_gc" WITH (FORCE)')


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help=f"{GC_N[1]:,} workflows")
    parser.add_argument("--n", type=int, help="workflows to fill and delete")
    parser.add_argument("--batch-size", type=int, help="workflows per batch (default: the API's)")
    parser.add_argument("--url", help="a server to use (default: an embedded one)")
    parser.add_argument("--json", help="write the result here (worker: the samples)")
    parser.add_argument("--markdown", help="write the report here")
    parser.add_argument("--mode", choices=["measure", "worker"], default="measure")
    options = parser.parse_args()
    if options.mode == "worker":
        worker(options.url, Path(options.json))
        return
    pick = 1 if options.quick else 0
    n = options.n or GC_N[pick]
    baseline = BASELINE_S[pick]
    base_dir: Path | None = None
    server = None
    url = options.url
    if url is None:
        from runtime.embedded import EmbeddedPostgres

        base_dir = Path(tempfile.mkdtemp(prefix="dbos-gc-bench-"))
        server = EmbeddedPostgres(base_dir, settings={"max_connections": "100"})
        url = server.start()
    try:
        result = run(url, n, baseline_s=baseline, batch_size=options.batch_size)
    finally:
        if server is not None:
            server.stop()
        if base_dir is not None:
            with contextlib.suppress(OSError):
                shutil.rmtree(base_dir)
    if options.json:
        Path(options.json).write_text(json.dumps(result, indent=2))
    if options.markdown:
        Path(options.markdown).write_text(f"# {TITLE}\n\n{render(result)}\n")
    print(render(result))
    print(json.dumps(result))


if __name__ == "__main__":
    main()

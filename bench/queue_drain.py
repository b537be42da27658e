"""Queue drain against direct starts, in the same process and run (issue 22's "queue drain" row).

direct: 32 threads each call ``steps_wf(3)`` in a loop until ``--total`` workflows have run.
drain: the main thread enqueues ``--total`` ``steps_wf(3)`` on ``Queue("bench_drain",
concurrency=32)`` and then waits for every handle's result (enqueue + dispatch + run).

Also counts the statements the server ran per drained workflow (pg_stat_statements, top level,
less an idle period as long) and, with ``--profile drain|direct``, prints a cProfile of that
workload (cumulative time, top 40).

    python bench/queue_drain.py [--rounds 3] [--total 2000]          # this checkout
    python bench/queue_drain.py --trees /tmp/wt-base /tmp/wt-q       # interleaved A/B

Each (round, tree) runs in a fresh process on a fresh database of one embedded Postgres; rounds
alternate which tree goes first. Prints every sample and the medians with min-max spread.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from servers import fresh_database, interleaved, server

WORKLOAD = r"""
import cProfile, io, json, logging, pstats, sys, time
import psycopg
from runtime import DBOS, Queue
logging.getLogger("dbos").setLevel(logging.WARNING)
url, total, profile = sys.argv[1], int(sys.argv[2]), sys.argv[3]

from steps_app import on_threads, steps_wf

drain = Queue("bench_drain", concurrency=32)
DBOS(config={"name": "qd", "database_url": url})
DBOS.launch()
for _ in range(50):
    steps_wf(1)

def direct() -> None:
    on_threads(total, 32, lambda: steps_wf(3))

def drained() -> None:
    handles = [drain.enqueue(steps_wf, 3) for _ in range(total)]
    for h in handles:
        h.get_result()

def timed(fn):
    t0 = time.perf_counter()
    fn()
    return total / (time.perf_counter() - t0)

def calls(conn) -> dict[str, int]:
    rows = conn.execute(
        "SELECT query, calls FROM pg_stat_statements WHERE toplevel AND dbid = "
        "(SELECT oid FROM pg_database WHERE datname = current_database()) "
        "AND query NOT LIKE '%%pg_stat_statements%%'"
    ).fetchall()
    return {q: int(c) for q, c in rows}

if profile != "none":
    prof = cProfile.Profile()
    prof.enable()
    (drained if profile == "drain" else direct)()
    prof.disable()
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("cumulative").print_stats(40)
    print(out.getvalue(), file=sys.stderr)

out = {"direct_wps": timed(direct), "drain_wps": timed(drained)}
with psycopg.connect(url, autocommit=True) as conn:
    conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
    conn.execute("SELECT pg_stat_statements_reset()")
    t0 = time.perf_counter()
    drained()
    elapsed = time.perf_counter() - t0
    busy = calls(conn)
    conn.execute("SELECT pg_stat_statements_reset()")
    time.sleep(min(elapsed, 3.0))
    idle = sum(calls(conn).values()) * elapsed / min(elapsed, 3.0)
out["statements_per_drained_wf"] = max(0.0, sum(busy.values()) - idle) / total
top = sorted(busy.items(), key=lambda kv: -kv[1])[:12]
out["top_statements"] = [[c / total, " ".join(q.split())[:110]] for q, c in top]
print(json.dumps(out))
DBOS.destroy()
"""

FIELDS = ("direct_wps", "drain_wps", "ratio", "statements_per_drained_wf")


def run_one(tree: Path, url: str, total: int, profile: str) -> dict[str, object]:
    # The checkout first (its runtime), then this folder (steps_app).
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tree), str(Path(__file__).parent)]))
    done = subprocess.run(
        [sys.executable, "-c", WORKLOAD, url, str(total), profile],
        env=env,
        capture_output=True,
        text=True,
        cwd=tempfile.gettempdir(),
    )
    if done.returncode != 0:
        raise SystemExit(f"workload failed in {tree}:\n{done.stderr[-3000:]}")
    if profile != "none":
        print(done.stderr)
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    result["ratio"] = float(result["drain_wps"]) / float(result["direct_wps"])  # type: ignore[arg-type]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trees", nargs="+", default=[str(Path(__file__).resolve().parents[1])])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--total", type=int, default=2000)
    parser.add_argument("--profile", choices=["none", "drain", "direct"], default="none")
    parser.add_argument("--top", action="store_true", help="print the most frequent statements")
    args = parser.parse_args()
    trees = [Path(t).resolve() for t in args.trees]
    samples: dict[Path, list[dict[str, object]]] = {t: [] for t in trees}
    with server("qd") as url:
        for n, i, tree in interleaved(trees, args.rounds):
            result = run_one(tree, fresh_database(url, f"qd_{n}_{i}"), args.total, args.profile)
            samples[tree].append(result)
            row = " ".join(f"{k}={float(result[k]):.3f}" for k in FIELDS)  # type: ignore[arg-type]
            print(f"round {n} {tree}: {row}", flush=True)
            if args.top:
                for per_wf, query in result["top_statements"]:  # type: ignore[attr-defined]
                    print(f"    {per_wf:7.3f}/wf  {query}")
    print("| tree | " + " | ".join(f"{f} median (min-max)" for f in FIELDS) + " |")
    print("|---" * (len(FIELDS) + 1) + "|")
    for tree, rows in samples.items():
        cells = []
        for f in FIELDS:
            values = [float(r[f]) for r in rows]  # type: ignore[arg-type]
            cells.append(f"{statistics.median(values):.3f} ({min(values):.3f}-{max(values):.3f})")
        print(f"| {tree} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()

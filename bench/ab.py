"""A/B of two checkouts of this runtime on one Postgres, interleaved so that both see the same
machine: sequential 0- and 10-step workflows (per-step latency) and 3-step workflows on 32
threads (throughput and Python CPU per workflow). For a restructure that must not slow anything;
``make bench`` compares us with DBOS Transact.

    python bench/ab.py /path/to/checkout-A /path/to/checkout-B [--rounds 4]

Each round runs each checkout in a fresh process (its runtime imported through PYTHONPATH) on a
fresh database, alternating which goes first; prints every round and the medians.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from servers import fresh_database, interleaved, server

WORKLOAD = """
import logging, sys, time
from runtime import DBOS
logging.getLogger("dbos").setLevel(logging.WARNING)

from steps_app import on_threads, steps_wf

DBOS(config={"name": "ab", "database_url": sys.argv[1], "max_executor_threads": 64})
DBOS.launch()
for _ in range(50):
    steps_wf(1)

def sequential(n: int, steps: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        steps_wf(steps)
    return (time.perf_counter() - t0) / n * 1000

def threaded(total: int, threads: int) -> tuple[float, float]:
    cpu0, t0 = time.process_time(), time.perf_counter()
    on_threads(total, threads, lambda: steps_wf(3))
    return total / (time.perf_counter() - t0), (time.process_time() - cpu0) / total * 1000

zero = min(sequential(150, 0) for _ in range(3))
ten = min(sequential(100, 10) for _ in range(3))
runs = [threaded(1000, 32) for _ in range(2)]
print(zero, ten, (ten - zero) / 10, max(r[0] for r in runs), min(r[1] for r in runs))
DBOS.destroy()
"""
BENCH = str(Path(__file__).resolve().parent)
FIELDS = ["0-step ms", "10-step ms", "per-step ms", "wf/s (32 threads)", "Python CPU ms/wf"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("a")
    parser.add_argument("b")
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    trees = {"A": Path(args.a).resolve(), "B": Path(args.b).resolve()}
    results: dict[str, list[list[float]]] = {"A": [], "B": []}
    with server("ab") as url:
        for n, _, label in interleaved(["A", "B"], args.rounds):
            db_url = fresh_database(url, f"ab_{label.lower()}_{n}")
            # The checkout first (its runtime), then this folder (steps_app).
            env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(trees[label]), BENCH]))
            done = subprocess.run(
                [sys.executable, "-c", WORKLOAD, db_url],
                env=env,
                capture_output=True,
                text=True,
                cwd=tempfile.gettempdir(),
                check=True,
            )
            row = [float(x) for x in done.stdout.split()[-5:]]
            results[label].append(row)
            print(label, n, " ".join(f"{x:.3f}" for x in row), flush=True)
    print("| | " + " | ".join(FIELDS) + " |")
    print("|---" * (len(FIELDS) + 1) + "|")
    for label, rows in results.items():
        medians = [statistics.median(col) for col in zip(*rows, strict=True)]
        print(f"| {label}: {trees[label]} | " + " | ".join(f"{m:.3f}" for m in medians) + " |")


if __name__ == "__main__":
    main()

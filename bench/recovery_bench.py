"""Recovery of N PENDING workflows left by a killed process, on a fresh embedded Postgres: a seed
process starts ``--count`` workflows that block in their first step and is SIGKILLed; then a fresh
process launches and the time until all have finished is measured (launch included), as
``make bench``'s recovery row does.

    python bench/recovery_bench.py [--count 10000] [--rounds 1] [--profile out.prof] [TREE ...]

Each TREE is a checkout of this runtime (default: this one); with several, the rounds interleave
them on the same server (a fresh database per run) and the medians are printed. ``--profile``
runs the recovering process under cProfile and writes its stats (of the last run) to that file.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg
from servers import fresh_database, interleaved, server

APP = """
import json, logging, os, sys, time
from runtime import DBOS
logging.getLogger("dbos").setLevel(logging.WARNING)
mode, url, count = sys.argv[1], sys.argv[2], int(sys.argv[3])

@DBOS.step()
def block_if_seeding() -> None:
    if mode == "seed":
        time.sleep(3600)  # killed while its workflows wait here

@DBOS.step()
def trivial(i: int) -> int:
    return i

@DBOS.workflow()
def recoverable(i: int) -> int:
    block_if_seeding()
    return trivial(i) + trivial(i)

def finished() -> int:
    import psycopg
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM dbos.workflow_status WHERE status = 'SUCCESS'"
        ).fetchone()
    return int(row[0])

DBOS(config={"name": "recovery-bench", "database_url": url, "application_version": "b"})
t0 = time.perf_counter()
DBOS.launch()
if mode == "seed":
    for i in range(count):
        DBOS.start_workflow(recoverable, i)
    print("SEEDED", flush=True)
    time.sleep(3600)
launched = time.perf_counter() - t0
while finished() < count:
    time.sleep(0.02)
print(json.dumps({"recovery_s": time.perf_counter() - t0, "launch_s": launched}), flush=True)
DBOS.destroy()
"""


def pending(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM dbos.workflow_status WHERE status = 'PENDING'"
        ).fetchone()
    return int(row[0]) if row else 0


def one_run(
    tree: Path, url: str, count: int, profile: str | None, spy: str | None = None
) -> dict[str, float]:
    """Seed, kill, recover; returns the recovering process's figures."""
    env = dict(os.environ, PYTHONPATH=str(tree))
    cwd = tempfile.gettempdir()
    app = Path(tempfile.mkdtemp(prefix="recovery-bench-")) / "app.py"
    app.write_text(APP)
    seed = subprocess.Popen(
        [sys.executable, str(app), "seed", url, str(count)],
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert seed.stdout is not None
    for line in seed.stdout:
        if line.startswith("SEEDED"):
            break
    while pending(url) < count:  # every start recorded
        time.sleep(0.1)
    seed.kill()
    seed.wait()
    seed.stdout.close()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        conn.execute("SELECT pg_stat_statements_reset()")
    cmd = [sys.executable]
    if spy:  # every thread, sampled: collapsed stacks (flamegraph.pl's input)
        cmd = ["py-spy", "record", "-r", "200", "-f", "raw", "-o", spy, "--", *cmd]
    elif profile:
        cmd += ["-m", "cProfile", "-o", profile]
    done = subprocess.run(
        [*cmd, str(app), "run", url, str(count)],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=900,
        check=True,
    )
    # The app's last JSON line (py-spy prints its own lines after it).
    line = next(x for x in reversed(done.stdout.splitlines()) if x.startswith("{"))
    result: dict[str, float] = json.loads(line)
    with psycopg.connect(url, autocommit=True) as conn:  # the recovering process's statements
        rows = conn.execute(
            "SELECT calls, query FROM pg_stat_statements WHERE toplevel AND dbid = "
            "(SELECT oid FROM pg_database WHERE datname = current_database()) ORDER BY calls DESC"
        ).fetchall()
    result["statements_per_workflow"] = sum(r[0] for r in rows) / count
    for calls, query in rows[:8]:
        print(f"    {calls / count:6.3f} per workflow: {' '.join(query.split())[:100]}")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("trees", nargs="*", default=[str(Path(__file__).resolve().parents[1])])
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--profile", help="write the recovering process's cProfile stats here")
    parser.add_argument("--py-spy", dest="spy", help="sample every thread with py-spy to here")
    args = parser.parse_args()
    trees = [Path(t).resolve() for t in args.trees]
    results: dict[int, list[float]] = {i: [] for i in range(len(trees))}
    with server("recovery-bench") as url:
        for n, i, tree in interleaved(trees, args.rounds):
            db_url = fresh_database(url, f"recovery_{i}_{n}")
            r = one_run(tree, db_url, args.count, args.profile, args.spy)
            results[i].append(r["recovery_s"])
            print(
                f"{tree} round {n}: {r['recovery_s']:.2f} s (launch {r['launch_s']:.2f} s)",
                flush=True,
            )
    for i, tree in enumerate(trees):
        xs = results[i]
        print(
            f"{tree}: median {statistics.median(xs):.2f} s, "
            f"min {min(xs):.2f} s, max {max(xs):.2f} s over {len(xs)} runs"
        )


if __name__ == "__main__":
    main()

"""`make bench-profile`: where a 3-step workflow's time goes, on both sides.

Runs the workloads of bench/ab.py (sequential 3-step workflows, then 3-step workflows on 32
threads) against a fresh embedded Postgres (fsync on, pg_stat_statements loaded), once unprofiled
(for the CPU per workflow of this process and of the server) and once under cProfile (every
worker thread has its own profiler; their statistics are merged). Writes bench/results/profile.md:

- Python CPU ms and Postgres CPU ms per workflow, and workflows/s, for each workload;
- the top functions by cumulative and by own time (cProfile; pyinstrument is not required);
- Postgres's view: every statement (pg_stat_statements) with its calls, mean time and rows per
  workflow.

    python bench/profile_hot_path.py [--seq 400] [--threaded 2000] [--top 30] [--out FILE.md]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import logging
import os
import pstats
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
from servers import postgres_cpu_s, server
from steps_app import steps_wf

from runtime import DBOS

RESULTS = Path(__file__).resolve().parent / "results"
ROOT = Path(__file__).resolve().parent.parent
THREADS = 32


def sequential(count: int, profiler: cProfile.Profile | None) -> None:
    if profiler is not None:
        profiler.enable()
    for _ in range(count):
        steps_wf(3)
    if profiler is not None:
        profiler.disable()


def threaded(count: int, profilers: list[cProfile.Profile] | None) -> None:
    left = iter(range(count))
    lock = threading.Lock()

    def worker() -> None:
        prof = cProfile.Profile() if profilers is not None else None
        if prof is not None:
            with lock:
                profilers.append(prof)  # type: ignore[union-attr]
            prof.enable()
        while True:
            with lock:
                if next(left, None) is None:
                    break
            steps_wf(3)
        if prof is not None:
            prof.disable()

    workers = [threading.Thread(target=worker) for _ in range(THREADS)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()


def measure(url: str, run: Callable[[], None], count: int) -> dict[str, float]:
    """Workflows/s and CPU ms per workflow (this process, the server) of one unprofiled run."""
    pg0, cpu0, t0 = postgres_cpu_s(url), time.process_time(), time.perf_counter()
    run()
    elapsed = time.perf_counter() - t0
    return {
        "wf/s": count / elapsed,
        "Python CPU ms/wf": (time.process_time() - cpu0) / count * 1000,
        "Postgres CPU ms/wf": (postgres_cpu_s(url) - pg0) / count * 1000,
        "ms/wf (wall)": elapsed / count * 1000,
    }


def short_name(func: tuple[str, int, str]) -> str:
    path, line, name = func
    if path == "~":
        return name
    try:
        path = str(Path(path).resolve().relative_to(ROOT))
    except ValueError:
        path = re.sub(r".*/site-packages/", "", path)
        path = re.sub(r".*/lib/python3\.\d+/", "", path)
    return f"{path}:{line}({name})"


def top_table(stats: pstats.Stats, key: str, top: int, count: int) -> str:
    """The ``top`` functions by ``key`` ('cumulative' or 'tottime'), times per workflow."""
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    index = 3 if key == "cumulative" else 2
    rows = sorted(raw.items(), key=lambda kv: kv[1][index], reverse=True)[:top]
    out = [
        "| function | calls/wf | own µs/wf | cumulative µs/wf |",
        "|---|---:|---:|---:|",
    ]
    for func, (_cc, nc, tt, ct, _callers) in rows:
        out.append(
            f"| `{short_name(func)}` | {nc / count:.2f} | {tt / count * 1e6:.1f} | "
            f"{ct / count * 1e6:.1f} |"
        )
    return "\n".join(out)


def statements(url: str, count: int) -> str:
    """pg_stat_statements since the last reset, per workflow (top-level statements only)."""
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT calls, mean_exec_time, rows, total_exec_time, query FROM pg_stat_statements "
            "WHERE toplevel AND dbid = (SELECT oid FROM pg_database "
            "WHERE datname = current_database()) AND query NOT LIKE '%pg_stat_statements%' "
            "ORDER BY total_exec_time DESC LIMIT 15"
        ).fetchall()
    out = [
        "| calls/wf | mean exec ms | rows/call | exec ms/wf | statement |",
        "|---:|---:|---:|---:|---|",
    ]
    for calls, mean, nrows, total, query in rows:
        text = " ".join(str(query).split())
        text = (text[:110] + "…") if len(text) > 110 else text
        text = text.replace("|", "\\|")
        out.append(
            f"| {calls / count:.2f} | {mean:.3f} | {nrows / max(calls, 1):.2f} | "
            f"{total / count:.3f} | `{text}` |"
        )
    total_calls = sum(r[0] for r in rows)
    out.append(f"\nStatements per workflow (top 15 kinds): {total_calls / count:.2f}")
    return "\n".join(out)


def reset_statements(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT pg_stat_statements_reset()")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seq", type=int, default=400, help="sequential 3-step workflows")
    parser.add_argument("--threaded", type=int, default=2000, help="3-step workflows, 32 threads")
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--out", type=Path, default=RESULTS / "profile.md")
    args = parser.parse_args()
    logging.getLogger("dbos").setLevel(logging.WARNING)
    started = time.perf_counter()
    sections: list[str] = []
    with server("profile") as url:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        DBOS(config={"name": "profile", "database_url": url, "max_executor_threads": 64})
        DBOS.launch()
        try:
            for _ in range(50):
                steps_wf(1)
            sections += run_one(url, "sequential 3-step workflows", args.seq, args.top, seq=True)
            sections += run_one(
                url, f"3-step workflows on {THREADS} threads", args.threaded, args.top, seq=False
            )
        finally:
            DBOS.destroy()
    header = (
        "# Profile of the checkpoint hot path (`make bench-profile`)\n\n"
        "bench/profile_hot_path.py on a fresh embedded Postgres (fsync on) on this machine; "
        "figures per workflow of 3 trivial steps. CPU and wall figures come from an unprofiled "
        "run; the function tables from a second run under cProfile (which inflates Python time "
        "about 2x: read them for proportions; cProfile counts wall time, so the own time of "
        "psycopg's `wait` and of a lock's `acquire` is mostly waiting for the server or for "
        "another thread, not CPU). "
        "Load average when done: "
        f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores. Run took "
        f"{time.perf_counter() - started:.0f} s.\n"
    )
    args.out.write_text(header + "\n".join(sections) + "\n")
    print(args.out.read_text())


def run_one(url: str, title: str, count: int, top: int, *, seq: bool) -> list[str]:
    """One workload: unprofiled figures and statements, then the cProfile tables."""

    def plain() -> None:
        if seq:
            sequential(count, None)
        else:
            threaded(count, None)

    reset_statements(url)
    figures = measure(url, plain, count)
    stmts = statements(url, count)
    profilers: list[cProfile.Profile] = []
    if seq:
        prof = cProfile.Profile()
        sequential(count, prof)
        profilers.append(prof)
    else:
        threaded(count, profilers)
    stats = pstats.Stats(profilers[0], stream=io.StringIO())
    for p in profilers[1:]:
        stats.add(p)
    lines = [f"\n## {title} ({count} workflows)\n"]
    lines.append("| " + " | ".join(figures) + " |")
    lines.append("|" + "---:|" * len(figures))
    lines.append("| " + " | ".join(f"{v:.3f}" for v in figures.values()) + " |")
    lines.append("\n### Postgres: statements (pg_stat_statements, unprofiled run)\n")
    lines.append(stmts)
    lines.append("\n### Python: top functions by cumulative time (cProfile)\n")
    lines.append(top_table(stats, "cumulative", top, count))
    lines.append("\n### Python: top functions by own time (cProfile)\n")
    lines.append(top_table(stats, "tottime", top, count))
    return lines


if __name__ == "__main__":
    main()

"""`make bench`: this project's runtime and DBOS Transact (latest 3.x, in its own virtual
environment, since both install a `dbos` command) run the same workloads against one fresh
Postgres (default durability, fsync on) in the same run, next to what Postgres itself can do.
Writes bench/results/latest.md (workload, ours, peer, ratio, floor) and bench/results/ratios.png,
then a section on parked waits (bench/parked.py: 10,000 sleeping workflows, and 10,000 waiting in
recv, each set in one process; --quick: 2,000; DBOS Transact at 2,000, quick 1,000), and one on
garbage collection under load (bench/gc_bench.py: 1,000,000 finished workflows deleted in batches
while a workload checkpoints; --quick: 100,000).

    python bench/compare.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gc_bench
import parked
import psycopg
from psycopg import sql

from runtime.embedded import EmbeddedPostgres, _bin_dir

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
PEER_VENV = ROOT / ".bench" / "peer-venv"
PEER_SPEC = "dbos>=3,<4"
# Parked waits (bench/parked.py): workflows per workload, ours and the peer's (full, quick).
PARKED_N = {"ours": (10_000, 2_000), "peer": (2_000, 1_000)}
PARKED_PEER_NOTE = (
    "DBOS Transact runs these at a smaller N: with its default executor each waiting workflow "
    "holds a thread. At N = 10,000 (`python bench/parked.py --system peer --n 10000`, run on a "
    "2-core machine on 2026-11-29) it started the sleepers at 90 wf/s and the receivers at "
    "29 wf/s, held 10,009 threads and 550-590 MB, and was not done within the budget: 200 s after "
    "T only 3 of the 10,000 sleepers had finished (their 10,000 threads woke together on a pool "
    "of 20 connections: 673 'Database connection pool exhausted' warnings), and 8,920 of the "
    "10,000 receivers 200 s after the first send; the whole run took 18 minutes."
)

# A target gets the row's medians (ours, peer) and the run's context: the Postgres floor
# ("insert_commit_ms") and our own medians ("ours.KEY"); it returns its goal and whether it is met.
Target = Callable[[float, float, dict[str, float]], tuple[str, bool]]

# Every server of the run: pg_stat_statements for the statement counts, room for the clients.
SETTINGS = {"shared_preload_libraries": "'pg_stat_statements'", "max_connections": "300"}


def _at_most(limit: float, unit: str) -> Target:
    return lambda ours, _peer, _ctx: (f"< {limit:g} {unit}", ours < limit)


def _times_peer(factor: float) -> Target:
    return lambda ours, peer, _ctx: (f">= {factor:g}x peer", ours >= factor * peer)


def _times_floor(factor: float) -> Target:
    """At most ``factor`` times Postgres's own INSERT+COMMIT latency in the same run."""

    def target(ours: float, _peer: float, ctx: dict[str, float]) -> tuple[str, bool]:
        limit = factor * ctx["insert_commit_ms"]
        return f"<= {factor:g}x floor ({limit:.3f} ms)", ours <= limit

    return target


def _throughput(factor: float, absolute: float) -> Target:
    def target(ours: float, peer: float, _ctx: dict[str, float]) -> tuple[str, bool]:
        return f">= {factor:g}x peer and >= {absolute:,.0f} wf/s", (
            ours >= factor * peer and ours >= absolute
        )

    return target


def _share_of(key: str, share: float, what: str) -> Target:
    """At least ``share`` of our own figure ``key`` in the same run."""

    def target(ours: float, _peer: float, ctx: dict[str, float]) -> tuple[str, bool]:
        mine = ours / ctx[f"ours.{key}"]
        return f">= {share:.0%} of {what} (now {mine:.0%})", mine >= share

    return target


# (key, label, unit, higher is better, the target if it sets one). The targets are issue
# 22's where it sets one (per-step overhead, throughput, queue drain, send to recv, recovery of
# 10,000), earlier issues' elsewhere.
ROWS: list[tuple[str, str, str, bool, Target | None]] = [
    ("seq_0_ms", "workflow, 0 steps, sequential", "ms", False, None),
    ("seq_1_ms", "workflow, 1 step, sequential", "ms", False, None),
    ("seq_10_ms", "workflow, 10 steps, sequential", "ms", False, None),
    ("per_step_ms", "per-step overhead, sequential", "ms", False, _times_floor(1.2)),
    (
        "statements_per_step",
        "statements (round trips) per step",
        "",
        False,
        lambda ours, _peer, _ctx: ("at most 1", round(ours, 1) <= 1.0),
    ),
    (
        "statements_per_3_step_workflow",
        "statements per 3-step workflow, sequential",
        "",
        False,
        None,
    ),
    (
        "wal_bytes_per_3_step_workflow",
        "WAL bytes per 3-step workflow (sequential, after a checkpoint)",
        "B",
        False,
        None,
    ),
    (
        "throughput_wps",
        "throughput, 3-step workflows, 32 threads",
        "wf/s",
        True,
        _throughput(20, 1500),
    ),
    ("steps_per_s", "steps/s in that run", "steps/s", True, None),
    ("python_cpu_ms_per_wf", "Python CPU per workflow in that run", "ms", False, None),
    ("postgres_cpu_ms_per_wf", "Postgres CPU per workflow in that run", "ms", False, None),
    ("statements_per_wf_32", "statements per workflow in that run", "", False, None),
    ("wal_bytes_per_wf_32", "WAL bytes per workflow in that run", "B", False, None),
    (
        "drain_wps",
        "queue drain, 3-step workflows, concurrency 32 (one thread enqueues meanwhile)",
        "wf/s",
        True,
        _share_of("throughput_wps", 0.9, "our direct starts"),
    ),
    (
        "drain_backlog_wps",
        "queue drain of a backlog (enqueued before), concurrency 32",
        "wf/s",
        True,
        _share_of("throughput_wps", 0.9, "our direct starts"),
    ),
    (
        "enqueue_to_start_ms",
        "enqueue to start, idle queue (median)",
        "ms",
        False,
        _at_most(10, "ms"),
    ),
    (
        "send_recv_median_ms",
        "send to waiting recv, other process (median)",
        "ms",
        False,
        _at_most(1.5, "ms"),
    ),
    ("send_recv_p99_ms", "send to waiting recv, other process (p99)", "ms", False, None),
    (
        "recovery_1k_s",
        "recover 1,000 PENDING workflows of a killed process (quick: 200)",
        "s",
        False,
        _at_most(1.5, "s"),
    ),
    (
        "recovery_10k_s",
        "recover 10,000 PENDING workflows (ours only)",
        "s",
        False,
        _at_most(5, "s"),
    ),
    (
        "version_s",
        "`dbos --version` (peer: `dbos version`), whole process",
        "s",
        False,
        _at_most(0.25, "s"),
    ),
    ("list_10k_s", "`dbos workflow list`, 10k workflows", "s", False, _at_most(0.3, "s")),
    ("list_status_10k_s", "`dbos workflow list -S ERROR`, 10k", "s", False, None),
    ("list_100k_s", "`dbos workflow list`, 100k workflows", "s", False, None),
    ("list_status_100k_s", "`dbos workflow list -S ERROR`, 100k", "s", False, None),
    ("list_1m_s", "`dbos workflow list`, 1M workflows", "s", False, _at_most(0.5, "s")),
    ("list_status_1m_s", "`dbos workflow list -S ERROR`, 1M", "s", False, None),
]


def stat(value: Any) -> tuple[float, float, float]:
    """Median, min and max of a figure's samples (a single number is its own sample)."""
    samples = value if isinstance(value, list) else [value]
    return statistics.median(samples), min(samples), max(samples)


def peer_python() -> str:
    """DBOS Transact's interpreter, in a virtual environment of its own (made on first use)."""
    python = PEER_VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(PEER_VENV)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", PEER_SPEC, "matplotlib"], check=True
        )
    return str(python)


def floor(url: str, seconds: int) -> dict[str, float]:
    """Single-row INSERT + COMMIT: latency with 1 client (psycopg), commits/s with 1 and 32
    clients (pgbench with a custom script)."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS floor (id bigserial PRIMARY KEY, v text)")
        samples = []
        for _ in range(500):
            t0 = time.perf_counter()
            conn.execute("INSERT INTO floor (v) VALUES (%s)", ("x",))
            samples.append((time.perf_counter() - t0) * 1000)
    samples.sort()
    out = {"insert_commit_ms": samples[len(samples) // 2]}
    script = Path(tempfile.mkstemp(suffix=".sql")[1])
    script.write_text("INSERT INTO floor (v) VALUES ('x');\n")
    for clients in (1, 32):
        result = subprocess.run(
            [
                str(_bin_dir() / "pgbench"),
                "-n",
                "-f",
                str(script),
                "-c",
                str(clients),
                "-j",
                str(min(clients, 2)),
                "-T",
                str(seconds),
                url,
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        tps = [ln for ln in result.stdout.splitlines() if ln.startswith("tps")]
        out[f"commits_per_s_{clients}"] = float(tps[0].split("=")[1].split()[0])
    return out


def run_system(python: str, system: str, url: str, quick: bool) -> dict[str, Any]:
    args = [python, str(ROOT / "bench" / "workloads.py"), "--system", system, "--url", url]
    result = subprocess.run(
        args + (["--quick"] if quick else []), capture_output=True, text=True, cwd=ROOT
    )
    if result.returncode != 0:
        raise SystemExit(f"{system} workloads failed:\n{result.stderr[-3000:]}")
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


def recovery(python: str, system: str, url: str, count: int) -> float:
    """Seconds for a fresh process to finish ``count`` PENDING workflows left by a killed one."""
    script = [python, str(ROOT / "bench" / "workloads.py"), "--system", system, "--url", url]
    seed = subprocess.Popen(
        [*script, "--mode", "recovery-seed", "--count", str(count)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert seed.stdout is not None
    for line in seed.stdout:
        if line.startswith("SEEDED"):
            break
    with psycopg.connect(url) as conn:  # every start recorded: the workflows are PENDING
        while True:
            row = conn.execute(
                "SELECT count(*) FROM dbos.workflow_status WHERE name LIKE '%%recoverable' "
                "AND status = 'PENDING'"
            ).fetchone()
            if row and row[0] >= count:
                break
            time.sleep(0.1)
    seed.kill()
    seed.wait()
    run = subprocess.run(
        [*script, "--mode", "recovery-run", "--count", str(count)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    if run.returncode != 0:
        raise SystemExit(f"{system} recovery failed:\n{run.stderr[-3000:]}")
    return float(json.loads(run.stdout.strip().splitlines()[-1])["recovery_s"])


def fill(conn: psycopg.Connection[Any], start: int, stop: int) -> None:
    """Clone a system's one real workflow row into rows ``start`` .. ``stop`` - 1, whatever that
    system's other columns are: only the columns both schemas share (workflow_uuid, status,
    created_at) change. The table's secondary indexes are dropped for the fill and rebuilt after
    (minutes faster at 1M rows; the listing then reads the same indexes as in production)."""
    columns = [
        str(r[0])
        for r in conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = 'dbos' "
            "AND table_name = 'workflow_status' ORDER BY ordinal_position"
        ).fetchall()
    ]
    changed = {
        "workflow_uuid": sql.SQL("'fill-' || i"),
        "status": sql.SQL("(ARRAY['SUCCESS', 'SUCCESS', 'SUCCESS', 'ERROR'])[1 + i %% 4]"),
        "created_at": sql.SQL("t.created_at + i"),
    }
    select = sql.SQL(", ").join(
        changed.get(c, sql.SQL("t.{}").format(sql.Identifier(c))) for c in columns
    )
    indexes = conn.execute(
        "SELECT i.indexname, i.indexdef FROM pg_indexes i WHERE i.schemaname = 'dbos' "
        "AND i.tablename = 'workflow_status' AND NOT EXISTS "
        "(SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname)"
    ).fetchall()
    for name, _ in indexes:
        conn.execute(sql.SQL("DROP INDEX dbos.{}").format(sql.Identifier(name)))
    conn.execute(
        sql.SQL(
            "INSERT INTO dbos.workflow_status SELECT {} FROM (SELECT * FROM dbos.workflow_status "
            "WHERE workflow_uuid NOT LIKE 'fill-%%' LIMIT 1) t, "
            "generate_series(%s::bigint, %s::bigint) AS i"
        ).format(select),
        (start, stop - 1),
    )
    for _, definition in indexes:
        conn.execute(definition)  # Postgres's own definition of an index it had
    conn.execute("VACUUM ANALYZE dbos.workflow_status")


def settle(conn: psycopg.Connection[Any], timeout_s: float = 120.0) -> None:
    """Let the server finish the work the bench itself left behind (the dirty pages of a fill,
    autovacuum of the workloads' tables) before a whole-process timing, so that the timing is
    of the command, not of background I/O: a CHECKPOINT, then no autovacuum worker running
    (waited for up to ``timeout_s``)."""
    conn.execute("CHECKPOINT")
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'autovacuum worker'"
        ).fetchone()
        if not row or not row[0]:
            return
        time.sleep(0.5)


def whole_process(command: list[str], runs: int = 5) -> list[float]:
    """Wall-clock seconds of a command, run ``runs`` times."""
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(command, capture_output=True, check=True)
        times.append(time.perf_counter() - t0)
    return times


def listing(bin_dir: Path, system: str, url: str, sizes: list[int]) -> dict[str, Any]:
    """`dbos workflow list` as a whole process (default and -S ERROR) over each of ``sizes``
    workflows, and `dbos --version`."""
    script = [sys.executable if system == "ours" else str(bin_dir / "python")]
    seed = subprocess.run(
        [
            *script,
            str(ROOT / "bench" / "workloads.py"),
            "--system",
            system,
            "--url",
            url,
            "--mode",
            "recovery-run",
            "--count",
            "0",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    if seed.returncode != 0:
        raise SystemExit(seed.stderr[-2000:])
    if system == "ours":
        # Measured as installed from a wheel, which is byte-compiled (an editable checkout may
        # not be, when PYTHONDONTWRITEBYTECODE is set); the peer's site-packages already are.
        subprocess.run(
            [sys.executable, "-m", "compileall", "-q", "runtime", "dbos_cli"], cwd=ROOT, check=True
        )
    exe = str(bin_dir / "dbos")
    flag = "--db-url" if system == "ours" else "-s"
    version = "--version" if system == "ours" else "version"  # DBOS Transact has no --version
    with psycopg.connect(url, autocommit=True) as conn:
        settle(conn)
        out: dict[str, Any] = {"version_s": whole_process([exe, version])}
        row = conn.execute("SELECT count(*) FROM dbos.workflow_status").fetchone()
        have = int(row[0]) if row else 0
        if not have:
            raise SystemExit(f"{system}: no workflow to clone")
        for size in sizes:
            fill(conn, have, size)
            settle(conn)
            have = size
            label = {10_000: "10k", 100_000: "100k", 1_000_000: "1m"}[size]
            out[f"list_{label}_s"] = whole_process([exe, "workflow", "list", flag, url])
            out[f"list_status_{label}_s"] = whole_process(
                [exe, "workflow", "list", flag, url, "-S", "ERROR"]
            )
    return out


def fmt(value: float) -> str:
    return f"{value:.3f}" if value < 1 else f"{value:.2f}" if value < 100 else f"{value:.0f}"


def cell(value: Any, unit: str) -> str:
    """ "median unit (min-max)" when there are several samples."""
    mid, low, high = stat(value)
    text = f"{fmt(mid)} {unit}".strip()
    if isinstance(value, list) and len(value) > 1:
        text += f" ({fmt(low)}–{fmt(high)})"
    return text


def table(ours: dict[str, Any], peer: dict[str, Any], base: dict[str, float]) -> str:
    lines = [
        "Each cell: median (min–max) of the repetitions; latencies over their samples.",
        "",
        "| workload | ours | DBOS Transact | ours vs peer | Postgres floor | target |",
        "|---|---|---|---|---|---|",
    ]
    ctx = {"insert_commit_ms": base["insert_commit_ms"]}
    ctx.update(
        {
            f"ours.{k}": stat(v)[0]
            for k, v in ours.items()
            if isinstance(v, (int, float, list)) and v
        }
    )
    for key, label, unit, higher, target in ROWS:
        a, b = ours.get(key), peer.get(key)
        if a is None:
            continue
        mid_a = stat(a)[0]
        mid_b = stat(b)[0] if b is not None else None
        ratio = ""
        if mid_b:
            times = mid_a / mid_b if higher else mid_b / mid_a
            ratio = f"{times:.1f}x better" if times >= 1 else f"{1 / times:.1f}x worse"
        floor_text = ""
        if unit == "ms" and key.startswith(("seq_", "per_step", "send_recv")):
            floor_text = f"{base['insert_commit_ms']:.3f} ms per INSERT+COMMIT"
        if unit == "wf/s":
            floor_text = f"{base['commits_per_s_32']:.0f} commits/s (32 clients)"
        target_text = ""
        if target is not None:
            goal, met = target(mid_a, mid_b if mid_b is not None else float("nan"), ctx)
            target_text = f"{goal}: {'met' if met else 'NOT met'}"
        lines.append(
            f"| {label} | {cell(a, unit)} | {cell(b, unit) if b is not None else ''} | "
            f"{ratio} | {floor_text} | {target_text} |"
        )
    lines.append(
        f"| Postgres: INSERT+COMMIT, 1 client | {base['insert_commit_ms']:.3f} ms | | | "
        f"{base['commits_per_s_1']:.0f} commits/s (1 client), "
        f"{base['commits_per_s_32']:.0f} (32 clients) | |"
    )
    return "\n".join(lines)


CHART = """
import json, sys
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
rows = json.loads(sys.argv[1])
labels = [r[0] for r in rows]; ratios = [r[1] for r in rows]
fig, ax = plt.subplots(figsize=(9, 0.45 * len(rows) + 1.2))
ax.barh(labels, ratios, color="#54aeff")
ax.axvline(1, color="#cf222e", linewidth=1)
ax.set_xscale("log"); ax.invert_yaxis(); ax.set_xlim(0.8, max(ratios) * 4)
ax.set_xlabel("ours vs DBOS Transact (x better, log scale; red line: equal)")
for i, r in enumerate(ratios):
    ax.text(r, i, f" {r:.1f}x", va="center")
fig.tight_layout(); fig.savefig(sys.argv[2], dpi=110)
"""


def chart(python: str, ours: dict[str, Any], peer: dict[str, Any]) -> None:
    rows = []
    for key, label, _unit, higher, _target in ROWS:
        a, b = ours.get(key), peer.get(key)
        if a is not None and b is not None:
            mid_a, mid_b = stat(a)[0], stat(b)[0]
            if mid_a and mid_b:
                rows.append((label, mid_a / mid_b if higher else mid_b / mid_a))
    subprocess.run([python, "-c", CHART, json.dumps(rows), str(RESULTS / "ratios.png")], check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer iterations (a few minutes)")
    parser.add_argument(
        "--from-json",
        action="store_true",
        help="only re-render the table and chart from bench/results/latest.json",
    )
    options = parser.parse_args()
    if options.from_json:
        saved = json.loads((RESULTS / "latest.json").read_text())
        render_results(
            peer_python(),
            saved["ours"],
            saved["peer"],
            saved["floor"],
            saved.get("parked"),
            saved.get("gc"),
        )
        return
    python = peer_python()
    base_dir = Path(tempfile.mkdtemp(prefix="dbos-compare-"))
    server = EmbeddedPostgres(base_dir, settings=SETTINGS)
    url = server.start()
    try:
        root = url.rsplit("/", 1)[0]
        with psycopg.connect(url, autocommit=True) as conn:
            for name in ("bench_ours", "bench_peer", "bench_floor"):
                conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
                conn.execute(f'CREATE DATABASE "{name}"')
        base = floor(f"{root}/bench_floor", 5 if options.quick else 15)
        peer = run_system(python, "peer", f"{root}/bench_peer", options.quick)
        ours = run_system(sys.executable, "ours", f"{root}/bench_ours", options.quick)
        with psycopg.connect(url, autocommit=True) as conn:
            for name in ("rec_ours", "rec_peer", "rec_ours_10k"):
                conn.execute(f'CREATE DATABASE "{name}"')
        count = 200 if options.quick else 1000
        peer["recovery_1k_s"] = recovery(python, "peer", f"{root}/rec_peer", count)
        ours["recovery_1k_s"] = recovery(sys.executable, "ours", f"{root}/rec_ours", count)
        if not options.quick:
            ours["recovery_10k_s"] = recovery(
                sys.executable, "ours", f"{root}/rec_ours_10k", 10_000
            )
        # The listings reuse the recovery databases (real workflow rows of each system).
        sizes = [10_000, 100_000] + ([] if options.quick else [1_000_000])
        ours.update(listing(Path(sys.executable).parent, "ours", f"{root}/rec_ours", sizes))
        peer.update(listing(Path(python).parent, "peer", f"{root}/rec_peer", sizes))
    finally:
        server.stop()
    # Parked waits and garbage collection on a fresh server: on the one above, the vacuum and
    # checkpoints that follow the listings' million-row fills ran into them (the sleepers started
    # at 285 wf/s there against 676 alone).
    server = EmbeddedPostgres(Path(tempfile.mkdtemp(prefix="dbos-compare-")), settings=SETTINGS)
    url = server.start()
    try:
        # Each workload in a fresh process and database; a child that overruns its budget is
        # killed and reported as such (DBOS Transact holds a thread per waiting workflow).
        pick = 1 if options.quick else 0
        waits = {
            "ours": parked.measure("ours", url, PARKED_N["ours"][pick]),
            "peer": parked.measure("peer", url, PARKED_N["peer"][pick], python=python),
        }
        # Garbage collection under load (ours only: bench/gc_bench.py): 1,000,000 finished
        # workflows (quick: 100,000) deleted while a workload checkpoints.
        collected = gc_bench.run(url, gc_bench.GC_N[pick], baseline_s=gc_bench.BASELINE_S[pick])
    finally:
        server.stop()
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "latest.json").write_text(
        json.dumps(
            {"ours": ours, "peer": peer, "floor": base, "parked": waits, "gc": collected},
            indent=2,
        )
    )
    render_results(python, ours, peer, base, waits, collected)


def render_results(
    python: str,
    ours: dict[str, Any],
    peer: dict[str, Any],
    base: dict[str, float],
    waits: dict[str, Any] | None = None,
    collected: dict[str, Any] | None = None,
) -> None:
    """Write bench/results/latest.md and ratios.png from the measurements."""
    text = table(ours, peer, base)
    if waits is not None:
        peer_waits = waits.get("peer")
        note = PARKED_PEER_NOTE if peer_waits and peer_waits["n"] < waits["ours"]["n"] else ""
        text += "\n\n## Parked waits\n\n" + parked.render(waits["ours"], peer_waits, note)
    if collected is not None:
        text += f"\n\n## {gc_bench.TITLE}\n\n" + gc_bench.render(collected)
    (RESULTS / "latest.md").write_text(
        "# Benchmark: ours vs DBOS Transact (same Postgres, same run)\n\n" + text + "\n"
    )
    chart(python, ours, peer)
    print(text)


if __name__ == "__main__":
    main()

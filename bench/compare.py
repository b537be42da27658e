"""`make bench`: this project's runtime and DBOS Transact (latest 3.x, in its own virtual
environment, since both install a `dbos` command) run the same workloads against one fresh
Postgres (default durability, fsync on) in the same run, next to what Postgres itself can do.
Writes bench/results/latest.md (workload, ours, peer, ratio, floor) and bench/results/ratios.png.

    python bench/compare.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg

from runtime.embedded import EmbeddedPostgres, _bin_dir

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
PEER_VENV = ROOT / ".bench" / "peer-venv"
PEER_SPEC = "dbos>=3,<4"

# (key, label, unit, higher is better)
ROWS = [
    ("seq_0_ms", "workflow, 0 steps, sequential", "ms", False),
    ("seq_1_ms", "workflow, 1 step, sequential", "ms", False),
    ("seq_10_ms", "workflow, 10 steps, sequential", "ms", False),
    ("per_step_ms", "per-step overhead", "ms", False),
    ("statements_per_3_step_workflow", "statements per 3-step workflow", "", False),
    ("throughput_wps", "throughput, 3-step workflows, 32 threads", "wf/s", True),
    ("drain_wps", "queue drain, 3-step workflows, concurrency 32", "wf/s", True),
    ("enqueue_to_start_ms", "enqueue to start, idle queue (median)", "ms", False),
    ("send_recv_median_ms", "send to waiting recv, other process (median)", "ms", False),
    ("send_recv_p99_ms", "send to waiting recv, other process (p99)", "ms", False),
    (
        "recovery_1k_s",
        "recover a killed process's PENDING workflows (1,000; quick 200)",
        "s",
        False,
    ),
    ("list_s", "`dbos workflow list`, whole process (1M workflows; quick 100k)", "s", False),
    ("list_status_s", "`dbos workflow list -S ERROR`, whole process (same)", "s", False),
]


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


# Clone the one real workflow row of a system N times, whatever that system's other columns are:
# only the names both schemas share (workflow_uuid, status, created_at) change.
FILL = """
INSERT INTO dbos.workflow_status
SELECT (jsonb_populate_record(NULL::dbos.workflow_status, to_jsonb(t) || jsonb_build_object(
    'workflow_uuid', 'fill-' || i,
    'status', (ARRAY['SUCCESS', 'SUCCESS', 'SUCCESS', 'ERROR'])[1 + i %% 4],
    'created_at', t.created_at + i))).*
FROM (SELECT * FROM dbos.workflow_status LIMIT 1) t, generate_series(1, %s) AS i
"""


def listing(bin_dir: Path, system: str, url: str, count: int) -> dict[str, float]:
    """`dbos workflow list` as a whole process over ``count`` workflows: default and -S ERROR."""
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
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM dbos.workflow_status").fetchone()
        if not row or not row[0]:  # nothing to clone yet: one real workflow first
            raise SystemExit(f"{system}: no workflow to clone")
        conn.execute(FILL, (count,))
        conn.execute("ANALYZE dbos.workflow_status")
    exe = str(bin_dir / "dbos")
    flag = "--db-url" if system == "ours" else "-s"
    out = {}
    for label, extra in (("default", []), ("status", ["-S", "ERROR"])):
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            subprocess.run(
                [exe, "workflow", "list", flag, url, *extra], capture_output=True, check=True
            )
            times.append(time.perf_counter() - t0)
        out[label] = sorted(times)[1]
    return out


def table(ours: dict[str, Any], peer: dict[str, Any], base: dict[str, float]) -> str:
    lines = [
        "| workload | ours | DBOS Transact | ours vs peer | Postgres floor |",
        "|---|---|---|---|---|",
    ]
    for key, label, unit, higher in ROWS:
        a, b = ours.get(key), peer.get(key)
        if a is None or b is None:
            continue
        ratio = (a / b if higher else b / a) if a and b else float("nan")
        floor_text = ""
        if unit == "ms" and "ms" in key and key != "enqueue_to_start_ms":
            floor_text = f"{base['insert_commit_ms']:.3f} ms per INSERT+COMMIT"
        if unit == "wf/s":
            floor_text = f"{base['commits_per_s_32']:.0f} commits/s (32 clients)"
        lines.append(
            f"| {label} | {a:.2f} {unit} | {b:.2f} {unit} | {ratio:.1f}x better | {floor_text} |"
        )
    if "recovery_10k_s" in ours:
        lines.append(
            "| recover 10,000 PENDING workflows (ours only) | "
            f"{ours['recovery_10k_s']:.2f} s | | | |"
        )
    lines.append(
        f"| Postgres: INSERT+COMMIT, 1 client | {base['insert_commit_ms']:.3f} ms | | | "
        f"{base['commits_per_s_1']:.0f} commits/s (1 client), "
        f"{base['commits_per_s_32']:.0f} (32 clients) |"
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
ax.set_xscale("log"); ax.invert_yaxis()
ax.set_xlabel("ours vs DBOS Transact (x better, log scale; red line: equal)")
for i, r in enumerate(ratios):
    ax.text(r, i, f" {r:.1f}x", va="center")
fig.tight_layout(); fig.savefig(sys.argv[2], dpi=110)
"""


def chart(python: str, ours: dict[str, Any], peer: dict[str, Any]) -> None:
    rows = []
    for key, label, _unit, higher in ROWS:
        a, b = ours.get(key), peer.get(key)
        if a and b:
            rows.append((label, a / b if higher else b / a))
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
        render_results(peer_python(), saved["ours"], saved["peer"], saved["floor"])
        return
    python = peer_python()
    base_dir = Path(tempfile.mkdtemp(prefix="dbos-compare-"))
    server = EmbeddedPostgres(
        base_dir,
        settings={"shared_preload_libraries": "'pg_stat_statements'", "max_connections": "300"},
    )
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
        n = 100_000 if options.quick else 1_000_000
        mine = listing(Path(sys.executable).parent, "ours", f"{root}/rec_ours", n)
        theirs = listing(Path(python).parent, "peer", f"{root}/rec_peer", n)
        ours["list_s"], ours["list_status_s"] = mine["default"], mine["status"]
        peer["list_s"], peer["list_status_s"] = theirs["default"], theirs["status"]
    finally:
        server.stop()
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "latest.json").write_text(
        json.dumps({"ours": ours, "peer": peer, "floor": base}, indent=2)
    )
    render_results(python, ours, peer, base)


def render_results(
    python: str, ours: dict[str, Any], peer: dict[str, Any], base: dict[str, float]
) -> None:
    """Write bench/results/latest.md and ratios.png from the measurements."""
    text = table(ours, peer, base)
    (RESULTS / "latest.md").write_text(
        "# Benchmark: ours vs DBOS Transact (same Postgres, same run)\n\n" + text + "\n"
    )
    chart(python, ours, peer)
    print(text)


if __name__ == "__main__":
    main()

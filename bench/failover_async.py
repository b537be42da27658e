"""What a failover loses under ASYNCHRONOUS replication, measured (`make bench-failover-async`).

The chaos workload (tests/chaos: orders, families, messaging pairs, event readers, transactions)
runs on executors holding one multi-host URL, against a primary and an asynchronous streaming
standby (tests/replication.py). Every ``--every`` seconds the primary is SIGKILLed and the standby
promoted; no other fault is injected, so every difference is the failover's. Two scenarios:

- **in step**: the standby streams on loopback, microseconds behind (a healthy LAN);
- **held behind**: the primary's WAL sender is stopped for ``--lag`` seconds before the crash
  (a slow or partitioned link, a standby catching up after a restart), while the primary goes on
  acknowledging commits.

Per failover, just before the crash the harness reads from the old primary the workflows, their
statuses, the recorded step outcomes and the transaction ledger, and right after the promotion the
same from the new primary: what is missing was acknowledged to a client and is gone. After the
run: how many steps whose recorded outcome was lost ran again, how many transactions committed a
second time, and what the invariant checks found (lost messages, workflows stuck PENDING...).
The same run under synchronous replication (`make chaos-failover`) must show zeros.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.chaos.harness import run  # noqa: E402 (the project's root first)

# No fault but the failovers: the other kinds would blur whose loss is whose.
NEVER = (1e9, 1e9)
LOSS_KEYS = (
    "workflows_lost",
    "finished_reverted",
    "step_outcomes_lost",
    "transactions_lost",
    "attempt_rows_lost",
)


def scenario(name: str, seconds: float, every: float, lag: float, seed: int) -> dict[str, Any]:
    report = run(
        seconds,
        seed,
        executors=2,
        fault_every=NEVER,
        operator=False,
        replication="async",
        failover_every=(every, every * 1.25),
        failover_lag=lag,
        drain_timeout=60,
    )
    summary = report.summary()
    totals = {k: sum(int(f.get(k, 0)) for f in report.failovers) for k in LOSS_KEYS}
    return {
        "scenario": name,
        "lag_s": lag,
        "failovers": report.failovers,
        "totals": totals,
        "reruns": report.reruns,
        "workflows": summary["workflows"],
        "violations": report.violations,
    }


def markdown(results: list[dict[str, Any]]) -> str:
    lines = [
        "# Failover under asynchronous replication",
        "",
        "Produced by `make bench-failover-async` (bench/failover_async.py): the chaos workload on "
        "two executors, a primary and an asynchronous standby on loopback, the primary SIGKILLed "
        "and the standby promoted periodically, no other fault. Lost = acknowledged by the old "
        "primary (present there just before the crash), absent on the new one.",
        "",
        "| scenario | failovers | workflows | WAL not received (bytes, per failover) | workflows "
        "lost | finished then not | step outcomes lost | tx commits lost | steps run again | "
        "tx committed again | promotion (s) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        fo = r["failovers"]
        t = r["totals"]
        lines.append(
            f"| {r['scenario']} (lag {r['lag_s']:g} s) | {len(fo)} | {r['workflows']} | "
            f"{', '.join(str(f['lost_wal_bytes']) for f in fo)} | {t['workflows_lost']} | "
            f"{t['finished_reverted']} | {t['step_outcomes_lost']} | {t['transactions_lost']} | "
            f"{r['reruns'].get('steps_run_again', 0)} | "
            f"{r['reruns'].get('transactions_committed_again', 0)} | "
            f"{', '.join(str(f['promoted_s']) for f in fo)} |"
        )
    lines += ["", "What the invariant checks found afterwards:", ""]
    for r in results:
        lines.append(f"- {r['scenario']}: {len(r['violations'])} violations")
        lines += [f"  - {v[:240]}" for v in r["violations"][:8]]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=75, help="length of each scenario")
    parser.add_argument("--every", type=float, default=20, help="seconds between failovers")
    parser.add_argument("--lag", type=float, default=2.0, help="held-behind scenario's lag (s)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--markdown", help="write the table here")
    parser.add_argument("--json", dest="json_out", help="write the figures here")
    args = parser.parse_args()
    results = [
        scenario("in step", args.seconds, args.every, 0.0, args.seed),
        scenario("held behind", args.seconds, args.every, args.lag, args.seed + 1),
    ]
    text = markdown(results)
    print(text)
    if args.markdown:
        Path(args.markdown).write_text(text)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

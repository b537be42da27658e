"""The scripted demo behind `make demo`: run the checkout app, SIGKILL it in the middle of the
checkouts, start it again, and show that every checkout finished exactly once.

Everything runs on the embedded Postgres of this folder (.dbos/pgdata): nothing to set up.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parent.parent
DBOS = str(Path(sys.executable).with_name("dbos"))
APP = "examples/checkout.py"


def banner(text: str) -> None:
    print(f"\n\033[1m== {text}\033[0m", flush=True)


def run_app(env: dict[str, str], kill_when: str | None) -> int:
    """Run `dbos start` on the app, echoing its output; SIGKILL it when `kill_when` is printed, or
    stop it with SIGINT once every checkout is done."""
    proc = subprocess.Popen(
        [DBOS, "start", APP],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        print(line, end="", flush=True)
        if kill_when and kill_when in line:
            time.sleep(0.3)
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            banner(f"killed the app (SIGKILL, pid {proc.pid}) in the middle of the checkouts")
            return proc.returncode
        if "ALL CHECKOUTS DONE" in line:
            proc.send_signal(signal.SIGINT)
    return proc.wait()


def main() -> None:
    # DBOS_DATABASE_URL is honoured (the test suite runs the demo on its own server); with none,
    # the app and this script use the embedded Postgres of the project folder.
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("DBOS_") or k == "DBOS_DATABASE_URL"
    }
    run = f"run{int(time.time())}"
    env.update(CHECKOUT_RUN=run, CHECKOUT_STEP_SECONDS="1.0", PYTHONUNBUFFERED="1")

    banner("1. starting the checkout app on the embedded Postgres (it will be killed mid-run)")
    run_app(env, kill_when="charging card")
    banner("2. starting it again: recovery resumes each checkout from its last completed step")
    code = run_app(env, kill_when=None)
    if code != 0:
        sys.exit(f"the app exited with {code}")

    url = (
        env.get("DBOS_DATABASE_URL")
        or subprocess.run(
            [DBOS, "postgres", "url"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
    )
    with psycopg.connect(url) as conn:
        this_run = (f"{run}-%",)
        purchases = conn.execute(
            "SELECT customer FROM purchases WHERE order_id LIKE %s", this_run
        ).fetchall()
        charges = conn.execute(
            "SELECT customer, count(*) FROM charges WHERE order_id LIKE %s "
            "GROUP BY customer ORDER BY customer",
            this_run,
        ).fetchall()
        steps = conn.execute(
            "SELECT count(*) FROM dbos.operation_outputs WHERE workflow_uuid LIKE %s",
            (f"{run}-%",),
        ).fetchone()
    banner("3. the outcome")
    print(f"  recorded steps of this run: {steps[0] if steps else 0}")
    print(f"  card charges per customer: {dict(charges)}")
    print(f"  tickets issued: {sorted(p[0] for p in purchases)}")
    charged = dict(charges)
    issued = sorted(p[0] for p in purchases)
    if charged != {"alice": 1, "bob": 1, "carol": 1} or issued != ["alice", "carol"]:
        sys.exit("UNEXPECTED OUTCOME: a card was charged twice or a ticket is missing")
    print("  bob's card was declined, so his reservation was released; no card was charged twice.")
    if not env.get("DBOS_DATABASE_URL"):
        print(
            f"\nThe embedded Postgres keeps running ({url}, data in .dbos/pgdata) so the next run "
            "starts fast; stop it with `.venv/bin/dbos postgres stop`."
        )


if __name__ == "__main__":
    main()

"""Failover: executors on a primary with a synchronous streaming standby (``tests.replication``),
all holding one multi-host URL with ``target_session_attrs=read-write``; the primary is SIGKILLed
mid-run and the standby promoted. Every executor reconnects to the new primary on its own, its
LISTEN connection too, and carries on; every workflow completes exactly once; the CLI and
``DBOSClient`` work against the new primary with the same URL. The chaos run does the same with
other faults around two failovers."""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path

import psycopg

from runtime import DBOSClient
from tests.chaos import failover, invariants
from tests.chaos.harness import FAULTS, Chaos, Report, run
from tests.chaos.operators import ACTIONS
from tests.cli_helpers import dbos

# How long a parked recv waits for a message when its process's listener is down or lost the
# notification: the sweep (2 s not listening, 30 s listening). A wake well under it came from a
# notification on the reconnected LISTEN connection.
WOKEN_WITHIN_S = 1.5


def _listeners(url: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND backend_type = 'client backend' AND query LIKE 'LISTEN%'"
        ).fetchone()
    return int(row[0]) if row else 0


def _status(url: str, wid: str) -> str | None:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT status FROM dbos.workflow_status WHERE workflow_uuid = %s", (wid,)
        ).fetchone()
    return str(row[0]) if row else None


def _wait(predicate: object, timeout: float, what: str) -> float:
    started = time.monotonic()
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() - started < timeout, f"timed out waiting for {what}"
        time.sleep(0.05)
    return time.monotonic() - started


def test_executors_carry_on_after_the_primary_is_killed_and_the_standby_promoted() -> None:
    workdir = Path(tempfile.mkdtemp(prefix="dbos-failover-"))
    chaos = Chaos(3, workdir, 2, {}, operator=False, kinds=["kill"], replication="sync")
    url = chaos.url
    assert chaos.cluster is not None
    first_primary = chaos.cluster.primary.port
    try:
        for executor in chaos.executors:
            executor.start()
        for executor in chaos.executors:
            assert executor.serving(60), executor.log()
        with DBOSClient(url) as client:
            receivers = [
                client.enqueue({"workflow_name": "receiver", "queue_name": "chaos_free"}, 1)
                for _ in range(3)
            ]
            for _ in range(3):
                chaos.feed(client, batch=4)
        ids = [h.workflow_id for h in receivers]
        for wid in ids:
            chaos.receivers[wid] = 1

        def mid_run() -> bool:
            with psycopg.connect(url) as conn:
                row = conn.execute(
                    "SELECT count(*) FILTER (WHERE status = 'SUCCESS'), "
                    "count(*) FILTER (WHERE status = 'PENDING') FROM dbos.workflow_status"
                ).fetchone()
            return row is not None and row[0] >= 5 and row[1] >= 5

        _wait(mid_run, 60, "the workload to be under way")
        # The receivers wait long enough to have parked (given their threads back).
        time.sleep(1.2)
        chaos.fail_over()
        assert chaos.cluster.primary.port != first_primary
        figures = chaos.report.failovers[0]
        assert figures.get("step_outcomes_lost") == 0, figures
        promoted_ms = int((figures["at"] + figures["promoted_s"]) * 1000)

        # Every executor carries on on the new primary, its LISTEN connection back.
        carried_on = failover.wait_carried_on(url, promoted_ms, timeout=60)
        assert carried_on is not None, "no step recorded after the promotion"
        _wait(lambda: _listeners(url) >= len(chaos.executors), 30, "the listeners to reconnect")

        # A message sent now wakes its parked receiver through the LISTEN connection.
        woken = []
        with DBOSClient(url) as client:
            for wid in ids:
                assert _status(url, wid) == "PENDING"
                sent = time.monotonic()
                client.send(wid, f"{wid}:0", topic="m")
                _wait(lambda w=wid: _status(url, w) == "SUCCESS", 30, f"receiver {wid}")
                woken.append(time.monotonic() - sent)
            # The client and the CLI, same URL, on the new primary.
            assert client.retrieve_workflow(ids[0]).get_status().status == "SUCCESS"
            assert {w.workflow_id for w in client.list_workflows(workflow_ids=ids)} == set(ids)
        assert max(woken) < WOKEN_WITHIN_S, woken
        listed = dbos("workflow", "list", "--db-url", url, "--json", "--limit", "1000")
        assert listed.returncode == 0, listed.stderr
        assert set(ids) <= {w["workflow_id"] for w in json.loads(listed.stdout)}

        chaos.settle_executors()
        chaos.drain(120)
        invariants.check(chaos)
        print(json.dumps({"failover": figures, "carried_on_s": carried_on, "woken_s": woken}))
        assert chaos.report.violations == [], chaos.report.violations
        assert chaos.report.workflows >= 30
    finally:
        chaos.close()
        if not chaos.report.violations:
            shutil.rmtree(workdir, ignore_errors=True)


def _covered(report: Report) -> bool:
    kinds = set(report.faults)
    return report.faults["failover"] >= 2 and len(kinds & (set(FAULTS) | set(ACTIONS))) >= 4


def test_short_chaos_run_with_failovers_keeps_every_invariant() -> None:
    report = run(
        40,
        seed=20261130,
        executors=2,
        fault_every=(1.5, 3.0),
        replication="sync",
        failover_every=(12.0, 18.0),
        covered=_covered,
        drain_timeout=120,
    )
    summary = report.summary()
    print(json.dumps(summary))
    assert report.violations == [], summary
    assert report.faults["failover"] >= 2, summary
    assert report.workflows >= 50
    for figures in report.failovers:
        assert figures["workflows_lost"] == figures["step_outcomes_lost"] == 0, figures

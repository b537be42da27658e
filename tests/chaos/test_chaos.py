"""A short chaos run inside `make test` (the long one is `make chaos`), and proof that the harness
catches a real bug: a build whose replay ignores recorded outcomes fails it."""

from __future__ import annotations

import json

from tests.chaos.harness import FAULTS, run


def test_short_chaos_run_keeps_every_invariant() -> None:
    report = run(60, seed=20261121, fault_every=(1.5, 4.0))
    summary = report.summary()
    print(json.dumps(summary))
    assert report.violations == [], summary
    assert report.workflows >= 100
    assert summary["faults_total"] >= 10
    assert len(report.faults) >= 4, f"too few kinds of fault: {dict(report.faults)} of {FAULTS}"


def test_harness_fails_a_build_whose_replay_ignores_recorded_outcomes() -> None:
    report = run(
        25, seed=5, fault_every=(1.0, 2.5), env={"CHAOS_BREAK": "replay"}, drain_timeout=25
    )
    assert report.violations, "the broken build passed the harness"

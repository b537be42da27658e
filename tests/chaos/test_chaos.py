"""A short chaos run inside `make test` (the long ones are `make chaos` and `make chaos-ops`), and
proof that the harness catches real bugs: a build whose replay ignores recorded outcomes, and a
build with the queue claim of #15 (which a nested-loop plan lets claim more than its limit), both
fail it. (The claim race of #15 item 3 depends on thread timing; tests/test_operators.py and
tests/test_operator_model.py catch it.)"""

from __future__ import annotations

import json

from tests.chaos.harness import FAULTS, Report, run
from tests.chaos.operators import ACTIONS


def _covered(report: Report) -> bool:
    """Enough faults, and of enough kinds, for the run to prove something."""
    summary = report.summary()
    kinds = set(report.faults)
    return (
        summary["faults_total"] >= 15
        and summary["operator_actions"] >= 5
        and len(kinds & set(FAULTS)) >= 4
        and len(kinds & set(ACTIONS)) >= 3
    )


def test_short_chaos_run_keeps_every_invariant() -> None:
    # At least 60 s, and on until the faults cover enough (a loaded machine injects fewer faults
    # in a minute: the test asks for coverage, not for a speed).
    report = run(60, seed=20261121, fault_every=(1.0, 3.0), covered=_covered)
    summary = report.summary()
    print(json.dumps(summary))
    assert report.violations == [], summary
    assert report.workflows >= 100
    assert summary["faults_total"] >= 15
    assert summary["operator_actions"] >= 5
    kinds = set(report.faults)
    assert len(kinds & set(FAULTS)) >= 4, f"too few kinds of fault: {dict(report.faults)}"
    assert len(kinds & set(ACTIONS)) >= 3, f"too few operator actions: {dict(report.faults)}"


def test_harness_fails_a_build_whose_replay_ignores_recorded_outcomes() -> None:
    report = run(
        25, seed=5, fault_every=(1.0, 2.5), env={"CHAOS_BREAK": "replay"}, drain_timeout=25
    )
    assert report.violations, "the broken build passed the harness"


def test_harness_fails_a_build_with_the_old_queue_claim() -> None:
    report = run(
        25, seed=11, fault_every=(1.0, 2.5), env={"CHAOS_BREAK": "dequeue"}, drain_timeout=40
    )
    print(json.dumps(report.summary()))
    assert any("at once" in v or "within" in v for v in report.violations), report.violations

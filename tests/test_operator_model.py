"""A property-based test (hypothesis's stateful testing) of the runtime under operators: random
sequences of start, step, cancel, resume, fork, restart, kill-and-recover and deadline expiry,
on the real runtime and database, checked against a small model of the allowed status
transitions and of which steps may run.

Each workflow's steps wait at a gate that the test opens one step at a time, so the test decides
where a workflow is when an operator acts on it. The model:

- SUCCESS and ERROR are final: a workflow that reached one never leaves it.
- CANCELLED happens only to a workflow the test cancelled or that had a deadline.
- A step's body never starts after its outcome was recorded; it runs more than once only if a
  run of it was cut short by a kill (in flight at the crash) or by the runtime stopping it.
- A fork never runs the steps it copied.
- Once every gate is open and every cancelled workflow resumed, every workflow ends SUCCESS with
  the result its code computes (deadline-bound ones may stay CANCELLED).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    multiple,
    rule,
    run_state_machine_as_test,
)

from runtime import DBOS, SetWorkflowID, SetWorkflowTimeout
from tests.conftest import TEMPLATE, with_database

FINAL = {"SUCCESS", "ERROR"}


class Gates:
    """One gate per (workflow, runtime generation): a step body waits for a permit. A crash opens
    every gate of the old generation, so its zombie threads finish their step and stop."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.generation = 0
        self.gates: dict[tuple[str, int], threading.Semaphore] = {}
        self.all_open = False

    def reset(self) -> None:
        with self.lock:
            self.gates.clear()
            self.all_open = False

    def gate(self, wid: str, generation: int) -> threading.Semaphore:
        with self.lock:
            key = (wid, generation)
            if key not in self.gates:
                self.gates[key] = threading.Semaphore(1000 if self.all_open else 0)
            return self.gates[key]

    def allow(self, wid: str, n: int = 1) -> None:
        with self.lock:
            key = (wid, self.generation)
            gate = self.gates.setdefault(key, threading.Semaphore(0))
        for _ in range(n):
            gate.release()

    def open_all(self) -> None:
        with self.lock:
            self.all_open = True
            gates = list(self.gates.values())
        for gate in gates:
            for _ in range(1000):
                gate.release()

    def new_generation(self) -> None:
        with self.lock:
            old = [g for (_, gen), g in self.gates.items() if gen == self.generation]
            self.generation += 1
        for gate in old:
            for _ in range(1000):
                gate.release()


GATES = Gates()
# (workflow, step, generation, started, ended or None), appended by step bodies.
LEDGER: list[list[Any]] = []
LEDGER_LOCK = threading.Lock()


@DBOS.step()
def gated_step(i: int) -> int:
    wid = DBOS.workflow_id or ""
    generation = GATES.generation
    entry: list[Any] = [wid, DBOS.step_id, generation, int(time.time() * 1000), None]
    with LEDGER_LOCK:
        LEDGER.append(entry)
    GATES.gate(wid, generation).acquire(timeout=30)
    entry[4] = int(time.time() * 1000)
    return i * i


@DBOS.workflow()
def modelled(n: int, child_n: int) -> int:
    # A parent starts its child first (so the child's ID is "<parent>-1"), then waits for it last.
    child = DBOS.start_workflow(modelled, child_n, 0) if child_n else None
    total = sum(gated_step(i) for i in range(n))
    return total + (child.get_result() if child is not None else 0)


def expected(n: int, child_n: int) -> int:
    return sum(i * i for i in range(n)) + sum(i * i for i in range(child_n))


class OperatorModel(RuleBasedStateMachine):
    """The runtime under an operator, against the model in the module docstring."""

    server_url = ""

    workflows = Bundle("workflows")

    def __init__(self) -> None:
        super().__init__()
        name = f"m_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.server_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{TEMPLATE}"')
        self.db_name = name
        self.url = with_database(self.server_url, name)
        # IDs unique to this example: a thread left over from an earlier one cannot pass for ours.
        self.tag = name[2:8]
        self.params: dict[str, tuple[int, int]] = {}  # workflow -> (its steps, its child's)
        self.cancelled: set[str] = set()
        self.deadline: set[str] = set()
        self.forks: dict[str, int] = {}  # fork -> first step it runs itself
        self.final: dict[str, str] = {}
        self.in_flight_at_crash: Counter[tuple[str, int]] = Counter()
        with LEDGER_LOCK:
            LEDGER.clear()
        GATES.reset()
        self.launch()

    def launch(self) -> None:
        DBOS.destroy()
        DBOS(
            config={  # type: ignore[typeddict-unknown-key]
                "name": "model",
                "database_url": self.url,
                "executor_id": "local",
                "application_version": "model",
            }
        )
        DBOS.launch()

    # -- rules ------------------------------------------------------------------------------------

    @initialize(target=workflows, n=st.integers(1, 3), child_n=st.integers(0, 2))
    def first(self, n: int, child_n: int) -> Any:
        return self.start(n, child_n, None)

    @rule(
        target=workflows,
        n=st.integers(1, 3),
        child_n=st.integers(0, 2),
        timeout=st.none() | st.sampled_from([0.2, 0.6]),
    )
    def start(self, n: int, child_n: int, timeout: float | None) -> Any:
        wid = f"w{self.tag}{len(self.params)}"
        with SetWorkflowID(wid), SetWorkflowTimeout(timeout):
            DBOS.start_workflow(modelled, n, child_n)
        self.params[wid] = (n, child_n)
        started = [wid]
        if child_n:
            started.append(f"{wid}-1")
            self.params[f"{wid}-1"] = (child_n, 0)
        if timeout is not None:
            self.deadline.update(started)  # a child inherits its parent's deadline
        return multiple(*started)

    @rule(wid=workflows, n=st.integers(1, 3))
    def step(self, wid: str, n: int) -> None:
        GATES.allow(wid, n)
        time.sleep(0.02)

    @rule(wid=workflows)
    def cancel(self, wid: str) -> None:
        DBOS.cancel_workflow(wid)
        status = DBOS.get_workflow_status(wid)
        if status is not None and status.status == "CANCELLED":
            self.cancelled.add(wid)

    @rule(wid=workflows)
    def resume(self, wid: str) -> None:
        DBOS.resume_workflow(wid)

    @rule(target=workflows, wid=workflows, start=st.integers(1, 5))
    def fork(self, wid: str, start: int) -> str:
        recorded = len(DBOS.list_workflow_steps(wid))
        start = min(start, recorded + 1)
        new_id = f"f{self.tag}{len(self.params)}"
        with SetWorkflowID(new_id):
            DBOS.fork_workflow(wid, start)
        self.params[new_id] = self.params[wid]
        self.forks[new_id] = start
        if wid in self.deadline:
            self.deadline.update((new_id, f"{new_id}-1"))  # a fork keeps its timeout
        return new_id

    @rule(target=workflows, wid=consumes(workflows))
    def restart(self, wid: str) -> Any:
        new_id = DBOS.restart_workflow(wid).workflow_id
        self.params[new_id] = self.params[wid]
        self.forks[new_id] = 1
        if wid in self.deadline:
            self.deadline.update((new_id, f"{new_id}-1"))
        return multiple(wid, new_id)

    @rule()
    def kill_and_recover(self) -> None:
        DBOS.destroy()  # after this, no step body of this runtime begins (its threads stop first)
        with LEDGER_LOCK:
            for wid, fid, generation, _, ended in LEDGER:
                if ended is None and generation == GATES.generation:
                    self.in_flight_at_crash[(wid, fid)] += 1
        with psycopg.connect(self.url, autocommit=True) as conn:  # the process is gone
            conn.execute(
                "UPDATE dbos.executors SET stopped_at = "
                "(extract(epoch FROM clock_timestamp()) * 1000)::bigint WHERE stopped_at IS NULL"
            )
        GATES.new_generation()
        self.launch()

    @rule()
    def pass_time(self) -> None:
        time.sleep(0.3)  # deadlines expire; released steps finish

    # -- the model --------------------------------------------------------------------------------

    def _statuses(self) -> dict[str, str]:
        with psycopg.connect(self.url) as conn:
            return dict(
                conn.execute("SELECT workflow_uuid, status FROM dbos.workflow_status").fetchall()
            )

    @invariant()
    def statuses_follow_the_model(self) -> None:
        for wid, status in self._statuses().items():
            if wid in self.final:
                assert status == self.final[wid], f"{wid} left {self.final[wid]} for {status}"
            elif status in FINAL:
                self.final[wid] = status
            if status == "CANCELLED":
                assert wid in self.cancelled or wid in self.deadline, f"{wid} CANCELLED by itself"
            assert status != "ERROR", f"{wid} ended ERROR"

    @invariant()
    def steps_run_as_the_model_allows(self) -> None:
        with psycopg.connect(self.url) as conn:
            recorded = {
                (w, int(f)): int(t)
                for w, f, t in conn.execute(
                    "SELECT workflow_uuid, function_id, completed_at_epoch_ms "
                    "FROM dbos.operation_outputs"
                ).fetchall()
            }
        with LEDGER_LOCK:
            entries = [tuple(e) for e in LEDGER]
        runs: Counter[tuple[str, int]] = Counter()
        for wid, fid, _, started, _ in entries:
            runs[(wid, fid)] += 1
            assert fid >= self.forks.get(wid, 1), f"fork {wid} ran its copied step {fid}"
            done = recorded.get((wid, fid))
            assert done is None or started <= done, f"{wid} step {fid} ran after its record"
        for key, n in runs.items():
            assert n <= 1 + self.in_flight_at_crash[key], f"{key} ran {n} times"

    def teardown(self) -> None:
        try:
            GATES.open_all()
            for wid, status in self._statuses().items():
                if status == "CANCELLED" and wid not in self.deadline:
                    DBOS.resume_workflow(wid)
            for wid, (n, child_n) in self.params.items():
                deadline = time.monotonic() + 20
                while True:
                    status = DBOS.get_workflow_status(wid)
                    assert status is not None
                    if status.status == "SUCCESS":
                        assert status.output == expected(n, child_n)
                        break
                    if status.status == "CANCELLED" and wid in self.deadline:
                        break
                    assert time.monotonic() < deadline, f"{wid} stuck {status.status}"
                    time.sleep(0.05)
            self.steps_run_as_the_model_allows()
        finally:
            DBOS.destroy()
            with psycopg.connect(self.server_url, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{self.db_name}" WITH (FORCE)')


@pytest.mark.timeout(600)
def test_operators_against_the_model(pg_server_url: str, template_url: str) -> None:
    OperatorModel.server_url = pg_server_url
    run_state_machine_as_test(
        OperatorModel,
        settings=settings(
            max_examples=25,
            stateful_step_count=12,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
        ),
    )

"""Workflows, steps and transactions as methods: `@DBOS.dbos_class`, `DBOSConfiguredInstance`.

An instance method's workflow records (class_name, config_name) instead of the instance; every
re-run (recovery after SIGKILL, dequeue, resume, fork) finds the instance again by those names,
and nothing ever runs on another instance, or on none."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest

from runtime import (
    DBOS,
    DBOSConfiguredInstance,
    DBOSException,
    Queue,
    SetWorkflowID,
    WorkflowStatusString,
)
from tests.apps.classes_app import CLASSES_DDL

Launch = Callable[..., None]
ROOT = Path(__file__).resolve().parent.parent
APP = [sys.executable, "-m", "tests.apps.classes_app"]


def _rows(db_url: str, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(db_url) as conn:
        return conn.execute(sql, params).fetchall()


def _result(handle: Any, timeout: float = 30.0) -> Any:
    """The workflow's result, or a failure (not a hang) when it does not finish in time."""
    end = time.monotonic() + timeout
    while handle.get_status().status not in ("SUCCESS", "ERROR"):
        assert time.monotonic() < end, f"workflow {handle.workflow_id} did not finish"
        time.sleep(0.02)
    return handle.get_result()


class Loose:
    """A class not registered with ``@DBOS.dbos_class`` whose classmethod is a step."""

    bonus = 7

    @classmethod
    @DBOS.step()
    def add(cls, units: int) -> int:
        return cls.bonus + units


def _make_account_class(db_url: str) -> type[Any]:
    """A configured class of this test, whose step and transaction record which instance ran."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(CLASSES_DDL)

    @DBOS.dbos_class()
    class Account(DBOSConfiguredInstance):
        def __init__(self, owner: str) -> None:
            super().__init__(config_name=owner)
            self.owner = owner
            self.step_calls = 0

        @DBOS.step()
        def note(self, op: int) -> str:
            self.step_calls += 1
            return f"{self.owner}:step{op}"

        @DBOS.transaction()
        def book(self, op: int) -> str:
            DBOS.sql_session.execute(
                "INSERT INTO class_ledger (workflow_id, op, kind, instance, pid) "
                "VALUES (%s, %s, 'tx', %s, %s)",
                (DBOS.workflow_id, op, self.owner, os.getpid()),
            )
            return f"{self.owner}:tx{op}"

        @DBOS.workflow()
        def transfer(self, amount: int) -> list[str]:
            return [self.note(1), self.book(2), f"{self.owner}:{amount}"]

    return Account


def test_instance_method_workflow_started_directly_via_start_workflow_and_via_a_queue(
    launch_dbos: Launch, db_url: str
) -> None:
    Account = _make_account_class(db_url)
    alice, bob = Account("alice"), Account("bob")
    queue = Queue("classes-q")
    launch_dbos()

    with SetWorkflowID("direct"):
        assert alice.transfer(5) == ["alice:step1", "alice:tx2", "alice:5"]
    started = DBOS.start_workflow(bob.transfer, 6)
    assert _result(started) == ["bob:step1", "bob:tx2", "bob:6"]
    queued = queue.enqueue(alice.transfer, 7)
    assert _result(queued) == ["alice:step1", "alice:tx2", "alice:7"]

    status = DBOS.get_workflow_status("direct")
    assert status is not None
    # The instance is recorded by name, never stored as an input.
    assert status.input == {"args": [5], "kwargs": {}}
    assert status.class_name == Account.__qualname__
    assert status.config_name == "alice"
    assert started.get_status().config_name == "bob"
    assert queued.get_status().config_name == "alice"
    listed = {w.workflow_id: w.config_name for w in DBOS.list_workflows()}
    assert listed["direct"] == "alice" and listed[started.workflow_id] == "bob"
    # Each transaction ran on its own instance, once.
    ledger = _rows(db_url, "SELECT workflow_id, instance FROM class_ledger ORDER BY id")
    assert ledger == [
        ("direct", "alice"),
        (started.workflow_id, "bob"),
        (queued.workflow_id, "alice"),
    ]
    assert (alice.step_calls, bob.step_calls) == (2, 1)


def test_fork_and_resume_run_on_the_recorded_instance(launch_dbos: Launch, db_url: str) -> None:
    Account = _make_account_class(db_url)
    Account("carol")
    dave = Account("dave")
    launch_dbos()
    with SetWorkflowID("orig"):
        assert dave.transfer(1) == ["dave:step1", "dave:tx2", "dave:1"]
    # From step 2 on, the fork runs again: on dave, found by the recorded names.
    forked = DBOS.fork_workflow("orig", 2)
    assert _result(forked) == ["dave:step1", "dave:tx2", "dave:1"]
    assert forked.get_status().config_name == "dave"
    assert dave.step_calls == 1  # step 1 was copied, not run again
    ledger = _rows(db_url, "SELECT workflow_id, instance FROM class_ledger ORDER BY id")
    assert ledger == [("orig", "dave"), (forked.workflow_id, "dave")]

    # A cancelled one resumed (its run dequeued from the internal queue) finds dave again.
    gate = threading.Event()

    @DBOS.dbos_class()
    class Waiter(DBOSConfiguredInstance):
        @DBOS.workflow()
        def wait(self) -> str:
            DBOS.sleep(0.01)
            gate.wait(10)
            return f"waited on {self.config_name}"

    w = Waiter("w1")
    Waiter("w2")
    handle = DBOS.start_workflow(w.wait)
    DBOS.cancel_workflow(handle.workflow_id)
    gate.set()
    resumed = DBOS.resume_workflow(handle.workflow_id)
    assert _result(resumed) == "waited on w1"


def test_parked_instance_workflows_go_on_on_their_own_instance(launch_dbos: Launch) -> None:
    @DBOS.dbos_class()
    class Inbox(DBOSConfiguredInstance):
        def __init__(self, owner: str) -> None:
            super().__init__(config_name=owner)
            self.owner = owner

        @DBOS.workflow()
        def receive(self) -> str:
            message = DBOS.recv("mail", timeout_seconds=60)
            return f"{self.owner} got {message}"

    first, second = Inbox("first"), Inbox("second")
    launch_dbos(max_executor_threads=2)
    handles = [DBOS.start_workflow(first.receive), DBOS.start_workflow(second.receive)]
    parking = DBOS._rt().engine.parking
    end = time.monotonic() + 20
    while parking.count() < 2:  # both gave back their thread; a wake re-runs them from the record
        assert time.monotonic() < end, "the workflows did not park"
        time.sleep(0.02)
    DBOS.send(handles[1].workflow_id, "m2", topic="mail")
    DBOS.send(handles[0].workflow_id, "m1", topic="mail")
    assert [_result(h) for h in handles] == ["first got m1", "second got m2"]


def test_classmethod_workflow_via_enqueue_and_start_workflow(launch_dbos: Launch) -> None:
    @DBOS.dbos_class("Pricing")
    class Pricing:
        rate = 3

        @classmethod
        @DBOS.workflow()
        def price(cls, units: int) -> int:
            return cls.rate * units

        @staticmethod
        @DBOS.workflow()
        def double(units: int) -> int:
            return 2 * units

    queue = Queue("classmethod-q")
    launch_dbos()
    queued = queue.enqueue(Pricing.price, 4)
    assert _result(queued) == 12
    status = queued.get_status()
    assert status.class_name == "Pricing" and status.config_name is None
    assert status.input == {"args": [4], "kwargs": {}}
    assert _result(DBOS.start_workflow(Pricing.price, 5)) == 15
    assert _result(queue.enqueue(Pricing.double, 6)) == 12


def test_step_and_transaction_methods_started_or_enqueued_run_on_their_instance(
    launch_dbos: Launch, db_url: str
) -> None:
    Account = _make_account_class(db_url)
    fay, gus = Account("fay"), Account("gus")
    queue = Queue("method-steps-q")
    launch_dbos()

    handles = {
        "step-started": DBOS.start_workflow(fay.note, 1),
        "step-enqueued": DBOS.enqueue_workflow("method-steps-q", gus.note, 2),
        "tx-started": DBOS.start_workflow(gus.book, 3),
        "tx-enqueued": queue.enqueue(fay.book, 4),
    }
    results = {k: _result(h) for k, h in handles.items()}
    assert results == {
        "step-started": "fay:step1",
        "step-enqueued": "gus:step2",
        "tx-started": "gus:tx3",
        "tx-enqueued": "fay:tx4",
    }
    # Each is the one-step workflow of its method, recording its instance by name (never as an
    # input), so that a re-run finds the instance again.
    for key, owner, method in [
        ("step-started", "fay", "note"),
        ("step-enqueued", "gus", "note"),
        ("tx-started", "gus", "book"),
        ("tx-enqueued", "fay", "book"),
    ]:
        status = handles[key].get_status()
        assert status.name == f"<temp>.{Account.__qualname__}.{method}"
        assert (status.class_name, status.config_name) == (Account.__qualname__, owner)
        assert status.input is not None and len(status.input["args"]) == 1
        steps = DBOS.list_workflow_steps(handles[key].workflow_id)
        assert [s["function_name"] for s in steps] == [f"{Account.__qualname__}.{method}"]
    ledger = _rows(db_url, "SELECT workflow_id, op, instance FROM class_ledger ORDER BY op")
    assert ledger == [
        (handles["tx-started"].workflow_id, 3, "gus"),
        (handles["tx-enqueued"].workflow_id, 4, "fay"),
    ]
    assert (fay.step_calls, gus.step_calls) == (1, 1)


def test_transaction_method_called_outside_a_workflow_commits_once_per_workflow_id(
    launch_dbos: Launch, db_url: str
) -> None:
    Account = _make_account_class(db_url)
    hal = Account("hal")
    launch_dbos()

    for _ in range(2):  # the second call returns the recorded result, committing nothing
        with SetWorkflowID("direct-tx"):
            assert hal.book(5) == "hal:tx5"
    assert hal.book(6) == "hal:tx6"  # without an ID: a workflow of its own, runs
    status = DBOS.get_workflow_status("direct-tx")
    assert status is not None and status.status == "SUCCESS"
    assert status.name == f"<temp>.{Account.__qualname__}.book"
    assert (status.class_name, status.config_name) == (Account.__qualname__, "hal")
    ledger = _rows(db_url, "SELECT workflow_id, op, instance FROM class_ledger ORDER BY id")
    assert ledger[0] == ("direct-tx", 5, "hal") and len(ledger) == 2
    assert ledger[1][1:] == (6, "hal") and ledger[1][0] != "direct-tx"


def test_class_and_static_method_steps_and_transactions_start_as_workflows(
    launch_dbos: Launch,
) -> None:
    @DBOS.dbos_class("Rates")
    class Rates:
        rate = 4

        @classmethod
        @DBOS.step()
        def scaled(cls, units: int) -> int:
            return cls.rate * units

        @DBOS.transaction()
        @classmethod
        def scaled_tx(cls, units: int) -> int:
            return cls.rate * units + 1

        @staticmethod
        @DBOS.step()
        def plain(units: int) -> int:
            return units + 100

    queue = Queue("class-steps-q")
    launch_dbos()
    h = DBOS.start_workflow(Rates.scaled, 2)
    assert _result(h) == 8
    status = h.get_status()
    assert (status.class_name, status.config_name) == ("Rates", None)
    assert status.input == {"args": [2], "kwargs": {}}
    assert _result(queue.enqueue(Rates.scaled_tx, 3)) == 13
    assert Rates.scaled_tx(1) == 5  # outside a workflow: its one-step workflow
    assert _result(DBOS.start_workflow(Rates.plain, 1)) == 101
    loose = queue.enqueue(Loose.add, 1)  # no @DBOS.dbos_class: found by module:Qualname
    assert _result(loose) == 8
    assert loose.get_status().input == {"args": [1], "kwargs": {}}


def test_step_and_transaction_methods_of_unregistered_classes_are_refused(
    launch_dbos: Launch, db_url: str
) -> None:
    class Plain:
        @DBOS.step()
        def step_m(self) -> int:
            return 1

        @DBOS.transaction()
        def tx_m(self) -> int:
            return 2

    plain = Plain()
    launch_dbos()
    with pytest.raises(DBOSException, match="not properly registered"):
        DBOS.start_workflow(plain.step_m)
    with pytest.raises(DBOSException, match="not properly registered"):
        plain.tx_m()  # outside a workflow a transaction is a workflow: DBOS refuses it too
    assert _rows(db_url, "SELECT count(*) FROM dbos.workflow_status") == [(0,)]
    assert plain.step_m() == 1  # a step called outside a workflow just runs


def test_two_instances_with_one_config_name_are_refused(db_url: str) -> None:
    Account = _make_account_class(db_url)
    Account("erin")
    with pytest.raises(DBOSException, match="Duplicate instance registration"):
        Account("erin")
    with pytest.raises(DBOSException, match="config_name"):
        Account("")


def test_instance_methods_that_could_not_be_recovered_are_refused_before_recording(
    launch_dbos: Launch, db_url: str
) -> None:
    class Undecorated(DBOSConfiguredInstance):
        @DBOS.workflow()
        def run(self) -> str:
            return "ran"

    @DBOS.dbos_class()
    class NoConfig:
        @DBOS.workflow()
        def run(self) -> str:
            return "ran"

    @DBOS.dbos_class()
    class Sneaky(DBOSConfiguredInstance):
        @DBOS.workflow()
        def run(self) -> str:
            return f"ran on {self.config_name}"

    undecorated = Undecorated("u")
    registered = Sneaky("same")
    impostor = object.__new__(Sneaky)
    impostor.config_name = "same"  # looks like the registered one, but is not it
    unregistered = object.__new__(Sneaky)
    unregistered.config_name = "nobody"
    queue = Queue("refusals")
    launch_dbos()

    with pytest.raises(DBOSException, match="not properly registered"):
        undecorated.run()
    with pytest.raises(DBOSException, match="does not have `config_name` set"):
        DBOS.start_workflow(NoConfig().run)
    with pytest.raises(DBOSException, match="another object is registered"):
        queue.enqueue(impostor.run)
    with pytest.raises(DBOSException, match="no instance is registered"):
        unregistered.run()
    assert _rows(db_url, "SELECT count(*) FROM dbos.workflow_status") == [(0,)]
    assert registered.run() == "ran on same"

    with pytest.raises(DBOSException, match="cannot be used as scheduled"):

        class Ticker(DBOSConfiguredInstance):
            @DBOS.scheduled("* * * * *")
            @DBOS.workflow()
            def tick(self, scheduled: Any, actual: Any) -> None:
                return None


def test_two_classes_cannot_share_a_class_name() -> None:
    @DBOS.dbos_class("Shared")
    class First:
        pass

    with pytest.raises(DBOSException, match="Duplicate type registration"):

        @DBOS.dbos_class("Shared")
        class Second:
            pass


# -- real processes ------------------------------------------------------------------------------


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DBOS", "HOLD_", "WAIT_"))}
    env["PYTHONPATH"] = str(ROOT)
    env.update(extra)
    return env


def _app(mode: str, db_url: str, names: str, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*APP, mode, db_url, names],
        env=_env(**extra),
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )


def _ledger(db_url: str) -> list[tuple[str, int, str, str]]:
    return [
        (str(w), int(op), str(kind), str(inst))
        for w, op, kind, inst in _rows(
            db_url, "SELECT workflow_id, op, kind, instance FROM class_ledger ORDER BY id"
        )
    ]


@pytest.fixture
def classes_db(db_url: str) -> str:
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(CLASSES_DDL)
    return db_url


def test_sigkill_mid_workflow_then_each_workflow_recovers_onto_its_own_instance(
    classes_db: str,
) -> None:
    crashed = _app("start", classes_db, "alice,bob", HOLD_AFTER_2="1")
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    before = sorted(_ledger(classes_db))
    assert before == [
        ("wf-alice", 1, "step", "alice"),
        ("wf-alice", 2, "tx", "alice"),
        ("wf-bob", 1, "step", "bob"),
        ("wf-bob", 2, "tx", "bob"),
    ]

    # The successor creates the instances in the other order: names, not order, find them.
    restarted = _app("recover", classes_db, "bob,alice")
    assert restarted.returncode == 0, restarted.stderr
    assert json.loads(restarted.stdout) == {
        "wf-bob": ["bob:step1", "bob:tx2", "bob:step3", "bob:101"],
        "wf-alice": ["alice:step1", "alice:tx2", "alice:step3", "alice:100"],
    }
    # Steps 1 and 2 were not run again; step 3 ran once, on the right instance.
    assert sorted(_ledger(classes_db)) == sorted(
        [*before, ("wf-alice", 3, "step", "alice"), ("wf-bob", 3, "step", "bob")]
    )
    rows = _rows(
        classes_db,
        "SELECT workflow_uuid, class_name, config_name, inputs FROM dbos.workflow_status "
        "ORDER BY workflow_uuid",
    )
    assert [(r[0], r[1], r[2], json.loads(r[3])) for r in rows] == [
        ("wf-alice", "Account", "alice", {"args": [100], "kwargs": {}}),
        ("wf-bob", "Account", "bob", {"args": [101], "kwargs": {}}),
    ]


def test_a_workflow_whose_instance_is_missing_waits_for_a_process_that_has_it(
    classes_db: str,
) -> None:
    crashed = _app("start", classes_db, "alice,bob", HOLD_AFTER_2="1")
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr

    # This process has alice, and carol, but no bob: bob's workflow must not run here at all.
    partial = _app("recover", classes_db, "alice,carol", WAIT_FOR="alice")
    assert partial.returncode == 0, partial.stderr
    assert "configured class instance 'Account/bob'" in partial.stderr
    assert json.loads(partial.stdout) == {
        "wf-alice": ["alice:step1", "alice:tx2", "alice:step3", "alice:100"],
    }
    assert [r for r in _ledger(classes_db) if r[0] == "wf-bob"] == [
        ("wf-bob", 1, "step", "bob"),
        ("wf-bob", 2, "tx", "bob"),
    ]
    status = _rows(
        classes_db, "SELECT status FROM dbos.workflow_status WHERE workflow_uuid = 'wf-bob'"
    )
    assert status == [(WorkflowStatusString.PENDING.value,)]

    # A process that has bob recovers it, on bob.
    full = _app("recover", classes_db, "bob", WAIT_FOR="bob")
    assert full.returncode == 0, full.stderr
    assert json.loads(full.stdout) == {"wf-bob": ["bob:step1", "bob:tx2", "bob:step3", "bob:101"]}
    assert {r[3] for r in _ledger(classes_db) if r[0] == "wf-bob"} == {"bob"}


def test_destroy_registry_forgets_instances_and_queues(launch_dbos: Launch) -> None:
    """DBOS's test idiom: ``DBOS.destroy(destroy_registry=True)`` between tests, which then create
    the same configured instances and queues again."""

    @DBOS.dbos_class()
    class Again(DBOSConfiguredInstance):
        @DBOS.workflow()
        def hello(self) -> str:
            return f"hello from {self.config_name}"

    first = Again("again")
    Queue("again-queue")
    launch_dbos()
    assert first.hello() == "hello from again"
    DBOS.destroy(destroy_registry=True)
    second = Again("again")  # raised "Duplicate instance registration" before
    queue = Queue("again-queue")  # raised "already been declared" before
    launch_dbos()
    assert queue.enqueue(second.hello).get_result() == "hello from again"


def test_sigkill_in_a_step_method_started_alone_then_it_recovers_onto_its_own_instance(
    classes_db: str,
) -> None:
    crashed = _app("start-step", classes_db, "alice,bob", HOLD_IN_STEP="1")
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    assert sorted(_ledger(classes_db)) == [
        ("wf-alice", 7, "step", "alice"),
        ("wf-bob", 8, "step", "bob"),
    ]

    restarted = _app("recover", classes_db, "bob,alice")
    assert restarted.returncode == 0, restarted.stderr
    assert json.loads(restarted.stdout) == {"wf-bob": "bob:step8", "wf-alice": "alice:step7"}
    # The step never completed, so it ran again: on its own instance.
    assert sorted(_ledger(classes_db)) == [
        ("wf-alice", 7, "step", "alice"),
        ("wf-alice", 7, "step", "alice"),
        ("wf-bob", 8, "step", "bob"),
        ("wf-bob", 8, "step", "bob"),
    ]
    rows = _rows(
        classes_db,
        "SELECT workflow_uuid, name, class_name, config_name, inputs FROM dbos.workflow_status "
        "ORDER BY workflow_uuid",
    )
    assert [(r[0], r[1], r[2], r[3], json.loads(r[4])) for r in rows] == [
        ("wf-alice", "<temp>.Account.note", "Account", "alice", {"args": [7], "kwargs": {}}),
        ("wf-bob", "<temp>.Account.note", "Account", "bob", {"args": [8], "kwargs": {}}),
    ]

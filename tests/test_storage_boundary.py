"""The storage boundary: every public ``SystemDatabase`` method hands out named, typed values
(``None``, ``bool``, ``int``, ``str``, a frozen dataclass of ``runtime.system_db``, the public
``WorkflowStatus`` and ``StepInfo`` records, or lists and dicts of them), never a positional tuple
or a raw row, whose column order would be an unchecked contract between files.

Checked twice: on the annotations (so a new method cannot slip a tuple in), and on the values
the methods really return from a database (so an annotation cannot lie)."""

from __future__ import annotations

import dataclasses
import inspect
import os
import socket
import time
import types
import typing
from collections import defaultdict
from collections.abc import Callable
from typing import Any, Union

from runtime import serialization
from runtime.executor_db import ExecutorTable
from runtime.liveness import process_identity
from runtime.records import NewWorkflow
from runtime.status import StepInfo, WorkflowStatus
from runtime.system_db import SystemDatabase

# These hand out a connection for the caller's own statements (every method's pooled one, the
# heartbeat's dedicated one), not the result of a query.
CONNECTION_PROVIDERS = {"connection", "dedicated_connection"}
PUBLIC_RECORDS = (WorkflowStatus, StepInfo)
SCALARS = (type(None), bool, int, float, str)


# The classes of the storage boundary: the system tables, and the executors table.
BOUNDARY = (SystemDatabase, ExecutorTable)


def _public_methods() -> dict[str, Callable[..., Any]]:
    return {
        f"{cls.__name__}.{name}": member
        for cls in BOUNDARY
        for name, member in inspect.getmembers(cls, inspect.isfunction)
        if not name.startswith("_")
    }


def _type_problems(tp: Any) -> list[str]:
    """Why ``tp`` is not a storage-boundary type (empty when it is one)."""
    if tp is Any:
        return ["Any"]
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is tuple or origin is tuple:
        return [f"a tuple ({tp})"]
    if origin in (Union, types.UnionType):
        return [problem for arg in args for problem in _type_problems(arg)]
    if origin is list and args:
        return _type_problems(args[0])
    if origin is dict and args:
        key = [] if args[0] in (str, int) else [f"dict key {args[0]}"]
        return key + _type_problems(args[1])
    if tp in SCALARS or tp in PUBLIC_RECORDS:
        return []
    if isinstance(tp, type) and dataclasses.is_dataclass(tp) and tp.__module__ == "runtime.records":
        if not tp.__dataclass_params__.frozen:  # type: ignore[attr-defined]
            return [f"{tp.__name__} is not frozen"]
        hints = typing.get_type_hints(tp)
        return [
            f"{tp.__name__}.{field.name}: {problem}"
            for field in dataclasses.fields(tp)
            for problem in _type_problems(hints[field.name])
        ]
    return [f"{tp!r} is not a storage model"]


def test_public_methods_are_annotated_with_storage_models() -> None:
    problems = []
    for name, method in _public_methods().items():
        if name.split(".")[1] in CONNECTION_PROVIDERS:
            continue
        returns = typing.get_type_hints(method)["return"]
        problems += [f"{name} returns {p}" for p in _type_problems(returns)]
    assert not problems, "\n".join(problems)


def test_the_type_check_catches_tuples_rows_and_any() -> None:
    # The check above is only worth something if it says no to what it is meant to catch.
    Row = tuple[Any, ...]
    for bad in (
        Row,
        Row | None,
        list[Row],
        tuple[str, int] | None,
        list[tuple[str, int, int, int]],
        dict[str, tuple[int, int]],
        Any,
        list[Any],
        dict[str, Any],
    ):
        assert _type_problems(bad), bad
    assert not _type_problems(list[str] | None)
    assert not _type_problems(dict[str, dict[int, StepInfo]])


class _Recorder:
    """Calls through to a storage class, keeping every value its public methods return (by
    ``Class.method``, in ``returned``, which recorders may share)."""

    def __init__(self, target: Any, returned: dict[str, list[object]]) -> None:
        self.target = target
        self.returned = returned

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.target, name)
        if name.startswith("_") or not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            value = attr(*args, **kwargs)
            self.returned[f"{type(self.target).__name__}.{name}"].append(value)
            return value

        return call


def _tuples(value: object, path: str) -> list[str]:
    """Where in ``value`` (through lists, dicts and dataclass fields) a tuple sits."""
    if isinstance(value, tuple):
        return [f"{path}: a tuple {value!r}"]
    if isinstance(value, list):
        return [p for i, item in enumerate(value) for p in _tuples(item, f"{path}[{i}]")]
    if isinstance(value, dict):
        return [
            p
            for key, item in value.items()
            for p in _tuples(key, f"{path} key") + _tuples(item, f"{path}[{key!r}]")
        ]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return [
            p
            for field in dataclasses.fields(value)
            for p in _tuples(getattr(value, field.name), f"{path}.{field.name}")
        ]
    return []


# Reads that the scenario below makes return something (not None, not empty), so that a row
# shape is really seen.
READS = {
    "SystemDatabase.insert_workflow",
    "SystemDatabase.record_step",
    "SystemDatabase.get_step",
    "SystemDatabase.load_recorded_steps",
    "SystemDatabase.load_recorded_steps_batch",
    "SystemDatabase.set_event",
    "SystemDatabase.get_event",
    "SystemDatabase.send_from_outside",
    "SystemDatabase.recv",
    "SystemDatabase.send_from_workflow",
    "SystemDatabase.get_status_result",
    "SystemDatabase.load_workflows_to_run",
    "SystemDatabase.parked_wake_signals",
    "SystemDatabase.get_ownership",
    "SystemDatabase.get_workflow_status",
    "SystemDatabase.list_workflow_statuses",
    "SystemDatabase.get_steps",
    "SystemDatabase.wait_snapshots",
    "SystemDatabase.pending_workflow_ids",
    "SystemDatabase.claim_pending",
    "SystemDatabase.own_pending",
    "SystemDatabase.takeover_candidates",
    "SystemDatabase.queue_overview",
    "SystemDatabase.dequeue",
    "SystemDatabase.version_work",
    "ExecutorTable.list_recent",
    "ExecutorTable.heartbeat",
    "SystemDatabase.complete_workflow",
    "SystemDatabase.cancel_workflow",
    "SystemDatabase.resume_workflow",
}


def _exercise(db: Any, table: Any) -> None:
    """Every public method once at least, over data that makes the reads find rows."""
    now = int(time.time() * 1000)
    host, pid = socket.gethostname(), os.getpid()
    for process_id in ("proc-1", "proc-2"):  # proc-2: a live peer for proc-1's heartbeat
        table.register(process_id, "exec-1", host, pid, "v1", 60_000, process_identity())
    db.record_queue_config(
        [
            {
                "queue_name": "q",
                "concurrency": 2,
                "worker_concurrency": None,
                "limit_count": 10,
                "limit_period_s": 1.0,
                "priority_enabled": False,
                "application_version": "v1",
            }
        ]
    )
    inputs = serialization.serialize_args((1,), {"k": "v"})
    new = NewWorkflow(
        workflow_id="wf",
        status="PENDING",
        name="flow",
        class_name=None,
        inputs=inputs,
        executor_id="exec-1",
        application_version="v1",
        owner_process="proc-1",
    )
    epoch = db.insert_workflow(new).owner_epoch
    db.insert_workflow(new)  # the ID exists: what holds it
    db.record_step("wf", epoch, 1, "step", output=serialization.serialize(42), started_at_ms=now)
    # Owned by no process: a takeover candidate.
    db.insert_workflow(dataclasses.replace(new, workflow_id="orphan", owner_process=None))
    db.get_step("wf", 1)
    db.load_recorded_steps("wf")
    db.load_recorded_steps_batch(["wf"])
    db.set_event("wf", epoch, 2, now, "key", serialization.serialize("value"))
    db.get_event("wf", "key")
    db.get_event("wf", "unset")
    db.send_from_outside("wf", "topic", serialization.serialize("hello"), "once")
    db.recv("wf", epoch, 3, now, "topic")
    db.recv("wf", epoch, 4, now, "topic")  # nothing left
    db.send_from_workflow("wf", epoch, 5, now, "wf", "topic", serialization.serialize("again"))
    db.get_status_result("wf")
    db.get_status_result("no-such-workflow")
    db.load_workflows_to_run(["wf", "no-such-workflow"])
    db.send_from_outside("wf", "parked", serialization.serialize("wake"), None)
    db.parked_wake_signals(
        "proc-1",
        awaited=["wf"],
        parked=["wf"],
        messages=[("wf", "parked")],
        events=[("wf", "key")],
    )
    db.get_ownership("wf")
    db.get_workflow_status("wf")
    db.list_workflow_statuses(
        {}, sort_desc=True, limit=10, offset=None, load_input=True, load_output=True
    )
    db.get_steps("wf")
    db.wait_snapshots(["wf", "no-such-workflow"])
    db.pending_workflow_ids("exec-1", "v1")
    db.takeover_candidates("proc-3", "v1", 10)
    db.own_pending("proc-1", -60_000)
    [claimed] = db.claim_pending(
        ["wf"],
        executor_id="exec-1",
        process_id="proc-1",
        application_version="v1",
        default_max_attempts=10,
        reclaim_from="proc-1",
    )
    db.insert_workflow(
        NewWorkflow(
            workflow_id="queued",
            status="ENQUEUED",
            name="job",
            class_name=None,
            inputs=inputs,
            executor_id=None,
            application_version=None,
            queue_name="q",
        )
    )
    db.queue_overview()
    [dequeued] = db.dequeue(
        "q",
        executor_id="exec-1",
        process_id="proc-1",
        application_version="v1",
        names=["job"],
        max_claim=5,
        concurrency=2,
        limiter=(10, 1.0),
    ).workflows
    db.version_work()
    table.list_recent()
    db.complete_workflow(
        "wf", claimed.owner_epoch, "SUCCESS", output=serialization.serialize("done")
    )
    db.cancel_workflow("queued")
    db.release_workflow("queued", dequeued.claimed.owner_epoch, "proc-1")
    db.resume_workflow("queued", "_dbos_internal_queue")
    db.fork_workflow("wf", "wf-fork", 2, None, "_dbos_internal_queue")
    db.cancel_expired()
    db.release_abandoned("proc-1", [])
    conn = table.dedicated_connection()
    try:
        table.heartbeat("proc-1", conn)
        table.mark_gone(["proc-2"], conn)
        table.stop("proc-1", conn)
    finally:
        conn.close()


def _empty(value: object) -> bool:
    return value is None or value is False or value == [] or value == {} or value == 0


def test_returned_values_hold_no_tuples(db_url: str) -> None:
    sysdb = SystemDatabase(db_url, pool_size=2)
    returned: dict[str, list[object]] = defaultdict(list)
    db = _Recorder(sysdb, returned)
    try:
        _exercise(db, _Recorder(ExecutorTable(sysdb), returned))
    finally:
        sysdb.close()
    problems = [
        problem
        for name, values in db.returned.items()
        for value in values
        for problem in _tuples(value, name)
    ]
    assert not problems, "\n".join(problems)
    # Every method that returns something was called (a new one must be added to the scenario).
    returning = {
        name
        for name, method in _public_methods().items()
        if typing.get_type_hints(method)["return"] is not type(None)
    }
    returning = {name for name in returning if name.split(".")[1] not in CONNECTION_PROVIDERS}
    assert returning <= set(db.returned), sorted(returning - set(db.returned))
    # And each read found something, so its row shape was really decoded.
    silent = sorted(name for name in READS if all(_empty(v) for v in db.returned[name]))
    assert not silent, silent

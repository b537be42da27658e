"""Debouncing (``Debouncer``, ``DebouncerClient``) and workflow attributes
(``SetWorkflowAttributes``, ``update_workflow_attributes``, ``list_workflows(attributes=...)``,
``dbos workflow list --attr``), DBOS's names and semantics, against real Postgres."""

from __future__ import annotations

import asyncio
import json
import math
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
    DBOSClient,
    DBOSException,
    DBOSQueueDeduplicatedError,
    Debouncer,
    DebouncerClient,
    Queue,
    SetEnqueueOptions,
    SetWorkflowAttributes,
    SetWorkflowID,
)
from runtime.workflow_list import list_workflows_query
from tests.apps.debounce_app import LEDGER_DDL
from tests.cli_helpers import clean_env, dbos
from tests.conftest import TEMPLATE, _fresh_database

Launch = Callable[..., None]
ROOT = Path(__file__).resolve().parent.parent


def rows_named(db_url: str, name: str) -> list[tuple[str, str]]:
    """(workflow ID, status) of every workflow recorded under ``name``."""
    with psycopg.connect(db_url) as conn:
        found = conn.execute(
            "SELECT workflow_uuid, status FROM dbos.workflow_status WHERE name = %s", (name,)
        ).fetchall()
    return [(str(w), str(s)) for w, s in found]


def count_workflows(db_url: str) -> int:
    with psycopg.connect(db_url) as conn:
        row = conn.execute("SELECT count(*) FROM dbos.workflow_status").fetchone()
    return int(row[0]) if row else 0


# -- debouncing -------------------------------------------------------------------------------


def test_calls_within_the_period_collapse_into_one_run_with_the_latest_args(
    db_url: str, launch_dbos: Launch
) -> None:
    ran: list[str] = []

    @DBOS.workflow()
    def digest(value: str) -> str:
        ran.append(value)
        return value

    debouncer = Debouncer.create(digest)
    launch_dbos()
    handles = [debouncer.debounce("user-1", 0.6, f"v{i}") for i in range(5)]
    assert len({h.workflow_id for h in handles}) == 1
    status = DBOS.get_workflow_status(handles[0].workflow_id)
    assert status is not None and status.status == "DELAYED"
    assert status.deduplication_id == f"{debouncer.options['workflow_name']}-user-1"
    assert handles[-1].get_result() == "v4"
    assert ran == ["v4"]
    assert rows_named(db_url, debouncer.options["workflow_name"]) == [
        (handles[0].workflow_id, "SUCCESS")
    ]
    # The key was released when the run left DELAYED: the next call starts a new workflow.
    again = debouncer.debounce("user-1", 0.1, "later")
    assert again.workflow_id != handles[0].workflow_id
    assert again.get_result() == "later"
    # Another key is another workflow.
    other = debouncer.debounce("user-2", 0.1, "x")
    assert other.get_result() == "x" and sorted(ran) == ["later", "v4", "x"]


def test_the_timeout_caps_the_total_delay(db_url: str, launch_dbos: Launch) -> None:
    @DBOS.workflow()
    def capped(value: int) -> int:
        return value

    debouncer = Debouncer.create(capped, debounce_timeout_sec=0.8)
    launch_dbos()
    first = debouncer.debounce("k", 0.5, 0)
    row = DBOS.get_workflow_status(first.workflow_id)
    assert row is not None and row.delay_until_epoch_ms is not None
    with psycopg.connect(db_url) as conn:
        found = conn.execute(
            "SELECT debounce_deadline_epoch_ms, is_debounced FROM dbos.workflow_status "
            "WHERE workflow_uuid = %s",
            (first.workflow_id,),
        ).fetchone()
    assert found is not None and found[1] is True
    deadline = int(found[0])
    # Calls every 0.1 s would postpone it forever without the cap; the delay never passes it.
    ids = set()
    for i in range(1, 30):
        ids.add(debouncer.debounce("k", 0.5, i).workflow_id)
        current = DBOS.get_workflow_status(first.workflow_id)
        assert current is not None and current.delay_until_epoch_ms is not None
        assert current.delay_until_epoch_ms <= deadline
        time.sleep(0.1)
    # So the first run happened while calls went on, and later calls started another workflow.
    assert first.get_status().status == "SUCCESS"  # type: ignore[union-attr]
    assert len(ids) >= 2
    done = DBOS.get_workflow_status(first.workflow_id)
    assert done is not None and done.started_at is not None and done.created_at is not None
    assert done.started_at - done.created_at < 0.8 * 1000 + 1500  # the cap, plus one poll


def test_two_clients_and_the_app_coalesce_onto_one_run(db_url: str, launch_dbos: Launch) -> None:
    ran: list[Any] = []

    @DBOS.workflow()
    def shared(value: Any) -> Any:
        ran.append(value)
        return value

    queue = Queue("debounce-q")
    debouncer = Debouncer.create(shared, queue=queue)
    launch_dbos()
    name = debouncer.options["workflow_name"]
    clients = [DBOSClient(db_url), DBOSClient(db_url)]
    start = threading.Barrier(3)
    ids: list[str] = []
    lock = threading.Lock()

    def client_calls(client: DBOSClient, tag: str) -> None:
        remote = DebouncerClient(client, {"workflow_name": name, "queue_name": "debounce-q"})
        start.wait()
        for i in range(5):
            wid = remote.debounce("same", 1.0, f"{tag}{i}").workflow_id
            with lock:
                ids.append(wid)

    threads = [
        threading.Thread(target=client_calls, args=(c, tag))
        for c, tag in zip(clients, "ab", strict=True)
    ]
    for t in threads:
        t.start()
    start.wait()
    for i in range(5):
        ids.append(debouncer.debounce("same", 1.0, f"app{i}").workflow_id)
    for t in threads:
        t.join()
    final = debouncer.debounce("same", 0.3, "last")
    try:
        assert set(ids) == {final.workflow_id}
        assert final.get_result() == "last"
        assert ran == ["last"]
        assert rows_named(db_url, name) == [(final.workflow_id, "SUCCESS")]
        # The client's handle reads the same run.
        assert clients[0].retrieve_workflow(final.workflow_id).get_result() == "last"
    finally:
        for client in clients:
            client.destroy()


def test_debounce_in_a_workflow_is_a_step(db_url: str, launch_dbos: Launch) -> None:
    @DBOS.workflow()
    def target(value: int) -> int:
        return value * 10

    debouncer = Debouncer.create(target)

    @DBOS.workflow()
    def caller() -> str:
        return debouncer.debounce("inner", 0.1, 4).workflow_id

    @DBOS.workflow()
    def bad_caller() -> None:
        debouncer.debounce("k", -1, 1)

    launch_dbos()
    # A bad call inside a workflow is refused before its step is recorded.
    with SetWorkflowID("bad-caller"), pytest.raises(DBOSException, match="debounce_period_sec"):
        bad_caller()
    assert DBOS.list_workflow_steps("bad-caller") == []
    with SetWorkflowID("caller-1"):
        wid = caller()
    assert DBOS.retrieve_workflow(wid).get_result() == 40
    steps = DBOS.list_workflow_steps("caller-1")
    assert [s["function_name"] for s in steps] == ["DBOS.debounce"]
    assert steps[0]["output"] == wid
    # Run again under its ID: the recorded step answers, nothing is debounced again.
    with SetWorkflowID("caller-1"):
        assert caller() == wid
    assert len(rows_named(db_url, debouncer.options["workflow_name"])) == 1


def test_async_twins(db_url: str, launch_dbos: Launch) -> None:
    @DBOS.workflow()
    async def job(value: int) -> int:
        return value

    debouncer = Debouncer.create_async(job)
    launch_dbos()

    async def main() -> None:
        first = await debouncer.debounce_async("k", 0.5, 1)
        second = await debouncer.debounce_async("k", 0.2, 2)
        assert first.workflow_id == second.workflow_id
        assert await second.get_result() == 2
        await DBOS.update_workflow_attributes_async(first.workflow_id, {"async": True})
        found = await DBOS.list_workflows_async(attributes={"async": True})
        assert [w.workflow_id for w in found] == [first.workflow_id]

    asyncio.run(main())


def test_bad_debounce_calls_are_refused_before_anything_is_recorded(
    db_url: str, launch_dbos: Launch
) -> None:
    @DBOS.workflow()
    def job(value: int) -> int:
        return value

    class Holder:
        def method(self) -> None:
            pass

    debouncer = Debouncer.create(job)
    launch_dbos()
    with pytest.raises(TypeError):
        Debouncer.create(Holder().method)  # type: ignore[arg-type]
    bad: list[Callable[[], Any]] = [
        lambda: debouncer.debounce(5, 1.0, 1),  # type: ignore[arg-type]
        lambda: debouncer.debounce("k", -1, 1),
        lambda: debouncer.debounce("k", math.nan, 1),
        lambda: debouncer.debounce("k\x00", 1.0, 1),
        lambda: debouncer.debounce("k", 1.0, object()),
        lambda: Debouncer.create(job, queue="never-declared").debounce("k", 1.0, 1),
        lambda: Debouncer.create(job, debounce_timeout_sec=-1),
    ]
    for call in bad:
        with pytest.raises(DBOSException):
            call()
    # Numbers the database cannot hold (a delay's end is bigint epoch ms) or that are not
    # numbers at all: refused at once, naming the argument.
    for number in (math.nan, math.inf, 1e300):
        with pytest.raises(DBOSException, match="invalid debounce_timeout_sec"):
            Debouncer.create(job, debounce_timeout_sec=number)
        with pytest.raises(DBOSException, match="invalid debounce_period_sec"):
            debouncer.debounce("k", number, 1)
    for options in (
        {"deduplication_id": "d"},
        {"priority": 3},
        {"delay_seconds": 5},
    ):
        with SetEnqueueOptions(**options), pytest.raises(DBOSException, match="cannot debounce"):
            debouncer.debounce("k", 1.0, 1)
    client = DBOSClient(db_url)
    try:
        remote = DebouncerClient(
            client, {"workflow_name": "job", "queue_name": "q", "deduplication_id": "x"}
        )
        with pytest.raises(DBOSException, match="cannot debounce"):
            remote.debounce("k", 1.0)
        plain = DebouncerClient(client, {"workflow_name": "job", "queue_name": "q"})
        with pytest.raises(DBOSException, match="invalid debounce_period_sec"):
            plain.debounce("k", 1e300)
        with pytest.raises(DBOSException, match="invalid debounce_timeout_sec"):
            DebouncerClient(client, {"workflow_name": "job"}, debounce_timeout_sec=math.nan)
    finally:
        client.destroy()
    assert count_workflows(db_url) == 0


def test_cancel_releases_the_key_and_a_pinned_id_names_the_new_run(
    db_url: str, launch_dbos: Launch
) -> None:
    @DBOS.workflow()
    def job(value: int) -> int:
        return value

    debouncer = Debouncer.create(job)
    launch_dbos()
    waiting = debouncer.debounce("key", 1000, 1)
    DBOS.cancel_workflow(waiting.workflow_id)
    # The same ID pinned on two calls: the first names the new run, the second bounces it.
    with SetWorkflowID("pinned-run"):
        first = debouncer.debounce("key", 1000, 2)
    with SetWorkflowID("pinned-run"):
        second = debouncer.debounce("key", 0.1, 3)
    assert first.workflow_id == second.workflow_id == "pinned-run"
    assert second.get_result() == 3
    # A call that bounces does not take the pinned ID (it is used up all the same, as in DBOS).
    held = debouncer.debounce("other", 1000, 0)
    with SetWorkflowID("not-taken"):
        assert debouncer.debounce("other", 1000, 1).workflow_id == held.workflow_id
    DBOS.cancel_workflow(held.workflow_id)


def test_a_key_held_by_an_ordinary_enqueue_is_a_conflict(db_url: str, launch_dbos: Launch) -> None:
    @DBOS.workflow()
    def job(value: int) -> int:
        return value

    queue = Queue("plain-q")
    debouncer = Debouncer.create(job, queue=queue)
    launch_dbos()
    key = f"{debouncer.options['workflow_name']}-taken"
    with SetEnqueueOptions(deduplication_id=key, delay_seconds=30):
        queue.enqueue(job, 1)
    with pytest.raises(DBOSQueueDeduplicatedError):
        debouncer.debounce("taken", 0.1, 2)


def test_a_pending_debounce_survives_sigkill_and_runs_once_after_relaunch(db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(LEDGER_DDL)
    app = [sys.executable, "-m", "tests.apps.debounce_app"]
    env = clean_env()
    killed = subprocess.run(
        [*app, "debounce-then-die", db_url, "order-7", "3", "1.5"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    [wid] = json.loads(killed.stdout)
    with psycopg.connect(db_url) as conn:
        row = conn.execute(
            "SELECT status FROM dbos.workflow_status WHERE workflow_uuid = %s", (wid,)
        ).fetchone()
        assert row == ("DELAYED",)
        assert conn.execute("SELECT count(*) FROM debounce_ledger").fetchone() == (0,)
    served = subprocess.run(
        [*app, "serve", db_url, wid],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert served.returncode == 0, served.stderr
    assert json.loads(served.stdout) == "v2"
    with psycopg.connect(db_url) as conn:
        ledger = conn.execute("SELECT workflow_id, value FROM debounce_ledger").fetchall()
        total = conn.execute("SELECT count(*) FROM dbos.workflow_status").fetchone()
    assert ledger == [(wid, "v2")]
    assert total == (1,)


# -- workflow attributes ----------------------------------------------------------------------


def test_attributes_are_set_at_start_and_not_inherited(db_url: str, launch_dbos: Launch) -> None:
    @DBOS.workflow()
    def child() -> None:
        pass

    @DBOS.workflow()
    def parent() -> None:
        with SetWorkflowID("plain-child"):
            child()
        with SetWorkflowAttributes({"level": "child"}), SetWorkflowID("tagged-child"):
            child()

    queue = Queue("attr-q")
    launch_dbos()
    tags = {"customer": "acme", "n": 3, "nested": {"tier": ["gold"]}, "none": None}
    with SetWorkflowAttributes(tags):
        with SetWorkflowID("parent-1"):
            parent()
        with SetWorkflowID("queued-1"):
            queue.enqueue(child).get_result()
    with SetWorkflowID("outside-1"):
        child()

    def attrs(wid: str) -> Any:
        status = DBOS.get_workflow_status(wid)
        assert status is not None
        return status.attributes

    assert attrs("parent-1") == tags and attrs("queued-1") == tags
    assert attrs("plain-child") is None  # not inherited from the parent's block
    assert attrs("tagged-child") == {"level": "child"}
    assert attrs("outside-1") is None  # only inside the block
    # The enqueue option, from the app and from a client.
    DBOS.enqueue_workflow_with_options(
        {
            "workflow_name": child.__qualname__,
            "queue_name": "attr-q",
            "workflow_id": "opt-1",
            "attributes": {"via": "options"},
        }
    ).get_result()
    client = DBOSClient(db_url)
    try:
        client.enqueue(
            {
                "workflow_name": child.__qualname__,
                "queue_name": "attr-q",
                "workflow_id": "client-1",
                "attributes": {"via": "client"},
            }
        ).get_result()
        assert client.get_workflow("client-1").attributes == {"via": "client"}
    finally:
        client.destroy()
    assert attrs("opt-1") == {"via": "options"}
    # A fork keeps them.
    forked = DBOS.fork_workflow("parent-1", 1)
    assert attrs(forked.workflow_id) == tags


def test_update_replace_merge_and_clear(db_url: str, launch_dbos: Launch) -> None:
    @DBOS.workflow()
    def tagged() -> None:
        DBOS.update_workflow_attributes(DBOS.workflow_id, {"stage": "running"})  # type: ignore[arg-type]

    launch_dbos()
    with SetWorkflowAttributes({"a": 1}), SetWorkflowID("u-1"):
        tagged()

    def attrs() -> Any:
        status = DBOS.get_workflow_status("u-1")
        assert status is not None
        return status.attributes

    assert attrs() == {"stage": "running"}
    names = [s["function_name"] for s in DBOS.list_workflow_steps("u-1")]
    assert names == ["DBOS.updateWorkflowAttributes"]
    DBOS.update_workflow_attributes("u-1", {"b": 2, "stage": "done"}, merge=True)
    assert attrs() == {"stage": "done", "b": 2}
    DBOS.update_workflow_attributes("u-1", {"only": True})
    assert attrs() == {"only": True}
    DBOS.update_workflow_attributes("u-1", None)
    assert attrs() is None
    DBOS.update_workflow_attributes("u-1", {"m": 1}, merge=True)  # merge into none
    assert attrs() == {"m": 1}
    client = DBOSClient(db_url)
    try:
        client.update_workflow_attributes("u-1", {"from": "client"})
        assert client.get_workflow("u-1").attributes == {"from": "client"}
    finally:
        client.destroy()
    DBOS.update_workflow_attributes("no-such-workflow", {"x": 1})  # nothing, as in DBOS


def test_list_workflows_filters_by_attribute_containment(db_url: str, launch_dbos: Launch) -> None:
    @DBOS.workflow()
    def job() -> None:
        pass

    launch_dbos()
    for wid, tags in (
        ("w-acme-gold", {"customer": "acme", "tier": "gold", "n": 1, "tags": ["x", "y"]}),
        ("w-acme-free", {"customer": "acme", "tier": "free", "n": 2}),
        ("w-other", {"customer": "other"}),
        ("w-none", None),
    ):
        with SetWorkflowAttributes(tags), SetWorkflowID(wid):
            job()

    def ids(**attributes: Any) -> list[str]:
        return [w.workflow_id for w in DBOS.list_workflows(attributes=attributes)]

    assert ids(customer="acme") == ["w-acme-gold", "w-acme-free"]
    assert ids(customer="acme", tier="free") == ["w-acme-free"]
    assert ids(n=1) == ["w-acme-gold"] and ids(n="1") == []
    assert ids(tags=["y"]) == ["w-acme-gold"]
    assert ids(customer="nobody") == []
    assert len(DBOS.list_workflows(attributes={})) == 4  # no filter, as in DBOS
    assert DBOS.list_queued_workflows(attributes={"customer": "acme"}) == []
    client = DBOSClient(db_url)
    try:
        found = client.list_workflows(attributes={"tier": "gold"})
        assert [w.workflow_id for w in found] == ["w-acme-gold"]
    finally:
        client.destroy()
    # `dbos workflow list --attr` (JSON when the value is JSON, else a string) and `get`.
    listed = dbos(
        "workflow", "list", "--db-url", db_url, "--attr", "customer=acme", "--attr", "n=2", "--json"
    )
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert [r["workflow_id"] for r in rows] == ["w-acme-free"]
    assert rows[0]["attributes"] == {"customer": "acme", "tier": "free", "n": 2}
    quoted = dbos("workflow", "list", "--db-url", db_url, "--attr", 'n="2"', "--json")
    assert json.loads(quoted.stdout) == []
    shown = dbos("workflow", "get", "w-acme-gold", "--db-url", db_url)
    assert shown.returncode == 0, shown.stderr
    assert "Attributes" in shown.stdout and '"customer": "acme"' in shown.stdout
    bad = dbos("workflow", "list", "--db-url", db_url, "--attr", "novalue")
    assert bad.returncode != 0 and "Traceback" not in bad.stderr
    assert "key=value" in (bad.stderr + bad.stdout)


def test_bad_attributes_are_refused_before_anything_is_recorded(
    db_url: str, launch_dbos: Launch
) -> None:
    @DBOS.workflow()
    def job() -> None:
        pass

    Queue("bad-q")
    launch_dbos()
    with SetWorkflowID("exists"):
        job()
    bad_values: list[Any] = [
        ["not", "a", "dict"],
        "text",
        {1: "int key"},
        {"nested": {2: "int key"}},
        {"nan": math.nan},
        {"obj": object()},
        {"nul": "a\x00b"},
        {"surrogate": "a\ud800b"},
        {"key\udfff": 1},
        {"set": {1, 2}},
    ]
    for value in bad_values:
        with pytest.raises(DBOSException):
            SetWorkflowAttributes(value)
        with pytest.raises(DBOSException):
            DBOS.update_workflow_attributes("exists", value)
        with pytest.raises(DBOSException):
            DBOS.list_workflows(attributes=value)
        with pytest.raises(DBOSException):
            DBOS.enqueue_workflow_with_options(
                {"workflow_name": job.__qualname__, "queue_name": "bad-q", "attributes": value}
            )
    with pytest.raises(DBOSException, match="merge"):
        DBOS.update_workflow_attributes("exists", None, merge=True)
    # Deeper than Python recurses: the same clean error write_stream gives, not RecursionError.
    deep: dict[str, Any] = {}
    for _ in range(5000):
        deep = {"a": deep}
    with DBOSClient(db_url) as client:
        deep_calls: list[Callable[[], Any]] = [
            lambda: SetWorkflowAttributes(deep),
            lambda: DBOS.update_workflow_attributes("exists", deep),
            lambda: DBOS.list_workflows(attributes=deep),
            lambda: client.update_workflow_attributes("exists", deep, merge=True),
            lambda: client.list_workflows(attributes=deep),
        ]
        for call in deep_calls:
            with pytest.raises(DBOSException, match="attributes: it is nested too deeply"):
                call()
    status = DBOS.get_workflow_status("exists")
    assert status is not None and status.attributes is None
    assert count_workflows(db_url) == 1


def test_the_attribute_filter_is_answered_from_the_gin_index(pg_server_url: str) -> None:
    for url in _fresh_database(pg_server_url, TEMPLATE):
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(
                """
                INSERT INTO dbos.workflow_status (workflow_uuid, status, name, inputs, created_at,
                    updated_at, attributes)
                SELECT 'wf-' || i, 'SUCCESS', 'job', '{"args":[],"kwargs":{}}', i, i,
                       CASE WHEN i % 3 = 0 THEN NULL
                            ELSE jsonb_build_object('customer', 'c' || (i % 5000), 'n', i) END
                FROM generate_series(1, 30000) AS i
                """
            )
            conn.execute("ANALYZE dbos.workflow_status")
        for sort_desc in (False, True):
            query, params = list_workflows_query(
                {"attributes": json.dumps({"customer": "c42"})},
                sort_desc=sort_desc,
                limit=10,
                offset=0,
                load_input=False,
                load_output=False,
            )
            with psycopg.connect(url) as conn:
                plan = conn.execute("EXPLAIN (FORMAT JSON) " + query, params).fetchone()  # type: ignore[arg-type]
            assert plan is not None
            text = json.dumps(plan[0])
            assert "workflow_status_attributes_idx" in text, text

"""Messages, events and durable sleep in one process (the cross-process and kill tests are in
test_messaging_processes.py)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from runtime import (
    DBOS,
    DBOSAwaitedWorkflowCancelledError,
    DBOSClient,
    DBOSException,
    DBOSNonExistentWorkflowError,
    SetWorkflowID,
    listener,
)

Launch = Callable[..., None]


def _messages_left(url: str, wid: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM dbos.notifications WHERE destination_uuid = %s", (wid,)
        ).fetchone()
    assert row is not None
    return int(row[0])


def test_messages_arrive_in_order_per_topic(launch_dbos: Launch, db_url: str) -> None:
    @DBOS.workflow()
    def collect() -> dict[str, list[int]]:
        got: dict[str, list[int]] = {"a": [], "b": []}
        for _ in range(5):
            got["b"].append(DBOS.recv("b", timeout_seconds=10))
        for _ in range(5):
            got["a"].append(DBOS.recv("a", timeout_seconds=10))
        return got

    launch_dbos()
    with SetWorkflowID("collector"):
        handle = DBOS.start_workflow(collect)
    for i in range(5):
        DBOS.send("collector", i, topic="a")
        DBOS.send("collector", 10 + i, topic="b")
    assert handle.get_result() == {"a": [0, 1, 2, 3, 4], "b": [10, 11, 12, 13, 14]}
    assert _messages_left(db_url, "collector") == 0


def test_recv_without_topic_only_sees_messages_without_topic(launch_dbos: Launch) -> None:
    @DBOS.workflow()
    def wf() -> Any:
        return DBOS.recv(timeout_seconds=5)

    launch_dbos()
    with SetWorkflowID("no-topic"):
        handle = DBOS.start_workflow(wf)
    DBOS.send("no-topic", "with topic", topic="x")
    DBOS.send("no-topic", "plain")
    assert handle.get_result() == "plain"


def test_recv_times_out_with_none(launch_dbos: Launch) -> None:
    @DBOS.workflow()
    def wf() -> Any:
        return DBOS.recv("nothing", timeout_seconds=0.3)

    launch_dbos()
    started = time.monotonic()
    assert wf() is None
    assert 0.25 < time.monotonic() - started < 5


def test_recv_and_set_event_only_inside_a_workflow(launch_dbos: Launch) -> None:
    launch_dbos()
    with pytest.raises(DBOSException, match="inside a workflow"):
        DBOS.recv()
    with pytest.raises(DBOSException, match="inside a workflow"):
        DBOS.set_event("k", 1)


def test_send_to_unknown_workflow_is_a_clear_error(launch_dbos: Launch) -> None:
    @DBOS.workflow()
    def sender() -> str:
        try:
            DBOS.send("nobody", "hello")
        except DBOSNonExistentWorkflowError:
            return "refused"
        return "sent"

    launch_dbos()
    with pytest.raises(DBOSNonExistentWorkflowError, match="nobody"):
        DBOS.send("nobody", "hello")
    with SetWorkflowID("sender"):
        assert sender() == "refused"
    steps = DBOS.list_workflow_steps("sender")
    assert isinstance(steps[0].error, DBOSNonExistentWorkflowError)


def test_idempotency_key_delivers_once_even_after_consumption(
    launch_dbos: Launch, db_url: str
) -> None:
    @DBOS.workflow()
    def wf() -> list[Any]:
        first = DBOS.recv(timeout_seconds=5)
        second = DBOS.recv(timeout_seconds=0.5)
        return [first, second]

    launch_dbos()
    with SetWorkflowID("idem"):
        handle = DBOS.start_workflow(wf)
    DBOS.send("idem", "pay", idempotency_key="k1")
    time.sleep(0.3)  # let the first recv consume it
    DBOS.send("idem", "pay", idempotency_key="k1")
    with DBOSClient(db_url) as client:
        client.send("idem", "pay", idempotency_key="k1")
    assert handle.get_result() == ["pay", None]


def test_send_from_a_workflow_is_exactly_once_across_recovery(
    launch_dbos: Launch, crash: Callable[[], None], db_url: str
) -> None:
    blocked = threading.Event()

    @DBOS.workflow()
    def target() -> None:
        DBOS.sleep(30)

    @DBOS.step()
    def block() -> None:
        if not blocked.is_set():
            blocked.set()
            threading.Event().wait(30)

    @DBOS.workflow()
    def sender() -> None:
        DBOS.send("target", "once")
        block()

    launch_dbos()
    with SetWorkflowID("target"):
        DBOS.start_workflow(target)
    with SetWorkflowID("sender-once"):
        DBOS.start_workflow(sender)
    assert blocked.wait(10)
    crash()
    launch_dbos()
    DBOS.retrieve_workflow("sender-once").get_result()
    assert _messages_left(db_url, "target") == 1
    DBOS.cancel_workflow("target")


def test_events_last_write_wins_and_get_event_waits(launch_dbos: Launch, db_url: str) -> None:
    @DBOS.workflow()
    def publisher() -> None:
        DBOS.set_event("status", "reserving")
        DBOS.sleep(0.5)
        DBOS.set_event("status", "paid")
        DBOS.set_event("url", "https://pay.example/123")

    launch_dbos()
    assert DBOS.get_event("publisher", "status", timeout_seconds=0.2) is None
    with SetWorkflowID("publisher"):
        handle = DBOS.start_workflow(publisher)
    with DBOSClient(db_url) as client:
        started = time.monotonic()
        assert client.get_event("publisher", "url", timeout_seconds=10) == "https://pay.example/123"
        assert time.monotonic() - started < 5  # woken by the write, not the timeout
    handle.get_result()
    assert DBOS.get_event("publisher", "status", timeout_seconds=1) == "paid"


def test_get_event_in_a_workflow_is_recorded(launch_dbos: Launch) -> None:
    @DBOS.workflow()
    def publisher() -> None:
        DBOS.set_event("k", {"v": 1})

    @DBOS.workflow()
    def reader() -> Any:
        return DBOS.get_event("pub", "k", timeout_seconds=5)

    launch_dbos()
    with SetWorkflowID("pub"):
        publisher()
    with SetWorkflowID("reader"):
        assert reader() == {"v": 1}
    steps = DBOS.list_workflow_steps("reader")
    assert (steps[0].function_name, steps[0].output) == ("DBOS.getEvent", {"v": 1})


def test_durable_sleep_records_its_wake_up_time(launch_dbos: Launch) -> None:
    @DBOS.workflow()
    def wf() -> None:
        DBOS.sleep(0.2)

    launch_dbos()
    before = int(time.time() * 1000)
    with SetWorkflowID("sleepy"):
        wf()
    step = DBOS.list_workflow_steps("sleepy")[0]
    assert step.function_name == "DBOS.sleep"
    assert before + 200 <= step.output <= before + 2000


def test_cancel_interrupts_a_waiting_recv(launch_dbos: Launch) -> None:
    @DBOS.workflow()
    def waiting() -> Any:
        return DBOS.recv(timeout_seconds=60)

    launch_dbos()
    with SetWorkflowID("waiting"):
        handle = DBOS.start_workflow(waiting)
    time.sleep(0.3)
    started = time.monotonic()
    DBOS.cancel_workflow("waiting")
    with pytest.raises(DBOSAwaitedWorkflowCancelledError):
        handle.get_result()
    assert time.monotonic() - started < 5


def test_recv_is_woken_by_notify_not_by_polling(
    launch_dbos: Launch, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(listener, "POLL_LISTENING_S", 60.0)

    @DBOS.workflow()
    def wf() -> Any:
        return DBOS.recv(timeout_seconds=60)

    launch_dbos()
    with SetWorkflowID("notified"):
        handle = DBOS.start_workflow(wf)
    time.sleep(0.5)  # it is waiting now, with a 60 s poll interval
    started = time.monotonic()
    DBOS.send("notified", "wake up")
    assert handle.get_result() == "wake up"
    assert time.monotonic() - started < 10


def test_messages_still_arrive_when_the_listener_connection_dies(
    launch_dbos: Launch, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(listener, "POLL_LISTENING_S", 60.0)

    @DBOS.workflow()
    def wf() -> list[Any]:
        return [DBOS.recv(timeout_seconds=30), DBOS.recv(timeout_seconds=30)]

    launch_dbos()
    with SetWorkflowID("resilient"):
        handle = DBOS.start_workflow(wf)
    DBOS.send("resilient", 1)
    time.sleep(0.3)
    with psycopg.connect(db_url, autocommit=True) as conn:
        killed = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND query LIKE 'LISTEN%%'"
        ).fetchall()
    assert killed, "the listener connection was not found"
    DBOS.send("resilient", 2)  # sent while the listener reconnects
    assert handle.get_result() == [1, 2]


def test_a_recv_whose_reply_is_lost_after_it_consumed_returns_that_message(
    launch_dbos: Launch, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from runtime.errors import DBOSConnectionError
    from runtime.system_db import SystemDatabase

    real = SystemDatabase.recv
    lost: list[int] = []

    def recv_then_lose_reply(self: SystemDatabase, *args: Any) -> Any:
        result = real(self, *args)
        if result.recorded and not lost:  # committed, but the reply never arrives
            lost.append(1)
            raise DBOSConnectionError("connection lost after the statement")
        return result

    @DBOS.workflow()
    def wf() -> Any:
        return DBOS.recv("t", timeout_seconds=30)

    launch_dbos()
    monkeypatch.setattr(SystemDatabase, "recv", recv_then_lose_reply)
    with SetWorkflowID("lost-reply"):
        handle = DBOS.start_workflow(wf)
    started = time.monotonic()
    DBOS.send("lost-reply", "only-once", topic="t")
    assert handle.get_result() == "only-once"
    # At once, from the record: not at the timeout (whose replay would also find the message).
    assert time.monotonic() - started < 10
    assert lost == [1]
    assert _messages_left(db_url, "lost-reply") == 0

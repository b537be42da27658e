"""Bad arguments to the management, enqueue and call API: each gets one clear ``DBOSException``
naming the argument (never a TypeError or a database error from deep inside, never a silent
empty answer), and nothing is recorded."""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest

from runtime import (
    DBOS,
    DBOSClient,
    DBOSConfiguredInstance,
    DBOSException,
    Queue,
    SetEnqueueOptions,
)
from tests.cli_helpers import dbos


@DBOS.workflow()
def echo(x: Any) -> Any:
    return x


@DBOS.workflow()
def run_step_with(options: Any) -> Any:
    return DBOS.run_step(options, lambda: 1)


def plain_step() -> int:
    return 1


QUEUE = Queue("q_api_input")  # declared once, as an app declares its queues at import


@pytest.fixture
def app(launch_dbos: Callable[..., None]) -> Iterator[None]:
    launch_dbos()
    yield


def _rows() -> int:
    return len(DBOS.list_workflows())


# -- listing --------------------------------------------------------------------------------------

BAD_LISTINGS: list[tuple[dict[str, Any], str]] = [
    ({"workflow_ids": 123}, "workflow_ids"),
    ({"workflow_ids": "ab_cd"}, "workflow_ids"),  # a string is not a list of IDs (as in DBOS)
    ({"workflow_ids": [None]}, "workflow_ids"),
    ({"workflow_ids": ["a\x00"]}, "workflow_ids"),  # Postgres text cannot hold NUL
    ({"workflow_id_prefix": "a\x00"}, "workflow_id_prefix"),
    ({"status": 5}, "status"),
    ({"name": 5}, "name"),
    ({"limit": "5"}, "limit"),
    ({"limit": True}, "limit"),
    ({"limit": 2**63}, "limit"),
    ({"offset": 2**63}, "offset"),
    ({"offset": 1.5}, "offset"),
    ({"has_parent": "yes"}, "has_parent"),
    ({"was_forked_from": "no"}, "was_forked_from"),
    ({"sort_desc": "yes"}, "sort_desc"),
    ({"start_time": math.nan}, "start time"),
    ({"end_time": 10**30}, "end time"),
]


@pytest.mark.parametrize(("arguments", "named"), BAD_LISTINGS)
def test_bad_listing_arguments_are_refused_by_name(
    app: None, client: DBOSClient, arguments: dict[str, Any], named: str
) -> None:
    listings: list[Callable[..., Any]] = [
        DBOS.list_workflows,
        DBOS.list_queued_workflows,
        client.list_workflows,
        client.list_queued_workflows,
    ]
    for listing in listings:
        if not set(arguments) <= set(inspect.signature(listing).parameters):
            continue  # list_queued_workflows has no was_forked_from, as in DBOS
        with pytest.raises(DBOSException, match=named):
            listing(**arguments)


def test_good_listing_arguments_still_work(app: None) -> None:
    handle = DBOS.start_workflow(echo, 1)
    handle.get_result()
    assert [w.workflow_id for w in DBOS.list_workflows(workflow_ids=[handle.workflow_id])] == [
        handle.workflow_id
    ]
    found = DBOS.list_workflows(workflow_ids=(i for i in [handle.workflow_id]), limit=0)
    assert found == []
    assert len(DBOS.list_workflows(has_parent=False, limit=2**63 - 1, offset=0)) == 1


def test_cli_list_refuses_a_limit_beyond_bigint(db_url: str) -> None:
    done = dbos("workflow", "list", "--db-url", db_url, "--limit", str(2**63))
    assert done.returncode != 0
    assert "limit" in done.stderr + done.stdout
    assert "Traceback" not in done.stderr


# -- enqueue options ------------------------------------------------------------------------------

BAD_OPTIONS: list[tuple[dict[str, Any], str]] = [
    ({"bogus": 1}, "bogus"),
    ({"queue_partition_key": 5}, "queue_partition_key"),
    ({"workflow_timeout": math.nan}, "workflow_timeout"),
    ({"workflow_timeout": "10"}, "workflow_timeout"),
    ({"delay_seconds": 1e300}, "delay_seconds"),
    ({"delay_seconds": 10**30}, "delay_seconds"),
    ({"deduplication_id": 7}, "deduplication_id"),
    ({"app_version": 1}, "app_version"),
    ({"queue_name": None}, "queue_name"),
    ({"queue_name": "  "}, "queue_name"),
]


@pytest.mark.parametrize(("extra", "named"), BAD_OPTIONS)
def test_bad_enqueue_options_are_refused_alike_before_recording(
    app: None, client: DBOSClient, extra: dict[str, Any], named: str
) -> None:
    options: Any = {"workflow_name": echo.__qualname__, "queue_name": "q_api_input", **extra}
    with pytest.raises(DBOSException, match=named):
        client.enqueue(options, 1)
    with pytest.raises(DBOSException, match=named):
        DBOS.enqueue_workflow_with_options(options, 1)
    assert _rows() == 0


def test_good_enqueue_options_still_work(app: None, client: DBOSClient) -> None:
    options: Any = {
        "workflow_name": echo.__qualname__,
        "queue_name": "q_api_input",
        "workflow_timeout": 0,
    }
    assert client.enqueue(options, 3).get_result() == 3
    assert DBOS.enqueue_workflow_with_options(options, 4).get_result() == 4


@pytest.mark.parametrize("queue_name", [None, "", "  ", 123])
def test_enqueue_workflow_refuses_a_bad_queue_name(app: None, queue_name: Any) -> None:
    with pytest.raises(DBOSException, match="queue_name"):
        DBOS.enqueue_workflow(queue_name, echo, 1)
    assert _rows() == 0


@pytest.mark.parametrize("delay", [1e300, 10**30])
def test_set_enqueue_options_refuses_a_delay_beyond_the_bound(delay: float) -> None:
    with pytest.raises(DBOSException, match="delay_seconds .* from 0 to 1e\\+15"):
        SetEnqueueOptions(delay_seconds=delay)


# -- the client's URLs ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "arguments",
    [
        {"system_database_url": 5},
        {"database_url": b"postgresql://x"},
        {
            "database_url": "postgresql://localhost/a",
            "application_database_url": "postgresql://localhost/b",
        },
    ],
)
def test_client_refuses_bad_urls(arguments: dict[str, Any]) -> None:
    with pytest.raises(DBOSException, match="database_url"):
        DBOSClient(**arguments)


# -- calls ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("handles", [["abc"], "abc", [None]])
def test_wait_first_refuses_what_is_not_a_handle(app: None, handles: Any) -> None:
    with pytest.raises(DBOSException, match="WorkflowHandle"):
        DBOS.wait_first(handles)


BAD_STEP_OPTIONS: list[tuple[dict[str, Any], str]] = [
    ({"retries_allowed": "yes"}, "retries_allowed"),
    ({"retries_allowed": True, "max_attempts": -1}, "max_attempts"),
    ({"max_attempts": 0}, "max_attempts"),
    ({"max_attempts": 2.5}, "max_attempts"),
    ({"interval_seconds": -1}, "interval_seconds"),
    ({"interval_seconds": math.inf}, "interval_seconds"),
    ({"backoff_rate": -0.5}, "backoff_rate"),
    ({"backoff_rate": "2"}, "backoff_rate"),
]


@pytest.mark.parametrize(("options", "named"), BAD_STEP_OPTIONS)
def test_bad_step_options_are_refused_by_run_step_and_the_decorator(
    app: None, options: dict[str, Any], named: str
) -> None:
    with pytest.raises(DBOSException, match=named):
        DBOS.run_step(options, plain_step)  # type: ignore[arg-type]
    with pytest.raises(DBOSException, match=named):
        run_step_with(options)
    with pytest.raises(DBOSException, match=named):
        DBOS.step(**options)(plain_step)()


@pytest.mark.parametrize("config_name", ["", "   ", "a\x00b"])
def test_configured_instance_refuses_a_blank_or_nul_name(config_name: str) -> None:
    class Holder(DBOSConfiguredInstance):
        pass

    with pytest.raises(DBOSException, match="config_name"):
        Holder(config_name)


def test_dbos_enqueue_option_keys_are_accepted(
    launch_dbos: Any, db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """DBOS's documented EnqueueOptions keys load: priority None is the default,
    max_recovery_attempts and class_name are honoured, keys of features this runtime lacks are
    named in a warning (not refused: a ported client must run)."""
    import logging

    @DBOS.workflow()
    def job(x: int) -> int:
        return x

    Queue("dbos-keys")
    launch_dbos()
    with DBOSClient(db_url) as client, caplog.at_level(logging.WARNING, logger="dbos"):
        handle = client.enqueue(
            {
                "workflow_name": job.__qualname__,
                "queue_name": "dbos-keys",
                "workflow_id": "dbos-keys-1",
                "priority": None,
                "max_recovery_attempts": 7,
                "authenticated_user": "alice",
            },
            5,
        )
        assert handle.get_result() == 5
    warned = " ".join(r.getMessage() for r in caplog.records)
    assert "'authenticated_user'" in warned
    with psycopg.connect(db_url) as conn:
        row = conn.execute(
            "SELECT max_recovery_attempts FROM dbos.workflow_status WHERE workflow_uuid = %s",
            ("dbos-keys-1",),
        ).fetchone()
    assert row == (7,)

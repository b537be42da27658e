"""Hostile input: property-based tests of the serializer, and the CLI and client fed garbage,
injection strings, huge and binary values. Each gets a clear error and changes nothing."""

from __future__ import annotations

import datetime
import decimal
import json
import math
import uuid
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runtime import DBOSClient, DBOSException, DBOSSerializationError
from runtime.serialization import (
    deserialize,
    deserialize_exception,
    serialize,
    serialize_args,
    serialize_exception,
)
from tests.cli_helpers import dbos

# -- the serializer -------------------------------------------------------------------------------

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text()
    | st.binary()
    | st.uuids()
    | st.decimals(allow_nan=False, allow_infinity=False)
    | st.datetimes()
    | st.datetimes(timezones=st.timezones())
    | st.dates()
    | st.timedeltas()
)
keys = st.text() | st.just("__dbos__")
values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=5)
        | st.tuples(children, children)
        | st.dictionaries(keys, children, max_size=5)
        | st.dictionaries(st.integers(), children, max_size=3)
        | st.frozensets(st.integers() | st.text(), max_size=4)
    ),
    max_leaves=25,
)


def _same(a: Any, b: Any) -> bool:
    if type(a) is not type(b):
        return False
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return bool(a == b)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(values)
def test_round_trip_keeps_value_and_type(value: Any) -> None:
    text = serialize(value)
    json.loads(text)  # always valid JSON
    assert _same(deserialize(text), value)


@given(st.floats(allow_nan=True, allow_infinity=True))
def test_every_float_round_trips(value: float) -> None:
    assert _same(deserialize(serialize(value)), value)


class Opaque:
    """Something the serializer has no rule for."""


@given(values, st.sampled_from([Opaque(), lambda: None, object(), iter([1])]))
def test_values_holding_an_unknown_object_are_refused_clearly(value: Any, bad: Any) -> None:
    with pytest.raises(DBOSSerializationError, match="argument 'order'"):
        serialize_args(([value, {"deep": bad}],), {}, ["order"])


@given(st.text())
def test_deserialize_of_arbitrary_text_never_crashes_otherwise(text: str) -> None:
    try:
        deserialize(text)
    except DBOSSerializationError:
        pass


@given(st.text() | st.builds(json.dumps, st.dictionaries(st.text(), st.text() | st.integers())))
def test_stored_errors_always_come_back_as_an_exception(text: str) -> None:
    assert isinstance(deserialize_exception(text), BaseException)


@given(st.text(), st.lists(st.integers() | st.text(), max_size=3))
def test_exceptions_round_trip(message: str, extra: list[Any]) -> None:
    error = deserialize_exception(serialize_exception(ValueError(message, *extra)))
    assert type(error) is ValueError and error.args == (message, *extra)


def test_decimal_and_uuid_exactness() -> None:
    exact = decimal.Decimal("0.1000000000000000000000000001")
    assert deserialize(serialize(exact)) == exact
    assert deserialize(serialize(uuid.UUID(int=1))) == uuid.UUID(int=1)
    aware = datetime.datetime(
        2026, 3, 29, 1, 30, tzinfo=datetime.timezone(datetime.timedelta(hours=5, minutes=45))
    )
    assert deserialize(serialize(aware)) == aware


# -- the CLI and the client -----------------------------------------------------------------------

INJECTIONS = [
    "'; DROP TABLE dbos.workflow_status; --",
    "x' OR '1'='1",
    "\\'; SELECT pg_sleep(5); --",
    "%s %(name)s {} $1",
    "🙂" * 50,
    "a" * 100_000,
]


def _tables_intact(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM dbos.workflow_status").fetchone()
    assert row is not None
    return int(row[0])


@pytest.mark.parametrize("text", INJECTIONS, ids=range(len(INJECTIONS)))
def test_cli_filters_and_ids_treat_hostile_text_as_data(db_url: str, text: str) -> None:
    with DBOSClient(db_url) as client:
        client.enqueue({"workflow_name": "parked", "queue_name": "nowhere"}, 1)
    before = _tables_intact(db_url)
    for args in (
        ["workflow", "list", "--name", text, "--json"],
        ["workflow", "list", "--queue", text, "--json"],
        ["workflow", "list", "--app-version", text, "--json"],
        ["queue", "list", "--queue", text, "--json"],
    ):
        r = dbos(*args, "--db-url", db_url)
        assert r.returncode == 0, (args[:3], r.stderr[-300:])
        assert json.loads(r.stdout) == []
    for args in (
        ["workflow", "get", text],
        ["workflow", "steps", text],
        ["workflow", "cancel", text],
        ["workflow", "resume", text],
        ["workflow", "restart", text],
        ["workflow", "fork", text, "--step", "1"],
        ["workflow", "list", "--status", text],
        ["workflow", "list", "--start-time", text],
        ["workflow", "cancel", "--name", text, "--end-time", text, "-y"],
    ):
        r = dbos(*args, "--db-url", db_url)
        assert r.returncode == 1, (args[:3], r.stdout[-300:], r.stderr[-300:])
        assert "Traceback" not in r.stderr
        assert len(r.stderr.strip().splitlines()) <= 2, r.stderr[-500:]
    assert _tables_intact(db_url) == before


def test_client_refuses_nul_bytes_and_bad_arguments_clearly(db_url: str) -> None:
    with DBOSClient(db_url) as client:
        with pytest.raises(DBOSException):
            client.retrieve_workflow("nul\x00byte")
        with pytest.raises(DBOSException, match="limit"):
            client.list_workflows(limit=-1)
        with pytest.raises(DBOSException, match="workflow_name"):
            client.enqueue({"workflow_name": "", "queue_name": "q"})  # type: ignore[typeddict-item]
        huge = client.enqueue(
            {"workflow_name": "parked", "queue_name": "nowhere"}, b"\x00" * 2_000_000
        )
        status = client.get_workflow_status(huge.workflow_id)
        assert status is not None and status.input == {"args": [b"\x00" * 2_000_000], "kwargs": {}}


def test_cli_shows_huge_and_binary_values_truncated(db_url: str) -> None:
    with DBOSClient(db_url) as client:
        wid = client.enqueue(
            {"workflow_name": "parked", "queue_name": "nowhere"}, "x" * 500_000, b"\xff\x00"
        ).workflow_id
    shown = dbos("workflow", "get", wid, "--db-url", db_url)
    assert shown.returncode == 0
    assert "truncated" in shown.stdout and len(shown.stdout) < 20_000
    whole = json.loads(dbos("workflow", "get", wid, "--json", "--db-url", db_url).stdout)
    assert len(whole["input"]["args"][0]) == 500_000

"""Managed schedules (DBOS 3's ``DBOS.create_schedule`` family, ``DBOSClient``'s and
`dbos schedule ...`): stored in the database, fired exactly once per tick across executors and
across a SIGKILL, backfilled exactly once, triggered, paused and resumed; cron time zones with no
tick skipped or doubled around DST (checked with fixed instants); bad input refused before
anything is stored."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest

from runtime import DBOS, DBOSClient, DBOSException, Queue, WorkflowSchedule
from runtime.cron import Ticks, ticks_between
from tests.apps.schedule_app import RUNS_DDL
from tests.cli_helpers import DBOS as DBOS_EXE
from tests.cli_helpers import clean_env, dbos

Launch = Callable[..., None]
ROOT = Path(__file__).resolve().parent.parent
UTC = timezone.utc
NEW_YORK = ZoneInfo("America/New_York")
LONDON = ZoneInfo("Europe/London")


def _wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _query(db_url: str, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(db_url) as conn:
        return conn.execute(sql, params).fetchall()  # type: ignore[arg-type]


def _tick_ids(db_url: str, name: str) -> list[str]:
    rows = _query(
        db_url,
        "SELECT workflow_uuid FROM dbos.workflow_status WHERE workflow_uuid LIKE %s",
        (f"sched-{name}-2%",),
    )
    return sorted(r[0] for r in rows)


def _seconds(ids: list[str], name: str) -> list[datetime]:
    return [datetime.fromisoformat(i.removeprefix(f"sched-{name}-")) for i in ids]


# -- DST, with a fixed clock ----------------------------------------------------------------------


def _fired(cron: str, tz: ZoneInfo, start: datetime, end: datetime) -> list[tuple[str, str]]:
    """(wall clock, UTC instant) of each tick in the window, as HH:MM strings."""
    return [
        (t.key[11:16], t.at.astimezone(UTC).strftime("%H:%M"))
        for t in ticks_between(cron, start, end, tz)
    ]


def test_new_york_spring_forward_skips_and_doubles_nothing() -> None:
    # 2026-03-08: 02:00 EST becomes 03:00 EDT (07:00 UTC); 02:xx does not exist.
    start, end = datetime(2026, 3, 8, 4, 30, tzinfo=UTC), datetime(2026, 3, 8, 9, 30, tzinfo=UTC)
    assert _fired("0 * * * *", NEW_YORK, start, end) == [
        ("00:00", "05:00"),
        ("01:00", "06:00"),
        ("02:00", "07:00"),  # skipped wall time: once, at the first instant after the gap
        ("03:00", "07:00"),
        ("04:00", "08:00"),
        ("05:00", "09:00"),
    ]
    days = datetime(2026, 3, 7, 12, tzinfo=UTC), datetime(2026, 3, 10, tzinfo=UTC)
    assert [
        (t.key, t.at.astimezone(UTC)) for t in ticks_between("30 2 * * *", *days, NEW_YORK)
    ] == [
        # March 8th has no 02:30: it fires once, at 03:00 EDT.
        ("2026-03-08T02:30:00-05:00", datetime(2026, 3, 8, 7, 0, tzinfo=UTC)),
        ("2026-03-09T02:30:00-04:00", datetime(2026, 3, 9, 6, 30, tzinfo=UTC)),
    ]


def test_new_york_fall_back_fires_a_repeated_time_once() -> None:
    # 2026-11-01: 02:00 EDT becomes 01:00 EST (06:00 UTC); 01:xx happens twice.
    start, end = datetime(2026, 11, 1, 3, 30, tzinfo=UTC), datetime(2026, 11, 1, 8, 30, tzinfo=UTC)
    assert _fired("0 * * * *", NEW_YORK, start, end) == [
        ("00:00", "04:00"),
        ("01:00", "05:00"),  # the first 01:00 (EDT) only
        ("02:00", "07:00"),
        ("03:00", "08:00"),
    ]
    assert _fired("30 1 * * *", NEW_YORK, start, end) == [("01:30", "05:30")]
    assert _fired("30 2 * * *", NEW_YORK, start, end) == [("02:30", "07:30")]
    # A scheduler started during the second 01:xx does not fire the first one's ticks again.
    second = datetime(2026, 11, 1, 6, 10, tzinfo=UTC)  # 01:10 EST
    ticks = Ticks("*/20 * * * *", second, NEW_YORK)
    assert [ticks.next().at.astimezone(UTC).strftime("%H:%M") for _ in range(3)] == [
        "07:00",
        "07:20",
        "07:40",
    ]


def test_london_spring_forward_and_fall_back() -> None:
    # 2026-03-29: 01:00 GMT becomes 02:00 BST (01:00 UTC); 01:xx does not exist.
    start, end = datetime(2026, 3, 28, 23, 30, tzinfo=UTC), datetime(2026, 3, 29, 3, 30, tzinfo=UTC)
    assert _fired("0 * * * *", LONDON, start, end) == [
        ("00:00", "00:00"),
        ("01:00", "01:00"),  # skipped: at the first instant after the gap (02:00 BST)
        ("02:00", "01:00"),
        ("03:00", "02:00"),
        ("04:00", "03:00"),
    ]
    assert _fired("30 2 * * *", LONDON, start, end) == [("02:30", "01:30")]
    assert _fired("30 1 * * *", LONDON, start, end) == [("01:30", "01:00")]
    # 2026-10-25: 02:00 BST becomes 01:00 GMT (01:00 UTC); 01:xx happens twice.
    start, end = (
        datetime(2026, 10, 24, 22, 30, tzinfo=UTC),
        datetime(2026, 10, 25, 3, 30, tzinfo=UTC),
    )
    assert _fired("0 * * * *", LONDON, start, end) == [
        ("00:00", "23:00"),
        ("01:00", "00:00"),  # once, in BST
        ("02:00", "02:00"),
        ("03:00", "03:00"),
    ]
    assert _fired("30 2 * * *", LONDON, start, end) == [("02:30", "02:30")]
    assert _fired("30 1 * * *", LONDON, start, end) == [("01:30", "00:30")]


def test_every_wall_clock_hour_fires_once_across_each_transition() -> None:
    transitions = {NEW_YORK: [(2026, 3, 8), (2026, 11, 1)], LONDON: [(2026, 3, 29), (2026, 10, 25)]}
    for tz, days in transitions.items():
        for year, month, day in days:
            # Ten wall-clock days around the change, the window's ends (midnights) excluded.
            start = datetime(year, month, day, tzinfo=tz) - timedelta(days=5)
            end = datetime(year, month, day, tzinfo=tz) + timedelta(days=5)
            ticks = ticks_between("0 * * * *", start, end, tz)
            keys = [t.key[:13] for t in ticks]  # the wall-clock date and hour
            assert len(keys) == len(set(keys)) == 10 * 24 - 1, (tz, month)
            assert all(a.at <= b.at for a, b in zip(ticks, ticks[1:], strict=False))


# -- in one process -------------------------------------------------------------------------------


def test_create_list_get_pause_resume_delete(launch_dbos: Launch) -> None:
    @DBOS.workflow()
    def crud_target(at: datetime, context: Any) -> None:
        pass

    launch_dbos()
    DBOS.create_schedule(
        schedule_name="nightly_report",
        workflow_fn=crud_target,
        schedule="30 2 * * *",
        context={"region": "eu", "n": [1, 2]},
        cron_timezone="Europe/London",
        automatic_backfill=True,
    )
    DBOS.create_schedule(schedule_name="nightly%x", workflow_fn=crud_target, schedule="0 * * * *")
    DBOS.create_schedule(schedule_name="other", workflow_fn=crud_target, schedule="0 0 * * 0")
    got = DBOS.get_schedule("nightly_report")
    assert got is not None
    assert {k: v for k, v in got.items() if k != "schedule_id"} == {
        "schedule_name": "nightly_report",
        "workflow_name": crud_target.__qualname__,
        "workflow_class_name": None,
        "schedule": "30 2 * * *",
        "status": "ACTIVE",
        "context": {"region": "eu", "n": [1, 2]},
        "last_fired_at": None,
        "automatic_backfill": True,
        "cron_timezone": "Europe/London",
        "queue_name": None,
    }
    names = lambda found: [s["schedule_name"] for s in found]  # noqa: E731
    assert names(DBOS.list_schedules()) == ["nightly%x", "nightly_report", "other"]
    # A prefix is literal: its % and _ are not wildcards.
    assert names(DBOS.list_schedules(schedule_name_prefix="nightly_")) == ["nightly_report"]
    assert names(DBOS.list_schedules(schedule_name_prefix=["nightly%", "oth"])) == [
        "nightly%x",
        "other",
    ]
    assert names(DBOS.list_schedules(workflow_name="nope")) == []
    DBOS.pause_schedule("other")
    assert names(DBOS.list_schedules(status="PAUSED")) == ["other"]
    assert names(DBOS.list_schedules(status=["ACTIVE"])) == ["nightly%x", "nightly_report"]
    DBOS.resume_schedule("other")
    assert DBOS.get_schedule("other")["status"] == "ACTIVE"  # type: ignore[index]
    DBOS.delete_schedule("other")
    DBOS.delete_schedule("other")  # nothing to delete: no error, as in DBOS
    DBOS.pause_schedule("no-such-schedule")  # as in DBOS: nothing happens
    assert DBOS.get_schedule("other") is None
    assert asyncio.run(DBOS.get_schedule_async("nightly%x"))["schedule"] == "0 * * * *"  # type: ignore[index]
    assert names(asyncio.run(DBOS.list_schedules_async())) == ["nightly%x", "nightly_report"]


def test_ticks_fire_once_each_with_their_time_and_context_and_pause_stops_them(
    launch_dbos: Launch, db_url: str
) -> None:
    runs: list[tuple[str, datetime, Any]] = []

    @DBOS.workflow()
    def every_second(at: datetime, context: Any) -> None:
        runs.append((DBOS.workflow_id, at, context))  # type: ignore[arg-type]

    launch_dbos()
    DBOS.create_schedule(
        schedule_name="sec", workflow_fn=every_second, schedule="* * * * * *", context={"k": 1}
    )
    DBOS.create_schedule(
        schedule_name="sec-ny",
        workflow_fn=every_second,
        schedule="* * * * * *",
        cron_timezone="America/New_York",
    )
    _wait_for(lambda: len([r for r in runs if r[0].startswith("sched-sec-2")]) >= 2, 5, "ticks")
    _wait_for(lambda: any(r[0].startswith("sched-sec-ny-") for r in runs), 5, "the NY ticks")
    for wid, at, context in runs:
        assert at.microsecond == 0
        if wid.startswith("sched-sec-ny-"):
            assert at.tzinfo is not None and at.utcoffset() == NEW_YORK.utcoffset(at)
            assert wid == f"sched-sec-ny-{at.isoformat()}" and context is None
        else:
            assert wid == f"sched-sec-{at.isoformat()}" and at.utcoffset() == timedelta(0)
            assert context == {"k": 1}
    # Each tick's workflow is one row, and its ID names the tick: no tick ran twice.
    ids = [r[0] for r in runs]
    assert len(ids) == len(set(ids))
    fired = DBOS.get_schedule("sec")["last_fired_at"]  # type: ignore[index]
    assert fired is not None and datetime.fromisoformat(fired).tzinfo is not None

    DBOS.pause_schedule("sec")
    paused_at = datetime.now(UTC)
    time.sleep(2.0)
    before = _tick_ids(db_url, "sec")
    # Paused: no tick after the pause fired (one that came due before it may have gone in).
    assert max(_seconds(before, "sec")) <= paused_at
    DBOS.resume_schedule("sec")
    _wait_for(lambda: len(_tick_ids(db_url, "sec")) > len(before), 4, "a tick after resume")
    DBOS.delete_schedule("sec")
    DBOS.delete_schedule("sec-ny")


def test_backfill_runs_each_tick_once_and_again_creates_nothing(
    launch_dbos: Launch, db_url: str
) -> None:
    runs: list[datetime] = []

    @DBOS.workflow()
    def hourly(at: datetime, context: Any) -> str:
        runs.append(at)
        return f"{context}@{at.isoformat()}"

    launch_dbos()
    DBOS.create_schedule(
        schedule_name="hourly",
        workflow_fn=hourly,
        schedule="0 * * * *",
        context="ctx",
        cron_timezone="America/New_York",
    )
    # The night New York springs forward: 23:00 EST .. 05:00 EDT, the window's ends excluded.
    start = datetime(2026, 3, 8, 4, 0, tzinfo=UTC)  # 23:00 EST, excluded
    end = datetime(2026, 3, 8, 9, 0, tzinfo=UTC)  # 05:00 EDT, excluded
    handles = DBOS.backfill_schedule("hourly", start, end)
    ids = [h.workflow_id for h in handles]
    assert ids == [
        "sched-hourly-2026-03-08T00:00:00-05:00",
        "sched-hourly-2026-03-08T01:00:00-05:00",
        "sched-hourly-2026-03-08T02:00:00-05:00",  # the skipped hour, at 03:00 EDT
        "sched-hourly-2026-03-08T03:00:00-04:00",
        "sched-hourly-2026-03-08T04:00:00-04:00",
    ]
    results = [h.get_result() for h in handles]
    assert results[2] == "ctx@2026-03-08T03:00:00-04:00"
    # Again, and over a wider window: the same workflows, none run twice, one new tick.
    again = DBOS.backfill_schedule("hourly", start, end + timedelta(hours=1))
    assert [h.workflow_id for h in again] == [*ids, "sched-hourly-2026-03-08T05:00:00-04:00"]
    for h in again:
        h.get_result()
    # Each tick ran once (two of them at the same instant: the skipped hour and the next).
    assert len(runs) == 6 and len(set(runs)) == 5
    assert len(_tick_ids(db_url, "hourly")) == 6
    # Each run records the schedule that enqueued it (DBOS's schedule_name): a filter finds them.
    by_schedule = DBOS.list_workflows(schedule_name="hourly")
    assert sorted(w.workflow_id for w in by_schedule) == sorted(_tick_ids(db_url, "hourly"))
    assert {w.schedule_name for w in by_schedule} == {"hourly"}
    assert DBOS.list_workflows(schedule_name=["other"]) == []
    # A naive window is UTC, as in DBOS.
    naive = DBOS.backfill_schedule("hourly", datetime(2026, 3, 8, 4), datetime(2026, 3, 8, 6, 30))
    assert [h.workflow_id for h in naive] == ids[:2]


def test_trigger_runs_now_on_the_schedules_queue(launch_dbos: Launch) -> None:
    reports = Queue("reports")

    @DBOS.workflow()
    def on_demand(at: datetime, context: Any) -> Any:
        return [context, DBOS.workflow_id]

    launch_dbos()
    DBOS.create_schedule(
        schedule_name="weekly",
        workflow_fn=on_demand,
        schedule="0 9 * * 1",
        context={"to": "ops"},
        queue_name=reports.name,
    )
    before = datetime.now(UTC)
    handle = DBOS.trigger_schedule("weekly")
    context, wid = handle.get_result()
    assert context == {"to": "ops"} and wid == handle.workflow_id
    assert wid.startswith("sched-weekly-trigger-")
    assert datetime.fromisoformat(wid.removeprefix("sched-weekly-trigger-")) >= before
    status = handle.get_status()
    assert status.queue_name == "reports" and status.name == on_demand.__qualname__
    assert status.schedule_name == "weekly"
    # Another trigger is another run.
    assert DBOS.trigger_schedule("weekly").workflow_id != wid


def test_bad_input_is_refused_before_anything_is_stored(launch_dbos: Launch) -> None:
    @DBOS.workflow()
    def target(at: datetime, context: Any) -> None:
        pass

    def not_a_workflow(at: datetime, context: Any) -> None:
        pass

    @DBOS.workflow()
    def in_workflow() -> None:
        DBOS.backfill_schedule("ok", datetime(2026, 1, 1), datetime(2026, 1, 2))

    launch_dbos()
    DBOS.create_schedule(schedule_name="ok", workflow_fn=target, schedule="0 * * * *")
    good: dict[str, Any] = {"schedule_name": "new", "workflow_fn": target, "schedule": "* * * * *"}
    cases: list[tuple[dict[str, Any], str]] = [
        ({"schedule": "every minute"}, "invalid cron expression"),
        ({"schedule": "61 * * * *"}, "invalid cron expression"),
        ({"cron_timezone": "Mars/Olympus_Mons"}, "invalid cron_timezone"),
        ({"cron_timezone": ""}, "invalid cron_timezone"),
        ({"workflow_fn": not_a_workflow}, "is not a @DBOS.workflow"),
        ({"schedule_name": "ok"}, "Schedule 'ok' already exists"),
        ({"schedule_name": ""}, "invalid schedule_name"),
        ({"queue_name": "undeclared"}, "Queue 'undeclared' is not declared"),
        ({"context": object()}, "cannot be serialized|not JSON|serializ"),
        ({"automatic_backfill": "yes"}, "invalid automatic_backfill"),
    ]
    for change, message in cases:
        with pytest.raises(DBOSException, match=message):
            DBOS.create_schedule(**{**good, **change})
    with pytest.raises(DBOSException, match="is before its start"):
        DBOS.backfill_schedule("ok", datetime(2026, 1, 2), datetime(2026, 1, 1))
    with pytest.raises(DBOSException, match="invalid start"):
        DBOS.backfill_schedule("ok", "yesterday", datetime(2026, 1, 1))  # type: ignore[arg-type]
    with pytest.raises(DBOSException, match="reaches past the dates Python represents"):
        DBOS.backfill_schedule("ok", datetime.max - timedelta(minutes=3), datetime.max)
    # An hourly schedule over 2 years: 17,520 ticks, more than one call enqueues.
    with pytest.raises(DBOSException, match="more than 10000 ticks .* split the window"):
        DBOS.backfill_schedule("ok", datetime(2026, 1, 1), datetime(2028, 1, 1))
    with pytest.raises(DBOSException, match="Schedule 'missing' does not exist"):
        DBOS.backfill_schedule("missing", datetime(2026, 1, 1), datetime(2026, 1, 2))
    with pytest.raises(DBOSException, match="Schedule 'missing' does not exist"):
        DBOS.trigger_schedule("missing")
    with pytest.raises(DBOSException, match="missing required field 'schedule'"):
        DBOS.apply_schedules([good, {"schedule_name": "x", "workflow_fn": target}])  # type: ignore[list-item]
    with pytest.raises(DBOSException, match="cannot be called from within a workflow"):
        DBOS.start_workflow(in_workflow).get_result()
    assert [s["schedule_name"] for s in DBOS.list_schedules()] == ["ok"]
    assert DBOS.list_workflows(workflow_id_prefix="sched-") == []


def test_a_cron_that_never_fires_is_refused_and_a_stored_one_stops_no_other(
    launch_dbos: Launch, db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    decorated: list[datetime] = []

    @DBOS.workflow()
    def managed(at: datetime, context: Any) -> None:
        pass

    @DBOS.scheduled("* * * * * *")
    @DBOS.workflow()
    def decorated_tick(scheduled: datetime, actual: datetime) -> None:
        decorated.append(scheduled)

    try:
        launch_dbos()
        never = "0 0 30 2 *"  # 30 February
        with pytest.raises(DBOSException, match="never fires"):
            DBOS.create_schedule(schedule_name="feb30", workflow_fn=managed, schedule=never)
        with pytest.raises(DBOSException, match="never fires"):
            DBOS.apply_schedules(
                [{"schedule_name": "feb30", "workflow_fn": managed, "schedule": never}]
            )
        with DBOSClient(db_url) as client, pytest.raises(DBOSException, match="never fires"):
            client.create_schedule(
                schedule_name="feb30", workflow_name=managed.__qualname__, schedule=never
            )
        with pytest.raises(DBOSException, match="never fires"):
            DBOS.scheduled("0 0 31 4 * ")  # 31 April
        assert DBOS.list_schedules() == []
        # A row an older version (or SQL) stored, beside a good schedule: the scheduler thread
        # sets it aside, logged once, and keeps firing the good one and the decorated one.
        _query(
            db_url,
            "INSERT INTO dbos.workflow_schedules (schedule_id, schedule_name, workflow_name, "
            "schedule, status, context, automatic_backfill) "
            "VALUES ('bad-id', 'feb30', %s, %s, 'ACTIVE', 'null', false) RETURNING 1",
            (managed.__qualname__, never),
        )
        DBOS.create_schedule(schedule_name="good", workflow_fn=managed, schedule="* * * * * *")
        since = datetime.now(UTC)
        _wait_for(lambda: len(_tick_ids(db_url, "good")) >= 3, 6, "the good schedule's ticks")
        _wait_for(lambda: sum(t >= since for t in decorated) >= 3, 3, "the decorated ticks")
        assert _tick_ids(db_url, "feb30") == []
        skipped = [r for r in caplog.records if "feb30 cannot be scheduled" in r.getMessage()]
        assert len(skipped) == 1, skipped
    finally:
        DBOS.destroy()
        from runtime import scheduler

        scheduler._schedules.clear()  # keep the decorated schedule out of later tests


def test_calls_in_a_workflow_are_steps_and_apply_replaces(launch_dbos: Launch) -> None:
    @DBOS.workflow()
    def target(at: datetime, context: Any) -> None:
        pass

    @DBOS.workflow()
    def manage() -> str:
        DBOS.create_schedule(schedule_name="made", workflow_fn=target, schedule="0 * * * *")
        DBOS.pause_schedule("made")
        return DBOS.get_schedule("made")["status"]  # type: ignore[index]

    launch_dbos()
    handle = DBOS.start_workflow(manage)
    assert handle.get_result() == "PAUSED"
    steps = [s["function_name"] for s in DBOS.list_workflow_steps(handle.workflow_id)]
    assert steps == ["DBOS.createSchedule", "DBOS.pauseSchedule", "DBOS.getSchedule"]
    # apply_schedules replaces the definition and keeps the status; creates the new ones.
    DBOS.apply_schedules(
        [
            {"schedule_name": "made", "workflow_fn": target, "schedule": "*/5 * * * *"},
            {"schedule_name": "fresh", "workflow_fn": target, "schedule": "0 0 * * *"},
        ]
    )
    made = DBOS.get_schedule("made")
    assert made is not None and made["schedule"] == "*/5 * * * *" and made["status"] == "PAUSED"
    assert DBOS.get_schedule("fresh")["status"] == "ACTIVE"  # type: ignore[index]


def test_client_manages_schedules_that_the_app_runs(launch_dbos: Launch, db_url: str) -> None:
    seen: list[str] = []

    @DBOS.workflow(name="client_target")
    def client_target(at: datetime, context: Any) -> None:
        seen.append(DBOS.workflow_id)  # type: ignore[arg-type]

    launch_dbos()
    with DBOSClient(db_url) as client:
        client.create_schedule(
            schedule_name="from-client",
            workflow_name="client_target",
            schedule="* * * * * *",
            context=[1, "two"],
        )
        with pytest.raises(DBOSException, match="already exists"):
            client.create_schedule(
                schedule_name="from-client", workflow_name="x", schedule="* * * * *"
            )
        with pytest.raises(DBOSException, match="invalid cron_timezone"):
            client.create_schedule(
                schedule_name="bad",
                workflow_name="x",
                schedule="* * * * *",
                cron_timezone="Nowhere",
            )
        # The app sees the client's schedule at its next poll (each second after launch).
        _wait_for(lambda: any(w.startswith("sched-from-client-2") for w in seen), 5, "a tick")
        client.pause_schedule("from-client")
        got: WorkflowSchedule | None = client.get_schedule("from-client")
        assert got is not None and got["status"] == "PAUSED" and got["context"] == [1, "two"]
        assert [s["schedule_name"] for s in client.list_schedules(status="PAUSED")] == [
            "from-client"
        ]
        window = (datetime(2026, 1, 1, 0, 0, 0), datetime(2026, 1, 1, 0, 0, 3))
        first = [h.workflow_id for h in client.backfill_schedule("from-client", *window)]
        assert first == [
            "sched-from-client-2026-01-01T00:00:01+00:00",
            "sched-from-client-2026-01-01T00:00:02+00:00",
        ]
        assert [h.workflow_id for h in client.backfill_schedule("from-client", *window)] == first
        triggered = client.trigger_schedule("from-client")
        assert triggered.get_result() is None
        client.apply_schedules(
            [
                {
                    "schedule_name": "applied",
                    "workflow_name": "client_target",
                    "schedule": "0 * * * *",
                }
            ]
        )
        asyncio.run(client.delete_schedule_async("applied"))
        client.delete_schedule("from-client")
        assert client.list_schedules() == []
    assert triggered.workflow_id in seen and set(first) <= set(seen)


# -- processes ------------------------------------------------------------------------------------


class Executors:
    """`dbos start` processes serving tests/apps/schedule_app.py."""

    def __init__(self, db_url: str) -> None:
        self.db_url = db_url
        self.procs: list[subprocess.Popen[str]] = []

    def start(self, name: str) -> subprocess.Popen[str]:
        env = clean_env(
            DBOS_DATABASE_URL=self.db_url, DBOS__VMID=name, DBOS_EXECUTOR_LEASE_SECONDS="2"
        )
        env["PYTHONPATH"] = str(ROOT)
        proc = subprocess.Popen(
            [DBOS_EXE, "start", "tests/apps/schedule_app.py"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.procs.append(proc)
        assert proc.stdout is not None
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if "serving" in line:
                return proc
        raise AssertionError("".join(lines))

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture
def executors(db_url: str) -> Iterator[Executors]:
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(RUNS_DDL)
    group = Executors(db_url)
    try:
        yield group
    finally:
        group.stop_all()


def _assert_every_second_once(db_url: str, name: str) -> list[str]:
    """The schedule's ticks form an unbroken run of seconds, each one workflow that succeeded
    and ran its step; returns the tick IDs."""
    with DBOSClient(db_url) as client:
        client.pause_schedule(name)

    def all_done() -> bool:
        rows = _query(
            db_url,
            "SELECT count(*) FROM dbos.workflow_status WHERE workflow_uuid LIKE %s "
            "AND status <> 'SUCCESS'",
            (f"sched-{name}-2%",),
        )
        return rows[0][0] == 0

    # A tick that came due before the pause may still be going in: wait until nothing changes.
    ids = _tick_ids(db_url, name)
    while True:
        _wait_for(all_done, 15, "every tick's workflow to finish")
        time.sleep(0.3)
        settled = _tick_ids(db_url, name)
        if settled == ids:
            break
        ids = settled
    seconds = _seconds(ids, name)
    span = int((seconds[-1] - seconds[0]).total_seconds())
    assert seconds == [seconds[0] + timedelta(seconds=s) for s in range(span + 1)], ids
    ran = {r[0] for r in _query(db_url, "SELECT workflow_id FROM sched_runs")}
    assert ran == set(ids)
    return ids


def test_two_executors_run_each_tick_exactly_once(executors: Executors, db_url: str) -> None:
    executors.start("exec-a")
    executors.start("exec-b")
    with DBOSClient(db_url) as client:
        client.create_schedule(
            schedule_name="both", workflow_name="sched_tick", schedule="* * * * * *"
        )
    _wait_for(lambda: len(_tick_ids(db_url, "both")) >= 4, 10, "four ticks")
    ids = _assert_every_second_once(db_url, "both")
    # Both executors fire every tick; each tick still ran once: one row per tick.
    rows = _query(db_url, "SELECT workflow_id, count(*) FROM sched_runs GROUP BY workflow_id")
    assert sorted(r[0] for r in rows) == ids and {r[1] for r in rows} == {1}


def test_ticks_missed_while_killed_are_backfilled_once_at_relaunch(
    executors: Executors, db_url: str
) -> None:
    first = executors.start("exec-a")
    with DBOSClient(db_url) as client:
        client.create_schedule(
            schedule_name="durable",
            workflow_name="sched_tick",
            schedule="* * * * * *",
            automatic_backfill=True,
        )
    _wait_for(lambda: len(_tick_ids(db_url, "durable")) >= 2, 10, "two ticks")
    first.send_signal(signal.SIGKILL)
    first.wait()
    killed_at = datetime.now(UTC)
    before = _tick_ids(db_url, "durable")
    time.sleep(2.5)  # ticks pass with no executor at all
    executors.start("exec-b")
    relaunched_at = datetime.now(UTC)
    _wait_for(
        lambda: _seconds(_tick_ids(db_url, "durable"), "durable")[-1] > relaunched_at, 10, "ticks"
    )
    ids = _assert_every_second_once(db_url, "durable")
    # The seconds nobody was running are there (backfilled), and what the killed executor had
    # fired was not fired again: every tick is one workflow, all in one unbroken run.
    assert set(before) <= set(ids)
    missed = [s for s in _seconds(ids, "durable") if killed_at < s < relaunched_at]
    assert len(missed) >= 2


# -- the CLI --------------------------------------------------------------------------------------


def test_cli_schedule_commands(db_url: str) -> None:
    env = clean_env(DBOS_DATABASE_URL=db_url)
    with DBOSClient(db_url) as client:
        client.create_schedule(
            schedule_name="cli-sched",
            workflow_name="sched_tick",
            schedule="0 * * * *",
            context={"who": "[bold]cli[/bold]"},
            cron_timezone="Europe/London",
        )
    listed = dbos("schedule", "list", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    (row,) = json.loads(listed.stdout)
    assert row["schedule_name"] == "cli-sched" and row["cron_timezone"] == "Europe/London"
    assert row["context"] == {"who": "[bold]cli[/bold]"}
    got = dbos("schedule", "get", "cli-sched", env=env)
    assert got.returncode == 0 and "Europe/London" in got.stdout
    assert "[bold]cli[/bold]" in got.stdout  # database text is escaped, never read as markup
    paused = dbos("schedule", "pause", "cli-sched", "--json", env=env)
    assert json.loads(paused.stdout) == {"paused": "cli-sched"}
    with DBOSClient(db_url) as client:
        assert client.get_schedule("cli-sched")["status"] == "PAUSED"  # type: ignore[index]
    backfill = ["schedule", "backfill", "cli-sched", "2026-06-01T00:30:00", "2026-06-01T03:00:00"]
    first = json.loads(dbos(*backfill, "--json", env=env).stdout)
    assert (
        first["workflow_ids"]
        == first["new_workflow_ids"]
        == [
            "sched-cli-sched-2026-06-01T02:00:00+01:00",
            "sched-cli-sched-2026-06-01T03:00:00+01:00",
        ]
    )
    # Again, one hour wider: three ticks, one of them new, and the output says so.
    backfill[-1] = "2026-06-01T04:00:00"
    again = dbos(*backfill, env=env)
    assert again.returncode == 0, again.stderr
    assert "backfilled cli-sched: 3 ticks, 1 newly enqueued" in again.stdout
    assert again.stdout.count("(already enqueued)") == 2
    trig = dbos("schedule", "trigger", "cli-sched", env=env)
    assert trig.returncode == 0 and "sched-cli-sched-trigger-" in trig.stdout
    runs = dbos("workflow", "list", "--schedule", "cli-sched", "--json", env=env)
    assert runs.returncode == 0, runs.stderr
    found = json.loads(runs.stdout)
    assert found and {w["schedule_name"] for w in found} == {"cli-sched"}
    assert any(w["workflow_id"].startswith("sched-cli-sched-trigger-") for w in found)
    for bad in (
        ["schedule", "get", "nope"],
        ["schedule", "backfill", "cli-sched", "2026-06-02", "yesterday"],
        ["schedule", "backfill", "cli-sched", "0001-01-01", "9999-12-31"],
    ):
        result = dbos(*bad, env=env)
        assert result.returncode == 1, bad
        assert result.stderr.startswith("error:") and "Traceback" not in result.stderr, bad
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    deleted = dbos("schedule", "delete", "cli-sched", env=env)
    assert deleted.returncode == 0 and "deleted" in deleted.stdout
    with DBOSClient(db_url) as client:
        assert client.list_schedules() == []

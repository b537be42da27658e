"""Streams: DBOS.write_stream / close_stream / read_stream / read_stream_offset (and the async
twins, DBOSClient's readers and `dbos workflow stream`), against a real Postgres; exactly once
across a SIGKILL of a real process."""

from __future__ import annotations

import asyncio
import json
import os
import re
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
    DBOSNonExistentWorkflowError,
    DBOSSerializationError,
    DBOSStreamTimeoutError,
    SetWorkflowID,
)
from tests.cli_helpers import DBOS as DBOS_EXE
from tests.cli_helpers import clean_env, dbos

Launch = Callable[..., None]
ROOT = Path(__file__).resolve().parent.parent
CLOSED = json.dumps("__DBOS_STREAM_CLOSED__")


def _rows(url: str, wid: str, key: str = "out") -> list[tuple[int, Any]]:
    """The stream as stored: (offset, decoded value), in offset order."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            'SELECT "offset", value FROM dbos.streams WHERE workflow_uuid = %s AND key = %s '
            'ORDER BY "offset"',
            (wid, key),
        ).fetchall()
    return [(int(offset), json.loads(value)) for offset, value in rows]


def _step_names(url: str, wid: str) -> list[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT function_name FROM dbos.operation_outputs WHERE workflow_uuid = %s "
            "ORDER BY function_id",
            (wid,),
        ).fetchall()
    return [str(r[0]).rsplit(".", 1)[-1] if "<locals>" in r[0] else str(r[0]) for r in rows]


def _until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def test_values_are_written_once_in_order_and_the_stream_closes(
    launch_dbos: Launch, db_url: str
) -> None:
    @DBOS.step()
    def work(i: int) -> int:
        return i

    @DBOS.workflow()
    def writer() -> None:
        for i in range(5):
            DBOS.write_stream("out", {"i": i, "text": f"value {i}"})
            work(i)
        DBOS.close_stream("out")

    launch_dbos()
    with SetWorkflowID("w-order"):
        writer()
    expected = [{"i": i, "text": f"value {i}"} for i in range(5)]
    assert _rows(db_url, "w-order") == [*enumerate(expected), (5, "__DBOS_STREAM_CLOSED__")]
    # Each write and the close is a step of the workflow, under DBOS's names.
    assert _step_names(db_url, "w-order") == [
        *["DBOS.writeStream", "work"] * 5,
        "DBOS.closeStream",
    ]
    assert list(DBOS.read_stream("w-order", "out")) == expected
    # Running the workflow again under its ID replays the writes: nothing is appended.
    with SetWorkflowID("w-order"):
        writer()
    assert len(_rows(db_url, "w-order")) == 6


def test_a_reader_started_first_gets_each_value_as_it_is_written(launch_dbos: Launch) -> None:
    """The reader waits on NOTIFY: its polling interval (30 s) is far longer than the test, so
    only the notification of each write can deliver the value in time."""

    @DBOS.workflow()
    def paced() -> None:
        for i in range(3):
            DBOS.recv("go", timeout_seconds=30)
            DBOS.write_stream("out", i)
        DBOS.recv("go", timeout_seconds=30)
        DBOS.close_stream("out")

    launch_dbos()
    with SetWorkflowID("w-paced"):
        handle = DBOS.start_workflow(paced)
    got: list[int] = []
    ended = threading.Event()

    def read_in_process() -> None:
        got.extend(DBOS.read_stream("w-paced", "out", polling_interval_sec=30))
        ended.set()

    reader = threading.Thread(target=read_in_process)
    reader.start()
    time.sleep(0.3)  # the reader is waiting on the empty stream
    for i in range(3):
        DBOS.send("w-paced", "next", topic="go")
        _until(lambda i=i: len(got) == i + 1, 4, f"value {i} to reach the reader")
        assert got == list(range(i + 1))
        assert not ended.is_set()
    DBOS.send("w-paced", "close", topic="go")
    _until(ended.is_set, 4, "the reader to see the close")
    handle.get_result()
    reader.join(10)
    assert got == [0, 1, 2]


def test_a_client_reader_waits_on_its_own_listen_connection(
    launch_dbos: Launch, db_url: str
) -> None:
    @DBOS.workflow()
    def paced() -> None:
        for i in range(2):
            DBOS.recv("go", timeout_seconds=30)
            DBOS.write_stream("out", f"v{i}")
        DBOS.close_stream("out")

    launch_dbos()
    with SetWorkflowID("w-client"):
        handle = DBOS.start_workflow(paced)
    got: list[str] = []
    with DBOSClient(db_url) as client:
        values = client.read_stream("w-client", "out", polling_interval_sec=30)
        thread = threading.Thread(target=lambda: got.extend(values))
        thread.start()
        time.sleep(0.3)
        DBOS.send("w-client", 1, topic="go")
        _until(lambda: got == ["v0"], 4, "the first value at the client")
        DBOS.send("w-client", 2, topic="go")
        thread.join(4)
        assert not thread.is_alive()
    assert got == ["v0", "v1"]
    handle.get_result()


def test_reading_resumes_from_an_offset(launch_dbos: Launch, db_url: str) -> None:
    @DBOS.workflow()
    def writer(n: int) -> None:
        for i in range(n):
            DBOS.write_stream("out", i)
        DBOS.close_stream("out")

    launch_dbos()
    with SetWorkflowID("w-offset"):
        writer(6)
    assert list(DBOS.read_stream("w-offset", "out", offset=4)) == [4, 5]
    assert list(DBOS.read_stream("w-offset", "out", offset=6)) == []
    assert DBOS.read_stream_offset("w-offset", "out", 2) == 2
    # Past the close, no value will ever come.
    with pytest.raises(DBOSStreamTimeoutError):
        DBOS.read_stream_offset("w-offset", "out", 7)
    with DBOSClient(db_url) as client:
        assert list(client.read_stream("w-offset", "out", offset=3)) == [3, 4, 5]
        assert client.read_stream_offset("w-offset", "out", 5) == 5

        async def read_async() -> tuple[list[int], int]:
            values = [v async for v in client.read_stream_async("w-offset", "out", offset=1)]
            return values, await client.read_stream_offset_async("w-offset", "out", 0)

        assert asyncio.run(read_async()) == ([1, 2, 3, 4, 5], 0)


def test_an_open_stream_times_out_and_an_ended_workflow_ends_it(launch_dbos: Launch) -> None:
    @DBOS.workflow()
    def unclosed() -> None:
        DBOS.write_stream("out", "only")
        DBOS.recv("end", timeout_seconds=30)

    launch_dbos()
    with SetWorkflowID("w-open"):
        handle = DBOS.start_workflow(unclosed)
    values = DBOS.read_stream("w-open", "out", timeout_seconds=0.3, polling_interval_sec=0.05)
    assert next(values) == "only"
    started = time.monotonic()
    with pytest.raises(DBOSStreamTimeoutError):
        next(values)
    assert time.monotonic() - started < 3
    # Never closed, but its workflow ended: the reader stops after the last value.
    DBOS.send("w-open", "stop", topic="end")
    handle.get_result()
    assert list(DBOS.read_stream("w-open", "out", polling_interval_sec=0.05)) == ["only"]


def test_write_from_a_step_is_not_a_step_of_its_own(launch_dbos: Launch, db_url: str) -> None:
    @DBOS.step()
    def produce() -> None:
        DBOS.write_stream("out", "from step")
        DBOS.close_stream("out")

    @DBOS.workflow()
    def wf() -> None:
        produce()

    launch_dbos()
    with SetWorkflowID("w-step"):
        wf()
    assert _rows(db_url, "w-step") == [(0, "from step"), (1, "__DBOS_STREAM_CLOSED__")]
    assert _step_names(db_url, "w-step") == ["produce"]


def test_bad_writes_and_reads_are_refused_before_anything_is_recorded(
    launch_dbos: Launch, db_url: str
) -> None:
    @DBOS.workflow()
    def unserializable() -> str:
        try:
            DBOS.write_stream("out", object())
        except DBOSSerializationError:
            pass
        try:
            DBOS.write_stream("o\x00ut", 1)  # Postgres text cannot hold a NUL
        except DBOSException:
            pass
        DBOS.write_stream("out", "after")
        return "ok"

    launch_dbos()
    with pytest.raises(DBOSException, match="inside a workflow"):
        DBOS.write_stream("out", 1)
    with pytest.raises(DBOSException, match="inside a workflow"):
        DBOS.close_stream("out")
    with SetWorkflowID("w-bad"):
        assert unserializable() == "ok"
    # The refused value took no offset and no step.
    assert _rows(db_url, "w-bad") == [(0, "after")]
    assert _step_names(db_url, "w-bad") == ["DBOS.writeStream"]
    with pytest.raises(DBOSNonExistentWorkflowError):
        list(DBOS.read_stream("no-such-workflow", "out"))
    with pytest.raises(DBOSException, match="offset"):
        DBOS.read_stream("w-bad", "out", offset=-1)
    with pytest.raises(DBOSException, match="offset"):  # past what a bigint read can add to
        list(DBOS.read_stream("w-bad", "out", offset=2**63 - 1))
    with pytest.raises(DBOSException, match="polling_interval_sec"):
        DBOS.read_stream("w-bad", "out", polling_interval_sec=0)
    with pytest.raises(DBOSException, match="timeout_seconds"):
        DBOS.read_stream_offset("w-bad", "out", 0, timeout_seconds=-1)
    with pytest.raises(DBOSException, match="timeout_seconds"):
        DBOS.read_stream("w-bad", "out", timeout_seconds="soon")  # type: ignore[arg-type]
    with pytest.raises(DBOSException, match="string"):
        DBOS.read_stream("w-bad", 7)  # type: ignore[arg-type]


def test_async_workflows_write_and_read_with_the_twins(launch_dbos: Launch, db_url: str) -> None:
    @DBOS.workflow()
    async def writer() -> None:
        for i in range(3):
            await DBOS.write_stream_async("out", i)
        await DBOS.close_stream_async("out")

    @DBOS.workflow()
    async def reader(wid: str) -> list[int]:
        return [v async for v in DBOS.read_stream_async(wid, "out")]

    launch_dbos()

    async def main() -> tuple[list[int], int]:
        with SetWorkflowID("w-async"):
            await writer()
        with SetWorkflowID("r-async"):
            values = await reader("w-async")
        return values, await DBOS.read_stream_offset_async("w-async", "out", 1)

    assert asyncio.run(main()) == ([0, 1, 2], 1)
    assert _rows(db_url, "w-async")[:3] == [(0, 0), (1, 1), (2, 2)]
    # Read in a workflow, each value and the end are recorded, so a replay sees the same.
    assert _step_names(db_url, "r-async") == ["DBOS.readStream"] * 4


def test_sigkill_mid_stream_then_recovery_writes_each_value_once_in_order(db_url: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DBOS", "KILL_AT"))}
    env["PYTHONPATH"] = str(ROOT)
    app = [sys.executable, "-m", "tests.apps.stream_app"]

    def run(mode: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*app, mode, db_url, "w-kill"],
            env={**env, **extra},
            capture_output=True,
            text=True,
            timeout=120,
            cwd=ROOT,
        )

    crashed = run("start", KILL_AT="after-write-3")
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    assert [v for _, v in _rows(db_url, "w-kill")] == [{"i": i} for i in range(4)]

    recovered = run("recover")
    assert recovered.returncode == 0, recovered.stderr
    assert recovered.stdout.strip() == str(sum(i * 10 for i in range(6)))
    assert _rows(db_url, "w-kill") == [
        *enumerate({"i": i} for i in range(6)),
        (6, "__DBOS_STREAM_CLOSED__"),
    ]
    with DBOSClient(db_url) as client:
        assert list(client.read_stream("w-kill", "out")) == [{"i": i} for i in range(6)]


def test_cli_prints_a_stream_as_a_table_and_as_json_lines(launch_dbos: Launch, db_url: str) -> None:
    @DBOS.workflow()
    def writer() -> None:
        DBOS.write_stream("out", {"n": 1})
        DBOS.write_stream("out", "[bold]x\x1b[31m")  # markup and a terminal escape
        DBOS.write_stream("out", 3)
        DBOS.close_stream("out")

    launch_dbos()
    with SetWorkflowID("w-cli"):
        writer()
    table = dbos("workflow", "stream", "w-cli", "out", "--db-url", db_url)
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["offset", "value"]
    assert lines[1].split(maxsplit=1) == ["0", '{"n": 1}']
    assert lines[2].split(maxsplit=1) == ["1", '"[bold]x\\u001b[31m"']
    assert "\x1b" not in table.stdout
    assert lines[3].split() == ["2", "3"]
    assert "end of stream (3 values)" in lines[4]

    as_json = dbos(
        "workflow", "stream", "w-cli", "out", "--from-offset", "1", "--json", "-D", db_url
    )
    assert as_json.returncode == 0, as_json.stderr
    assert [json.loads(line) for line in as_json.stdout.splitlines()] == [
        {"offset": 1, "value": "[bold]x\x1b[31m"},
        {"offset": 2, "value": 3},
    ]
    missing = dbos("workflow", "stream", "nope", "out", "-D", db_url)
    assert missing.returncode == 1
    assert "does not exist" in missing.stderr and "Traceback" not in missing.stderr
    assert missing.stdout == ""  # no table header before the error
    huge = dbos("workflow", "stream", "w-cli", "out", "--from-offset", str(2**63 - 1), "-D", db_url)
    assert huge.returncode == 1 and huge.stdout == ""
    assert huge.stderr.startswith("error:") and "offset" in huge.stderr, huge.stderr
    past_end = dbos("workflow", "stream", "w-cli", "out", "--from-offset", "3", "-D", db_url)
    assert past_end.returncode == 0, past_end.stderr
    assert past_end.stdout.split()[:2] == ["offset", "value"]
    assert "end of stream (0 values)" in past_end.stdout


def test_cli_follows_a_live_stream_and_stops_cleanly_on_ctrl_c(
    launch_dbos: Launch, db_url: str
) -> None:
    @DBOS.workflow()
    def paced() -> None:
        DBOS.write_stream("out", "first")
        DBOS.recv("go", timeout_seconds=60)
        DBOS.write_stream("out", "second")
        DBOS.recv("go", timeout_seconds=60)

    launch_dbos()
    with SetWorkflowID("w-follow"):
        handle = DBOS.start_workflow(paced)
    proc = subprocess.Popen(
        [DBOS_EXE, "workflow", "stream", "w-follow", "out", "--json", "-D", db_url],
        env=clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert json.loads(proc.stdout.readline()) == {"offset": 0, "value": "first"}
        DBOS.send("w-follow", 1, topic="go")
        # Printed while the workflow still runs: the command follows the stream.
        assert json.loads(proc.stdout.readline()) == {"offset": 1, "value": "second"}
        assert proc.poll() is None
        proc.send_signal(signal.SIGINT)
        rest, stderr = proc.communicate(timeout=10)
        assert proc.returncode == 130
        assert "Traceback" not in stderr
        # Where to pick up again goes to stderr: the values on stdout stay pure JSON lines. The
        # offset is never past a value not shown (1 when Ctrl-C lands between showing value 1
        # and counting it: value 1 is shown again on resume, never skipped).
        assert re.search(r"resume with --from-offset [12]\b", stderr), stderr
        assert "resume" not in rest
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    DBOS.send("w-follow", 2, topic="go")
    handle.get_result()


def test_a_fork_keeps_the_values_written_before_its_start_step(
    launch_dbos: Launch, db_url: str
) -> None:
    @DBOS.step()
    def work(i: int) -> int:
        return i

    @DBOS.workflow()
    def writer() -> None:
        for i in range(3):
            DBOS.write_stream("out", i)  # steps 1, 3, 5
            work(i)  # steps 2, 4, 6
        DBOS.close_stream("out")  # step 7

    launch_dbos()
    with SetWorkflowID("w-orig"):
        writer()
    fork = DBOS.fork_workflow("w-orig", 4)
    fork.get_result()
    # Values 0 and 1 come from the copy (their writes replay), 2 and the close from the re-run.
    assert _rows(db_url, fork.workflow_id) == _rows(db_url, "w-orig")
    assert list(DBOS.read_stream(fork.workflow_id, "out")) == [0, 1, 2]


def test_concurrent_writes_to_one_stream_each_get_their_own_offset(
    launch_dbos: Launch, db_url: str
) -> None:
    """Writes racing for the next offset (tasks of an async workflow): none is lost, none is
    doubled, and the offsets have no gap."""

    @DBOS.workflow()
    async def fan_out() -> None:
        await asyncio.gather(*(DBOS.write_stream_async("out", i) for i in range(20)))
        await DBOS.close_stream_async("out")

    launch_dbos()
    with SetWorkflowID("w-race"):
        asyncio.run(fan_out())
    rows = _rows(db_url, "w-race")
    assert [offset for offset, _ in rows] == list(range(21))
    assert sorted(v for _, v in rows[:20]) == list(range(20))
    assert rows[20][1] == "__DBOS_STREAM_CLOSED__"


def test_two_reads_at_once_in_one_workflow_are_refused(launch_dbos: Launch) -> None:
    """Concurrent reads would record their values under step numbers that depend on scheduling
    (DBOS's DBOSStreamNondeterminismError); sequential ones are fine."""

    @DBOS.workflow()
    def source() -> None:
        DBOS.write_stream("out", "a")
        DBOS.recv("go", timeout_seconds=30)
        DBOS.close_stream("out")

    @DBOS.workflow()
    async def two_readers() -> list[str]:
        async def consume() -> list[str]:
            return [v async for v in DBOS.read_stream_async("w-src", "out")]

        results = await asyncio.gather(consume(), consume(), return_exceptions=True)
        again = [v async for v in DBOS.read_stream_async("w-src", "out")]
        return sorted(type(r).__name__ for r in results) + again

    launch_dbos()
    with SetWorkflowID("w-src"):
        source_handle = DBOS.start_workflow(source)
    with SetWorkflowID("w-two"):
        handle = DBOS.start_workflow(two_readers)
    time.sleep(0.3)
    DBOS.send("w-src", "close", topic="go")
    assert handle.get_result() == ["DBOSStreamNondeterminismError", "list", "a"]
    source_handle.get_result()

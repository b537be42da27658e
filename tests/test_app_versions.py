"""Application versions: launch registers its version, the latest is listed first and can be
set (``DBOS`` and ``DBOSClient``, sync and async); a workflow resumed, restarted or forked onto a
version no live executor runs is reported (a logged warning from the API, one line from the CLI);
and the CLI's `dbos version` commands and the version options of `dbos workflow`."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable

import psycopg
import pytest

from runtime import DBOS, DBOSClient, DBOSException
from tests.cli_helpers import dbos


def _names(versions: list[dict[str, object]] | list[object]) -> list[str]:
    return [v["version_name"] for v in versions]  # type: ignore[index]


@DBOS.workflow()
def waits_for_go() -> str:
    """Parks until a message comes; the tests cancel it, so it stays unfinished."""
    got = DBOS.recv("go", timeout_seconds=60)
    return f"got {got}"


def _cancelled_on(launch_dbos: Callable[..., None], version: str) -> str:
    """A workflow of ``version`` cancelled mid-wait; the runtime stays launched on it."""
    launch_dbos(application_version=version)
    handle = DBOS.start_workflow(waits_for_go)
    DBOS.cancel_workflow(handle.workflow_id)
    return handle.workflow_id


def _relaunch(launch_dbos: Callable[..., None], version: str) -> None:
    DBOS.destroy()
    launch_dbos(application_version=version)


def test_launch_registers_versions_and_latest_can_be_set(
    launch_dbos: Callable[..., None], db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    launch_dbos(application_version="v1")
    [v1] = DBOS.list_application_versions()
    assert v1["version_name"] == "v1" and v1["version_timestamp"] >= v1["created_at"] > 0
    assert set(v1) == {"version_id", "version_name", "version_timestamp", "created_at"}
    _relaunch(launch_dbos, "v2")
    assert _names(DBOS.list_application_versions()) == ["v2", "v1"]
    assert DBOS.get_latest_application_version()["version_name"] == "v2"

    # Relaunching an old version keeps its timestamp (it does not become the latest) and warns.
    caplog.set_level(logging.WARNING, logger="dbos")
    _relaunch(launch_dbos, "v1")
    assert DBOS.get_latest_application_version()["version_name"] == "v2"
    assert any("'v1' is not the latest" in r.getMessage() for r in caplog.records)

    DBOS.set_latest_application_version("v1")
    assert _names(DBOS.list_application_versions()) == ["v1", "v2"]
    with pytest.raises(DBOSException, match="'nope' is not registered"):
        DBOS.set_latest_application_version("nope")
    with pytest.raises(DBOSException, match="invalid application version"):
        DBOS.set_latest_application_version("")
    with pytest.raises(DBOSException, match="unpaired surrogate"):
        DBOS.set_latest_application_version("v\ud800")

    async def twins() -> str:
        await DBOS.set_latest_application_version_async("v2")
        assert _names(await DBOS.list_application_versions_async()) == ["v2", "v1"]
        return (await DBOS.get_latest_application_version_async())["version_name"]

    assert asyncio.run(twins()) == "v2"
    with DBOSClient(system_database_url=db_url) as client:
        assert client.list_application_versions() == DBOS.list_application_versions()
        client.set_latest_application_version("v1")
        assert client.get_latest_application_version()["version_name"] == "v1"
        assert asyncio.run(client.get_latest_application_version_async())["version_name"] == "v1"


def test_unserved_version_is_reported_by_the_api(
    launch_dbos: Callable[..., None], db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A v1 workflow resumed, restarted or forked while only v2 runs: a warning naming v1 and
    the live versions. On v2 (forked onto it, or resumed onto the latest) it runs, unreported."""
    wid = _cancelled_on(launch_dbos, "v1")
    _relaunch(launch_dbos, "v2")
    caplog.set_level(logging.WARNING, logger="dbos")

    def warned() -> list[str]:
        found = [r.getMessage() for r in caplog.records if hasattr(r, "dbos_unserved_workflow")]
        caplog.clear()
        return found

    DBOS.resume_workflow(wid)
    [line] = warned()
    assert f"workflow {wid} is on application version 'v1'" in line
    assert "no live executor runs (live versions: 'v2')" in line
    DBOS.cancel_workflow(wid)
    restarted = DBOS.restart_workflow(wid)
    assert restarted.workflow_id in warned()[0]
    DBOS.cancel_workflow(restarted.workflow_id)
    forked = DBOS.fork_workflow(wid, 1)
    assert forked.workflow_id in warned()[0]
    DBOS.cancel_workflow(forked.workflow_id)

    on_v2 = DBOS.fork_workflow(wid, 1, application_version="v2")
    assert warned() == []
    DBOS.send(on_v2.workflow_id, "ok", "go")
    assert on_v2.get_result() == "got ok"

    with DBOSClient(system_database_url=db_url) as client:
        client.resume_workflow(wid)  # the client warns too
        assert len(warned()) == 1
        DBOS.cancel_workflow(wid)
        assert client.resolve_application_version(None, True) == "v2"
        [change] = client.resume_each_on([wid], "v2")
        assert change.changed and client.unserved_workflows([wid]) == []
    assert DBOS.get_workflow_status(wid).app_version == "v2"  # type: ignore[union-attr]
    DBOS.send(wid, "late", "go")
    assert DBOS.retrieve_workflow(wid).get_result() == "got late"

    # Every workflow a resume takes moves with it: also one whose process died mid-run (PENDING,
    # its owner gone) and a DELAYED one, the ones an operator most needs to move.
    dead = DBOS.start_workflow(waits_for_go).workflow_id
    DBOS.cancel_workflow(dead)
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            "UPDATE dbos.workflow_status SET status = 'PENDING', application_version = 'v1', "
            "owner_process = 'a-process-that-died' WHERE workflow_uuid = %s",
            (dead,),
        )
    with DBOSClient(system_database_url=db_url) as client:
        delayed = client.enqueue(
            {"workflow_name": waits_for_go.__qualname__, "queue_name": "_dbos_internal_queue",
             "app_version": "v1", "delay_seconds": 3600}
        ).workflow_id  # fmt: skip
        changes = client.resume_each_on([dead, delayed], "v2")
        assert [c.changed for c in changes] == [True, True], changes
    for moved in (dead, delayed):
        assert DBOS.get_workflow_status(moved).app_version == "v2"  # type: ignore[union-attr]
        DBOS.cancel_workflow(moved)


def test_cli_versions_and_workflow_version_options(
    launch_dbos: Callable[..., None], db_url: str
) -> None:
    wid = _cancelled_on(launch_dbos, "v1")
    _relaunch(launch_dbos, "v2")  # this test process is the live executor of v2

    listed = dbos("version", "list", "--json", "--db-url", db_url)
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert [(r["version_name"], r["live"]) for r in rows] == [("v2", True), ("v1", False)]
    table = dbos("version", "list", "--db-url", db_url)
    assert "v2" in table.stdout and "latest" in table.stdout and table.returncode == 0
    assert (
        json.loads(dbos("version", "latest", "--json", "--db-url", db_url).stdout)["version_name"]
        == "v2"
    )
    assert dbos("version").stdout.startswith("dbos ")  # DBOS's `dbos version`

    bad = dbos("version", "set-latest", "nope", "--db-url", db_url)
    assert bad.returncode == 1 and "'nope' is not registered" in bad.stderr
    assert "Traceback" not in bad.stderr and len(bad.stderr.strip().splitlines()) == 1

    # Resuming the v1 workflow: one warning line naming its version and the live ones.
    resumed = dbos("workflow", "resume", wid, "--db-url", db_url)
    assert resumed.returncode == 0, resumed.stderr
    warning = [line for line in resumed.stderr.splitlines() if wid in line]
    assert len(warning) == 1 and "'v1'" in warning[0] and "live versions: 'v2'" in warning[0]
    assert "WARNING:dbos" not in resumed.stderr
    forked = dbos("workflow", "fork", wid, "--step", "1", "--json", "--db-url", db_url)
    fork_id = json.loads(forked.stdout)["workflow_id"]
    assert fork_id in forked.stderr and "'v1'" in forked.stderr
    DBOS.cancel_workflow(fork_id)

    # Onto the latest version (v2): no warning, and this process runs it.
    DBOS.cancel_workflow(wid)
    moved = dbos("workflow", "resume", wid, "--latest-version", "--json", "--db-url", db_url)
    assert moved.returncode == 0, moved.stderr
    assert json.loads(moved.stdout)["resumed"] == [wid] and wid not in moved.stderr
    DBOS.send(wid, "cli", "go")
    assert DBOS.retrieve_workflow(wid).get_result() == "got cli"
    restarted = dbos(
        "workflow", "restart", wid, "--application-version", "v1", "--json", "--db-url", db_url
    )
    new_id = json.loads(restarted.stdout)["workflow_id"]
    assert DBOS.get_workflow_status(new_id).app_version == "v1"  # type: ignore[union-attr]
    assert new_id in restarted.stderr
    DBOS.cancel_workflow(new_id)
    both = dbos("workflow", "restart", wid, "--latest-version", "-v", "v1", "--db-url", db_url)
    assert both.returncode == 1 and "not both" in both.stderr

    assert dbos("version", "set-latest", "v1", "--db-url", db_url).returncode == 0
    assert DBOS.get_latest_application_version()["version_name"] == "v1"

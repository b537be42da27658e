"""`dbos schedule ...`: the managed schedules of an application (DBOS's ``create_schedule``), seen
and steered through the system tables: list, get, pause, resume, backfill, trigger, delete.

Commands are thin: parse, call the client's schedule API, render. A schedule name that does not
exist is an error (exit 1) for every command that names one.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated

import typer

from dbos_cli import checks, render
from dbos_cli import render_schedules as show
from dbos_cli.options import DbUrl, JsonFlag, open_client
from runtime.errors import DBOSException

if TYPE_CHECKING:
    from runtime.client import DBOSClient

group = typer.Typer(
    help="List, inspect, pause, resume, backfill, trigger and delete managed schedules.",
    no_args_is_help=True,
)

Name = Annotated[str, typer.Argument(help="The schedule's name.")]


def _require(client: DBOSClient, name: str) -> None:
    if client.get_schedule(name) is None:
        raise DBOSException(f"no schedule named {name!r}")


@group.command("list")
def list_schedules(
    db_url: DbUrl = None,
    status: Annotated[
        list[str] | None,
        typer.Option(
            "--status",
            "-S",
            help="Only this status (repeatable): ACTIVE, PAUSED.",
            show_default=False,
        ),
    ] = None,
    workflow: Annotated[
        list[str] | None,
        typer.Option(
            "--workflow",
            "-n",
            help="Only schedules of this workflow (repeatable).",
            show_default=False,
        ),
    ] = None,
    prefix: Annotated[
        list[str] | None,
        typer.Option(
            "--prefix", "-p", help="Only names starting with this (repeatable).", show_default=False
        ),
    ] = None,
    json_output: JsonFlag = False,
) -> None:
    """List the schedules, by name."""
    for value in status or []:
        if value not in ("ACTIVE", "PAUSED"):
            raise DBOSException(f"invalid status {value!r}: expected ACTIVE or PAUSED")
    with open_client(db_url) as client:
        found = client.list_schedules(
            status=status or None,
            workflow_name=workflow or None,
            schedule_name_prefix=prefix or None,
        )
    if json_output:
        render.print_json([show.schedule_json(s) for s in found])
    else:
        show.schedule_table(found)


@group.command("get")
def get_schedule(name: Name, db_url: DbUrl = None, json_output: JsonFlag = False) -> None:
    """Show one schedule: its definition, status, last tick fired and context."""
    with open_client(db_url) as client:
        found = client.get_schedule(name)
    if found is None:
        raise DBOSException(f"no schedule named {name!r}")
    if json_output:
        render.print_json(show.schedule_json(found))
    else:
        show.schedule_panel(found)


def _set(name: str, db_url: str | None, json_output: bool, paused: bool) -> None:
    with open_client(db_url) as client:
        _require(client, name)
        if paused:
            client.pause_schedule(name)
        else:
            client.resume_schedule(name)
    verb = "paused" if paused else "resumed"
    if json_output:
        render.print_json({verb: name})
    else:
        render.success(f"{verb} schedule {name}")


@group.command("pause")
def pause(name: Name, db_url: DbUrl = None, json_output: JsonFlag = False) -> None:
    """Pause a schedule: from its next tick on it fires nothing, in any executor, until resumed."""
    _set(name, db_url, json_output, paused=True)


@group.command("resume")
def resume(name: Name, db_url: DbUrl = None, json_output: JsonFlag = False) -> None:
    """Resume a paused schedule."""
    _set(name, db_url, json_output, paused=False)


@group.command("delete")
def delete(name: Name, db_url: DbUrl = None, json_output: JsonFlag = False) -> None:
    """Delete a schedule (the workflows it started stay)."""
    with open_client(db_url) as client:
        _require(client, name)
        client.delete_schedule(name)
    if json_output:
        render.print_json({"deleted": name})
    else:
        render.success(f"deleted schedule {name}")


@group.command("backfill")
def backfill(
    name: Name,
    start: Annotated[
        datetime,
        typer.Argument(
            parser=checks.moment("START", naive_utc=True),
            help="Start of the window: ISO 8601 (no offset: UTC), or @SECONDS or "
            "@MILLISECONDSms since 1970.",
        ),
    ],
    end: Annotated[
        datetime,
        typer.Argument(
            parser=checks.moment("END", naive_utc=True), help="End of the window (as START)."
        ),
    ],
    db_url: DbUrl = None,
    json_output: JsonFlag = False,
) -> None:
    """Enqueue every tick strictly between START and END that has not run yet (running it again
    creates nothing); lists the workflow of every tick in the window, and says how many of them
    this run enqueued (JSON: ``workflow_ids`` and ``new_workflow_ids``)."""
    with open_client(db_url) as client:
        # The report rather than handles: which ticks this run enqueued.
        report = client.backfill_schedule_report(name, start, end)
    if json_output:
        render.print_json(
            {
                "workflow_ids": [wid for wid, _ in report],
                "new_workflow_ids": [wid for wid, new in report if new],
            }
        )
    else:
        show.backfilled(name, report)


@group.command("trigger")
def trigger(name: Name, db_url: DbUrl = None, json_output: JsonFlag = False) -> None:
    """Enqueue a run of the schedule's workflow now."""
    with open_client(db_url) as client:
        wid = client.trigger_schedule(name).workflow_id
    if json_output:
        render.print_json({"workflow_id": wid})
    else:
        show.workflow_ids(f"triggered {name}", [wid])


def register(app: typer.Typer) -> None:
    """Add `dbos schedule ...`."""
    app.add_typer(group, name="schedule")

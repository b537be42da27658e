"""`dbos executors` (also `dbos executor list`): who runs what, and what each version has left."""

from __future__ import annotations

import time
from dataclasses import asdict

import typer

from dbos_cli import render
from dbos_cli.options import DbUrl, JsonFlag, open_client

group = typer.Typer(help="Executor processes and their liveness.", no_args_is_help=True)


def executors(db_url: DbUrl = None, json_output: JsonFlag = False) -> None:
    """Show executor processes (alive, dead, stopped; duplicate IDs flagged) and, per application
    version, the work still pending or enqueued, so you know when an old deployment can go."""
    client = open_client(db_url)
    try:
        found = client.list_executors()
        versions = client.version_work()
    finally:
        client.destroy()
    if json_output:
        render.print_json(
            {
                "executors": [render.executor_json(e) for e in found],
                "versions": [asdict(v) for v in versions],
            }
        )
    else:
        render.executors_view(found, versions, int(time.time() * 1000))


def register(app: typer.Typer) -> None:
    """Add `dbos executors` and `dbos executor list`."""
    app.command("executors")(executors)
    group.command("list")(executors)
    app.add_typer(group, name="executor")

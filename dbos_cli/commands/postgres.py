"""`dbos postgres start | stop | status | url`: the project's embedded Postgres server."""

from __future__ import annotations

from pathlib import Path

import typer

from dbos_cli import render
from dbos_cli.options import JsonFlag, settings
from runtime.embedded import EmbeddedPostgres

group = typer.Typer(
    help="Manage the embedded Postgres server of this project (data in .dbos/pgdata).",
    no_args_is_help=True,
)


def _server() -> EmbeddedPostgres:
    return EmbeddedPostgres.for_project(settings().project_dir)


def _rel(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


@group.command("start")
def start() -> None:
    """Start the embedded server (initialising its data folder on first use)."""
    server = _server()
    was_running = server.status().running
    url = server.start()
    if was_running:
        render.info(f"The embedded Postgres already runs: {url}")
    else:
        render.success(f"Started the embedded Postgres ({_rel(server.data_dir)}): {url}")


@group.command("stop")
def stop() -> None:
    """Stop the embedded server."""
    server = _server()
    if server.stop():
        render.success("Stopped the embedded Postgres.")
    else:
        render.info("The embedded Postgres was not running.")


@group.command("status")
def status(json_output: JsonFlag = False) -> None:
    """Tell whether the embedded server runs, and where."""
    server = _server()
    st = server.status()
    if json_output:
        render.print_json(
            {
                "running": st.running,
                "port": st.port,
                "pid": st.pid,
                "data_dir": str(st.data_dir),
                "url": server.url() if st.port else None,
            }
        )
        return
    if st.running:
        render.info(f"The embedded Postgres runs (pid {st.pid}) at {server.url()}")
    else:
        render.info(f"The embedded Postgres is not running (data: {_rel(st.data_dir)}).")


@group.command("url")
def url() -> None:
    """Print the embedded server's URL (it has no password)."""
    render.info(_server().url())


def register(app: typer.Typer) -> None:
    """Add the group to the root app."""
    app.add_typer(group, name="postgres")

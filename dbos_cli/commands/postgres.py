"""`dbos postgres start | stop | status | url`: the project's embedded Postgres server."""

from __future__ import annotations

from pathlib import Path

import typer

from dbos_cli import render
from dbos_cli.options import JsonFlag, settings
from runtime.embedded import EmbeddedPostgres, ServerStatus, running_elsewhere

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


def _doc(server: EmbeddedPostgres, st: ServerStatus) -> dict[str, object]:
    return {
        "running": st.running,
        "port": st.port,
        "pid": st.pid,
        "data_dir": str(st.data_dir),
        "url": server.url() if st.port else None,
    }


@group.command("status")
def status(json_output: JsonFlag = False) -> None:
    """Tell whether this project's embedded server runs, and where; then every other embedded
    server this user started that still runs (each one's data folder, to stop it from there)."""
    server = _server()
    st = server.status()
    others = running_elsewhere(server)
    if json_output:
        render.print_json(_doc(server, st) | {"others": [_doc(s, o) for s, o in others]})
        return
    if st.running:
        render.info(f"The embedded Postgres runs (pid {st.pid}) at {server.url()}")
    else:
        render.info(f"The embedded Postgres is not running (data: {_rel(st.data_dir)}).")
    for other, ost in others:
        how = (
            f"cd {other.base_dir.parent} && dbos postgres stop"
            if other.base_dir.name == ".dbos"
            else f"kill -INT {ost.pid}"
        )
        render.info(
            f"Also running: pid {ost.pid} at {other.url()}, data {other.data_dir} (stop: {how})"
        )


@group.command("url")
def url() -> None:
    """Print the embedded server's URL (it has no password)."""
    render.info(_server().url())


def register(app: typer.Typer) -> None:
    """Add the group to the root app."""
    app.add_typer(group, name="postgres")

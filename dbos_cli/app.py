"""The root of the `dbos` command: global options, command groups, and the mapping of our errors to
one line on stderr and an exit code (1 for errors, 2 for usage errors)."""

from __future__ import annotations

import logging
import sys
from typing import Annotated

import typer

from dbos_cli import render
from dbos_cli.commands import check_replay as check_replay_cmd
from dbos_cli.commands import executors as executors_cmd
from dbos_cli.commands import init as init_cmd
from dbos_cli.commands import migrate as migrate_cmd
from dbos_cli.commands import postgres as postgres_cmd
from dbos_cli.commands import schedule as schedule_cmd
from dbos_cli.commands import start as start_cmd
from dbos_cli.commands import stream as stream_cmd
from dbos_cli.commands import ui as ui_cmd
from dbos_cli.commands import versions as versions_cmd
from dbos_cli.commands import workflow as workflow_cmd
from runtime.errors import DBOSException

app = typer.Typer(
    name="dbos",
    help="Operate durable workflows on Postgres: migrate the system tables, run an app, and "
    "inspect, cancel, resume or fork its workflows.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode="rich",
)


def package_version() -> str:
    """The installed version of this distribution."""
    from importlib.metadata import PackageNotFoundError, version  # only --version needs it

    try:
        return version("dbos-runtime")
    except PackageNotFoundError:
        return "unknown"


def _version_callback(value: bool) -> None:
    if value:
        sys.stdout.write(f"dbos {package_version()}\n")
        raise typer.Exit()


@app.callback()
def root(
    version_: Annotated[
        bool,
        typer.Option(
            "--version",
            help="Show the version and exit.",
            callback=_version_callback,
            is_eager=True,
        ),
    ] = False,
    debug: Annotated[
        bool, typer.Option("--debug", help="Show tracebacks and debug logs on errors.")
    ] = False,
) -> None:
    """Operate durable workflows on Postgres."""
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING)
    if not debug:
        # The pool's retries log a warning block per attempt; the command's own error says it
        # once (see options.system_url).
        logging.getLogger("psycopg.pool").setLevel(logging.ERROR)


init_cmd.register(app)
start_cmd.register(app)
migrate_cmd.register(app)
postgres_cmd.register(app)
workflow_cmd.register(app)
stream_cmd.register(workflow_cmd.group)
check_replay_cmd.register(workflow_cmd.group)
executors_cmd.register(app)
schedule_cmd.register(app)
ui_cmd.register(app)
versions_cmd.register(app)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point. Typer handles usage errors (exit 2); our errors become one line
    on stderr and exit 1, with the traceback only under --debug."""
    args = sys.argv[1:] if argv is None else argv
    try:
        app(args=args, prog_name="dbos")
    except DBOSException as exc:
        if "--debug" in args:
            raise
        render.error(str(exc))
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()

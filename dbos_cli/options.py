"""Options shared by many commands, declared once."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from dbos_cli import checks
from runtime.config import Settings, resolve
from runtime.embedded import resolve_system_url

if TYPE_CHECKING:
    from runtime.client import DBOSClient

DbUrl = Annotated[
    str | None,
    typer.Option(
        "--db-url",
        "-D",
        parser=checks.database_url("--db-url"),
        help="Database URL holding the system tables (default: DBOS_DATABASE_URL, the config "
        "file, else the project's embedded Postgres).",
        show_default=False,
    ),
]

SchemaOpt = Annotated[
    str | None,
    typer.Option(
        "--schema",
        help="Schema of the system tables (default: system_schema of the config file, else dbos).",
        show_default=False,
    ),
]

JsonFlag = Annotated[
    bool, typer.Option("--json", help="Print one JSON document on stdout and nothing else.")
]


def settings() -> Settings:
    """The resolved configuration of the current folder."""
    return resolve(None, cwd=Path.cwd())


def system_schema(schema: str | None = None) -> str:
    """The schema of the system tables: ``schema`` if given, else the configuration's."""
    return schema or settings().system_schema


def system_url(db_url: str | None, *, missing_database_ok: bool = False) -> str:
    """The database the command works on (starting the embedded server when that is the one),
    checked to be reachable: every command that touches the database resolves its URL here, so
    an unreachable server, a refused login, a missing database or an SSL mismatch is one line
    within about two seconds (``runtime.client.check_database``), before anything is printed or
    opened.
    ``missing_database_ok``: for a command that creates the database."""
    from runtime.client import check_database  # the driver loads here, not at the CLI's start

    s = settings()
    url = resolve_system_url(db_url, s.system_database_url or s.database_url, s.project_dir)
    check_database(url, missing_database_ok=missing_database_ok)
    return url


def open_client(db_url: str | None) -> DBOSClient:
    """A client of the system tables the command names (``--db-url``, else the configuration);
    a context manager that destroys it. The runtime and its driver load here, not when the CLI
    starts (so `dbos --version` is fast)."""
    from runtime.client import DBOSClient

    return DBOSClient(system_url(db_url), dbos_system_schema=system_schema())

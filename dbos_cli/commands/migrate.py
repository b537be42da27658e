"""`dbos migrate` and `dbos reset`: create, upgrade or drop the system schema."""

from __future__ import annotations

from typing import Annotated

import typer

from dbos_cli import render
from dbos_cli.options import DbUrl, SchemaOpt, system_schema, system_url
from runtime.config import redact_url


def migrate(db_url: DbUrl = None, schema_name: SchemaOpt = None) -> None:
    """Create or upgrade the system tables. Idempotent; safe to run from several processes."""
    from runtime import migrate as schema

    url = system_url(db_url, missing_database_ok=True)
    name = system_schema(schema_name)
    result = schema.migrate(url, name, create_database=True)
    where = redact_url(url) if name == "dbos" else f"schema {name!r} of {redact_url(url)}"
    if not result.applied:
        render.info(
            f"System schema is up to date (version {result.version}) in {where}; nothing changed."
        )
        return
    for m in result.applied:
        render.success(f"applied migration {m.version}: {m.description}")
    render.success(
        f"System schema at version {result.version} in {where} (was {result.previous_version})."
    )


def reset(
    db_url: DbUrl = None,
    schema_name: SchemaOpt = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Drop the system schema and every workflow record in it."""
    from runtime import migrate as schema

    url = system_url(db_url)
    name = system_schema(schema_name)
    if not yes:
        render.confirm(
            f"Drop the system schema `{name}` and all workflow records in {redact_url(url)}?"
        )
    if schema.reset(url, name):
        render.success(f"Dropped the system schema `{name}`.")
    else:
        render.info(f"There was no system schema `{name}`; nothing changed.")


def register(app: typer.Typer) -> None:
    """Add the commands to the root app."""
    app.command("migrate")(migrate)
    app.command("reset")(reset)

"""`dbos ui`: the self-hosted dashboard over the system tables (no application import)."""

from __future__ import annotations

import ipaddress
import os
from typing import Annotated

import typer

from dbos_cli import checks, render
from dbos_cli.options import DbUrl, system_schema, system_url
from runtime.errors import DBOSConfigError

TOKEN_ENV = "DBOS_UI_TOKEN"


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def ui(
    host: Annotated[
        str, typer.Option("--host", help="Address to listen on (loopback unless a token is set).")
    ] = "127.0.0.1",
    port: Annotated[
        int,
        typer.Option(
            "--port", parser=checks.whole_number("--port", 1, 65_535), help="Port to listen on."
        ),
    ] = 8080,
    token: Annotated[
        str | None,
        typer.Option(
            "--token",
            help=f"Require this token on every request (default: ${TOKEN_ENV}); needed to listen "
            "on anything but loopback.",
            show_default=False,
        ),
    ] = None,
    db_url: DbUrl = None,
) -> None:
    """Serve the workflow dashboard: lists, timelines, queues, executors, and actions."""
    try:
        import uvicorn

        from dbos_cli.ui.app import create_app
    except ImportError as exc:
        raise DBOSConfigError(
            f"the dashboard needs its optional dependencies: pip install 'dbos-runtime[ui]' ({exc})"
        ) from None
    token = token or os.environ.get(TOKEN_ENV) or None
    if not _loopback(host) and not token:
        raise DBOSConfigError(
            f"listening on {host} exposes your workflows: set a token with --token or ${TOKEN_ENV}"
        )
    app = create_app(system_url(db_url), token=token, schema=system_schema())
    where = f"http://{host}:{port}/"
    render.info(f"dbos ui on {where}" + (" (token required)" if token else ""))
    uvicorn.run(app, host=host, port=port, log_level="warning")


def register(app: typer.Typer) -> None:
    """Add the command to the root app."""
    app.command("ui")(ui)

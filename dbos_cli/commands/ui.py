"""`dbos ui`: the self-hosted dashboard over the system tables (no application import)."""

from __future__ import annotations

import ipaddress
import os
import socket
from pathlib import Path
from typing import Annotated

import typer

from dbos_cli import checks, render
from dbos_cli.options import DbUrl, system_schema, system_url
from runtime.errors import DBOSConfigError

TOKEN_ENV = "DBOS_UI_TOKEN"


def _loopback(host: str) -> bool:
    if host.lower().rstrip(".") == "localhost":  # host names are case-insensitive
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _read_token(token: str | None, token_file: Path | None) -> str | None:
    """The token from --token, else --token-file (first line), else $DBOS_UI_TOKEN."""
    if token is not None and token_file is not None:
        raise DBOSConfigError("give the token with --token or --token-file, not both")
    if token is not None and not token.strip():
        raise DBOSConfigError("--token is empty: give a token, or leave --token out")
    if token_file is not None:
        try:
            lines = token_file.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeError) as exc:
            raise DBOSConfigError(f"cannot read --token-file {str(token_file)!r}: {exc}") from None
        token = lines[0].strip() if lines else ""
        if not token:
            what = "its first line is blank" if any(x.strip() for x in lines) else "it is empty"
            raise DBOSConfigError(f"--token-file {str(token_file)!r}: {what}")
    return token or os.environ.get(TOKEN_ENV) or None


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
            "on anything but loopback, then at least 16 characters. Visible in `ps`: prefer "
            f"--token-file or ${TOKEN_ENV}.",
            show_default=False,
        ),
    ] = None,
    token_file: Annotated[
        Path | None,
        typer.Option(
            "--token-file",
            help="Read the token from the first line of this file instead.",
            show_default=False,
        ),
    ] = None,
    allowed_host: Annotated[
        list[str] | None,
        typer.Option(
            "--allowed-host",
            help="Also answer requests addressed to this host name (e.g. the name a reverse proxy "
            "serves the dashboard under); repeatable. Requests naming any other host are refused.",
            show_default=False,
        ),
    ] = None,
    db_url: DbUrl = None,
) -> None:
    """Serve the workflow dashboard: lists, timelines, queues, executors, and actions."""
    try:
        import uvicorn

        from dbos_cli.ui.app import create_app
        from dbos_cli.ui.security import HostRule, check_token
    except ImportError as exc:
        raise DBOSConfigError(
            f"the dashboard needs its optional dependencies: pip install 'dbos-runtime[ui]' ({exc})"
        ) from None
    token = _read_token(token, token_file)
    remote = not _loopback(host)
    if remote and not token:
        raise DBOSConfigError(
            f"listening on {host} exposes your workflows: set a token with --token-file, "
            f"${TOKEN_ENV} or --token"
        )
    if token is not None:
        check_token(token, remote=remote)
    hosts = HostRule.for_bind(host, port, allowed_host or ())
    app = create_app(system_url(db_url), token=token, schema=system_schema(), hosts=hosts)
    listening = _bind(host.strip("[]"), port)  # before saying where: a taken port fails here
    shown = f"[{host}]" if ":" in host else host
    render.info(f"dbos ui on http://{shown}:{port}/" + (" (token required)" if token else ""))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    server.run(sockets=[listening])


def _bind(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port``, or a one-line DBOSConfigError saying why it cannot be."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except (OSError, UnicodeError) as exc:
        raise DBOSConfigError(f"cannot listen on {host!r}: {exc}") from None
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as exc:
        sock.close()
        reason = exc.strerror or str(exc)
        raise DBOSConfigError(f"cannot listen on {host}:{port}: {reason}") from None
    return sock


def register(app: typer.Typer) -> None:
    """Add the command to the root app."""
    app.command("ui")(ui)

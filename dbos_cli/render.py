"""The only module that knows Rich: how the CLI shows results, errors and JSON."""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console
from rich.markup import escape

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

STATUS_STYLE = {
    "PENDING": "yellow",
    "ENQUEUED": "cyan",
    "SUCCESS": "green",
    "ERROR": "red",
    "CANCELLED": "magenta",
    "MAX_RECOVERY_ATTEMPTS_EXCEEDED": "bold red",
}


def info(message: str) -> None:
    """A line of normal output (user text is escaped, never read as markup)."""
    out.print(escape(message))


def success(message: str) -> None:
    """A line reporting that something was done."""
    out.print(f"[green]✓[/green] {escape(message)}")


def error(message: str) -> None:
    """The one line an error gets on stderr."""
    err.print(f"[red]error:[/red] {escape(message)}")


def warning(message: str) -> None:
    """A warning on stderr."""
    err.print(f"[yellow]warning:[/yellow] {escape(message)}")


def status_text(status: str) -> str:
    """A status name in its colour, as Rich markup."""
    style = STATUS_STYLE.get(status, "white")
    return f"[{style}]{escape(status)}[/{style}]"


def print_json(document: Any) -> None:
    """Machine-readable output: one JSON document on stdout and nothing else."""
    sys.stdout.write(json.dumps(document, indent=2, default=str, ensure_ascii=False) + "\n")
    sys.stdout.flush()

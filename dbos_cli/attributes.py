"""`--attr key=value`: the workflow-attribute filter of `dbos workflow list`.

A value is read as JSON when it is valid JSON (``--attr tier=3`` matches the number 3,
``--attr vip=true`` the boolean, ``--attr 'tags=["a"]'`` a list containing "a"), else as a
string (``--attr customer=acme``); quote it as JSON to match a string that looks like JSON
(``--attr 'code="42"'``). Repeated, every pair must match."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from runtime.errors import DBOSException

Attr = Annotated[
    list[str] | None,
    typer.Option(
        "--attr",
        "-a",
        help="Only workflows with this attribute, as key=value (repeatable: all must match). "
        'The value is read as JSON when it is valid JSON (3, true, "3"), else as a string.',
        show_default=False,
    ),
]


def parse_attrs(pairs: list[str] | None) -> dict[str, Any] | None:
    """The attribute filter ``--attr`` pairs give (None when none is given); a pair without
    ``=`` or with an empty key raises ``DBOSException`` (a one-line CLI error)."""
    if not pairs:
        return None
    found: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key:
            raise DBOSException(f"invalid --attr {pair!r}: expected key=value")
        try:
            found[key] = json.loads(text)
        except ValueError:
            found[key] = text
    return found

"""`dbos workflow stream WORKFLOW_ID KEY`: follow a workflow's stream, printing each value as it is
written, until the stream is closed or the workflow has ended (Ctrl-C stops following)."""

from __future__ import annotations

from typing import Annotated

import typer

from dbos_cli import checks, render
from dbos_cli.options import DbUrl, open_client


def _max_offset() -> int:
    # Imported when --from-offset is given: at module level, every `dbos` command (even
    # --version) paid for importing the client and its driver.
    from runtime.client import MAX_STREAM_OFFSET

    return MAX_STREAM_OFFSET


FromOffset = Annotated[
    int,
    typer.Option(
        "--from-offset",
        parser=checks.whole_number("--from-offset", maximum=_max_offset),
        help="Start at this offset (0: the first value); a reconnecting reader passes the "
        "offset after the last one it printed.",
    ),
]
JsonLines = Annotated[
    bool,
    typer.Option(
        "--json",
        help='Print one JSON object per value and line, {"offset": N, "value": ...}, and nothing '
        "else.",
    ),
]


def stream(
    workflow_id: Annotated[str, typer.Argument(help="The ID of the workflow that writes.")],
    key: Annotated[str, typer.Argument(help="The stream's key.")],
    from_offset: FromOffset = 0,
    db_url: DbUrl = None,
    json_output: JsonLines = False,
) -> None:
    """Print a workflow's stream values as they are written (offset and value, one per line),
    until the stream is closed or the workflow has ended."""
    client = open_client(db_url)
    offset = from_offset
    # The header comes once a read has succeeded (the first value, or the end of an empty
    # stream): an unknown workflow or an unmigrated database is an error line alone.
    header = not json_output
    try:
        values = client.read_stream(workflow_id, key, offset=from_offset)
        try:
            for value in values:
                if header:
                    render.stream_header()
                    header = False
                render.stream_value(offset, value, json_output)
                offset += 1
        finally:
            values.close()
        if header:
            render.stream_header()
    except KeyboardInterrupt:
        # Stopping to follow is not an error: say where to pick up again, then exit as a shell
        # expects after Ctrl-C.
        # On stderr, so that it reaches the operator and never mixes with the values (--json).
        render.warning(f"stopped; resume with --from-offset {offset}")
        raise typer.Exit(130) from None
    finally:
        client.destroy()
    if not json_output:
        render.stream_end(offset - from_offset)


def register(workflow_group: typer.Typer) -> None:
    """Add `stream` to the `dbos workflow` group."""
    workflow_group.command("stream")(stream)

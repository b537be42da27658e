"""`dbos workflow why ID`: why a workflow is where it is, from the database alone.

The sentence first, then the facts behind it, then the commands that would move it, then (for a
workflow waiting on a child) the child's own answer, indented. `--json` prints
``WorkflowExplanation.to_json()``. Every existing workflow exits 0; an unknown ID is one line on
stderr and exit 1 (``DBOSNonExistentWorkflowError``, through the CLI's error mapping)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from dbos_cli import render
from dbos_cli.options import DbUrl, JsonFlag, open_client

if TYPE_CHECKING:
    from runtime.client import WorkflowExplanation

INDENT = "    "


def lines(found: WorkflowExplanation, depth: int = 0) -> list[str]:
    """The human answer as plain lines (database text not yet escaped for the terminal)."""
    pad = INDENT * depth
    out = [f"{pad}{found.workflow_id}: {found.summary}"]
    width = max((len(label) for label, _ in found.facts), default=0)
    out += [f"{pad}  {label.ljust(width)}  {value}" for label, value in found.facts]
    if found.commands:
        out.append(f"{pad}Would move it:")
        out += [f"{pad}  {command}" for command in found.commands]
    if found.cause is not None:
        out.append(f"{pad}Because child {found.cause.workflow_id} is {found.cause.status}:")
        out += lines(found.cause, depth + 1)
    return out


def why(
    workflow_id: Annotated[str, typer.Argument(help="The workflow's ID.")],
    db_url: DbUrl = None,
    json_output: JsonFlag = False,
) -> None:
    """Explain what a workflow is waiting for, or why it is not running: a sentence, the facts
    behind it, the commands that would move it, and the answer for a child it waits on."""
    with open_client(db_url) as client:
        found = client.explain_workflow(workflow_id)
    if json_output:
        render.print_json(found.to_json())
        return
    for text in lines(found):
        render.info(text)


def register(group: typer.Typer) -> None:
    """Add `dbos workflow why` to the `workflow` group."""
    group.command("why")(why)

"""Every `dbos` command prints text from the database as data: Rich markup and emoji codes
are shown, never applied, and terminal control sequences (ESC, C1 controls, bidi overrides) are
shown as escapes, never obeyed. One renderer (`dbos_cli.render.escape`) does it for every
command; this test stores hostile text in each kind of stored name and reads it back through each
command."""

from __future__ import annotations

from typing import Any

from runtime import DBOS, SetWorkflowAttributes
from tests.cli_helpers import dbos

HOSTILE = "[red]x:b:\n\t\x1b[2J\x9b31m\u202e\x07"
RAW = ("\x1b", "\x9b", "\u202e", "\x07")


@DBOS.step(name=f"st{HOSTILE}")
def hostile_step() -> str:
    return HOSTILE


@DBOS.workflow(name=f"wf{HOSTILE}")
def hostile_wf(scheduled_time: Any = None, context: Any = None) -> str:
    return hostile_step()


def test_every_command_shows_stored_control_characters_as_escapes(
    db_url: str, launch_dbos: Any
) -> None:
    launch_dbos(application_version=f"v{HOSTILE}", executor_id=f"ex{HOSTILE}")
    with SetWorkflowAttributes({f"k{HOSTILE}": f"v{HOSTILE}"}):
        handle = DBOS.start_workflow(hostile_wf)
    handle.get_result()
    name = f"s{HOSTILE}"
    DBOS.create_schedule(schedule_name=name, workflow_fn=hostile_wf, schedule="0 0 1 1 *")
    commands: list[tuple[str, ...]] = [
        ("workflow", "list"),
        ("workflow", "get", handle.workflow_id),
        ("workflow", "steps", handle.workflow_id),
        ("workflow", "why", handle.workflow_id),
        ("executors",),
        ("schedule", "list"),
        ("schedule", "get", name),
        ("schedule", "pause", name),
        ("version", "list"),
        ("version", "latest"),
    ]
    for args in commands:
        # JSON goes through one printer: two commands show it.
        for json_flag in (
            ((), ("--json",)) if args[0:2] in (("workflow", "list"), ("schedule", "get")) else ((),)
        ):
            run = dbos(*args, *json_flag, "--db-url", db_url)
            assert run.returncode == 0, (args, run.stderr[-400:])
            for raw in RAW:
                assert raw not in run.stdout + run.stderr, (args, json_flag, raw, run.stdout)
            if not json_flag and args[0] != "executors":
                # Markup and emoji codes shown, not applied; a newline or tab does not break
                # the name's cell.
                assert "[red]x:b:\\n\\t" in run.stdout, (args, run.stdout)

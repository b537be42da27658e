"""`dbos workflow check-replay --app APP`: before a deploy, would the new code replay the
workflows already recorded? Imports the app (its decorators register its workflows; nothing is
launched), replays each selected workflow's recorded history against it without running any step
or writing anything (``runtime.replay_check``), and says per workflow whether it replays, and if
not where and why. Exits 1 when any would not."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

from dbos_cli import checks, render
from dbos_cli.commands import workflow as wf_cmd
from dbos_cli.commands.start import import_app
from dbos_cli.options import DbUrl, JsonFlag, SchemaOpt, system_schema, system_url
from runtime.errors import DBOSException

if TYPE_CHECKING:
    from runtime.replay_check import ReplayCheckReport, ReplayCheckResult

App = Annotated[
    str,
    typer.Option(
        "--app",
        "-a",
        help="The new code: a Python file (app.py) or a dotted module, imported (not launched).",
        show_default=False,
    ),
]
WorkflowIds = Annotated[
    list[str] | None,
    typer.Option(
        "--workflow-id",
        "-w",
        help="Check this workflow, whatever its status (repeatable).",
        show_default=False,
    ),
]
CheckStatus = Annotated[
    list[str] | None,
    typer.Option(
        "--status",
        "-S",
        help="Only this status (repeatable; default PENDING, ENQUEUED and DELAYED, the workflows "
        "the new code would run): " + ", ".join(wf_cmd.STATUSES) + ".",
        show_default=False,
    ),
]
CheckLimit = Annotated[
    int | None,
    typer.Option(
        "--limit",
        "-l",
        parser=checks.whole_number("--limit", minimum=1),
        help="Check at most this many workflows.",
        show_default=False,
    ),
]
Replays = Annotated[
    int,
    typer.Option(
        "--replays",
        parser=checks.whole_number("--replays", minimum=1, maximum=1000),
        help="Replay each workflow this many times (2+ tells a path that is not deterministic).",
    ),
]
Timeout = Annotated[
    float,
    typer.Option(
        "--timeout", parser=checks.seconds("--timeout"), help="Seconds each replay may take."
    ),
]


def check_replay(
    app: App,
    db_url: DbUrl = None,
    schema: SchemaOpt = None,
    workflow_id: WorkflowIds = None,
    status: CheckStatus = None,
    name: wf_cmd.Name = None,
    queue: wf_cmd.QueueName = None,
    app_version: wf_cmd.AppVersion = None,
    start_time: wf_cmd.StartTime = None,
    end_time: wf_cmd.EndTime = None,
    limit: CheckLimit = None,
    sort_desc: wf_cmd.SortDesc = False,
    replays: Replays = 2,
    timeout: Timeout = 10.0,
    json_output: JsonFlag = False,
) -> None:
    """Check that the new code (--app) replays the recorded workflows (pending ones by default):
    runs no step, writes nothing; exits 1 if any would not replay."""
    from runtime import replay_check  # the runtime loads here

    if status:
        bad = [s for s in status if s.upper() not in wf_cmd.STATUSES]
        if bad:
            raise DBOSException(
                f"unknown status {bad[0]!r}: use one of " + ", ".join(wf_cmd.STATUSES)
            )
    url, schema_name = system_url(db_url), system_schema(schema)
    # For the rest of this process: an app may launch from a thread or a timer it starts.
    replay_check.refuse_launch(app)
    try:
        import_app(app)
    except SystemExit as exc:  # a gate must not pass (exit 0) with no verdict
        raise DBOSException(
            f"importing {app} exited (sys.exit({exc.code!r})) before anything was checked"
        ) from None
    report = replay_check.check_replay(
        url,
        system_schema=schema_name,
        workflow_ids=workflow_id or None,
        status=[s.upper() for s in status] if status else None,
        name=name,
        queue_name=queue,
        app_version=app_version,
        start_time=start_time,
        end_time=end_time,
        limit=limit,
        sort_desc=sort_desc,
        replays=replays,
        timeout_seconds=timeout,
    )
    if json_output:
        render.print_json(report_json(report))
    else:
        show(report)
    code = 0 if report.ok else 1
    if replay_check.launches_refused():  # from a thread of the app's: a gate must not pass
        render.error(f"{app} tried to launch DBOS while imported (refused: nothing was launched)")
        code = 1
    if replay_check.replays_left_running():
        # A replay that timed out (or is parked) may hold a non-daemon thread of the app's own
        # (asyncio.to_thread): the verdict is out, so exit now rather than wait for it.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    if code:
        raise typer.Exit(code)


def report_json(report: ReplayCheckReport) -> dict[str, Any]:
    """The report as JSON: ``ok``, ``summary``, ``counts`` and one object per workflow."""
    return {
        "ok": report.ok,
        "summary": report.summary(),
        "counts": report.counts(),
        "workflows": [result_json(r) for r in report.results],
    }


def result_json(r: ReplayCheckResult) -> dict[str, Any]:
    """One workflow's verdict as JSON."""
    return {
        "workflow_id": r.workflow_id,
        "name": r.name,
        "status": r.status,
        "verdict": r.verdict,
        "ok": r.ok,
        "reason": r.reason,
        "step": r.step,
        "recorded_name": r.recorded_name,
        "new_name": r.new_name,
        "where": r.where,
        "replayed_steps": r.replayed_steps,
        "recorded_steps": r.recorded_steps,
        "warnings": list(r.warnings),
    }


VERDICT_STYLE = {"ok": "green"}


def show(report: ReplayCheckReport) -> None:
    """The report as a table, then the warnings, then the summary line."""
    from rich.table import Table

    table = Table(header_style="bold", show_edge=False, pad_edge=False)
    table.add_column("ID", no_wrap=True)
    table.add_column("Name", overflow="fold", max_width=32)
    table.add_column("Status", no_wrap=True)
    table.add_column("Verdict", no_wrap=True)
    table.add_column("Step", justify="right", no_wrap=True)
    table.add_column("Recorded / new code", overflow="fold", max_width=40)
    table.add_column("Why", overflow="fold")
    for r in report.results:
        style = VERDICT_STYLE.get(r.verdict, "red")
        names = " / ".join(
            render.escape(n or "-") for n in (r.recorded_name, r.new_name) if r.verdict != "ok" or n
        )
        why = render.escape(r.reason) + (f" (at {render.escape(r.where)})" if r.where else "")
        table.add_row(
            render.escape(r.workflow_id),
            render.escape(r.name),
            render.status_text(r.status),
            f"[{style}]{render.escape(r.verdict)}[/{style}]",
            "" if r.step is None else str(r.step),
            names,
            why,
        )
    if report.results:
        render.print_table(table)
    for r in report.results:
        for warning in r.warnings:
            render.warning(f"{r.workflow_id}: {warning}")
    (render.success if report.ok else render.error)(report.summary())


def register(group: typer.Typer) -> None:
    """Add `check-replay` to the `dbos workflow` group."""
    group.command("check-replay")(check_replay)

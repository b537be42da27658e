"""How the CLI shows managed schedules (`dbos schedule ...`): the schedules' part of ``render``,
kept in its own module; like it, every database text is escaped, never read as markup."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from dbos_cli import render
from dbos_cli.render import escape

if TYPE_CHECKING:
    from runtime.client import WorkflowSchedule

STATUS_STYLE = {"ACTIVE": "green", "PAUSED": "yellow"}


def _status(status: str) -> str:
    style = STATUS_STYLE.get(status, "white")
    return f"[{style}]{escape(status)}[/{style}]"


def schedule_json(schedule: WorkflowSchedule) -> dict[str, Any]:
    """A schedule as JSON: DBOS's keys; the context as JSON where it can be (else its text)."""
    return dict(schedule)


def schedule_table(schedules: list[WorkflowSchedule]) -> None:
    """Schedules as a table: name, workflow, cron, zone, status, queue, last tick fired."""
    from rich.table import Table

    table = Table(header_style="bold", show_edge=False, pad_edge=False)
    table.add_column("Name", no_wrap=True)
    table.add_column("Workflow", overflow="ellipsis", no_wrap=True, max_width=40)
    table.add_column("Schedule", no_wrap=True)
    table.add_column("Zone", no_wrap=True)
    table.add_column("Status", no_wrap=True)
    if render.out.width >= 120:
        table.add_column("Queue", overflow="ellipsis", no_wrap=True, max_width=20)
        table.add_column("Last fired", no_wrap=True)
    for s in schedules:
        cells = [
            escape(s["schedule_name"]),
            escape(s["workflow_name"]),
            escape(s["schedule"]),
            escape(s["cron_timezone"] or "UTC"),
            _status(s["status"]),
        ]
        if render.out.width >= 120:
            cells += [escape(s["queue_name"] or ""), escape(s["last_fired_at"] or "")]
        table.add_row(*cells)
    render.print_table(table)
    if not schedules:
        render.out.print("[dim]no schedules match[/dim]")


def schedule_panel(schedule: WorkflowSchedule) -> None:
    """One schedule: every field, then its context pretty-printed."""
    from rich.panel import Panel
    from rich.table import Table

    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column(overflow="fold")
    rows = [
        ("Name", escape(schedule["schedule_name"])),
        ("ID", escape(schedule["schedule_id"])),
        ("Status", _status(schedule["status"])),
        ("Workflow", escape(schedule["workflow_name"])),
        ("Class", escape(schedule["workflow_class_name"] or "")),
        ("Schedule", escape(schedule["schedule"])),
        ("Time zone", escape(schedule["cron_timezone"] or "UTC")),
        ("Queue", escape(schedule["queue_name"] or "")),
        ("Automatic backfill", "yes" if schedule["automatic_backfill"] else "no"),
        ("Last fired", escape(schedule["last_fired_at"] or "")),
    ]
    for label, value in rows:
        if value:
            grid.add_row(label, value)
    render.out.print(Panel(grid, title="schedule", title_align="left", expand=False))
    render.out.print("[bold]Context[/bold]")
    render.block(json.dumps(schedule["context"], indent=2, default=str, ensure_ascii=False))


def workflow_ids(title: str, ids: list[str]) -> None:
    """The workflows of a backfill or a trigger, one ID a line."""
    render.success(f"{title}: {len(ids)} workflow{'s' if len(ids) != 1 else ''}")
    for wid in ids:
        render.info(f"  {wid}")


def backfilled(name: str, report: list[tuple[str, bool]]) -> None:
    """A backfill: how many ticks the window held and how many of them it enqueued (the others
    were enqueued before and stay as they are), then each tick's workflow ID."""
    new = sum(created for _, created in report)
    ticks = f"{len(report)} tick{'s' if len(report) != 1 else ''}"
    render.success(f"backfilled {name}: {ticks}, {new} newly enqueued")
    for wid, created in report:
        render.info(f"  {wid}{'' if created else '  (already enqueued)'}")

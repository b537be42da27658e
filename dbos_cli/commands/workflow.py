"""`dbos workflow ...` and `dbos queue list`: inspect and steer workflows through the system tables.

Commands are thin: parse, call the client API, render. Bulk ``cancel`` and ``resume`` take IDs, or
filters with a dry run and a confirmation prompt; their summary says what changed and what was
skipped, and why.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer

from dbos_cli import checks, render
from dbos_cli.attributes import Attr, parse_attrs
from dbos_cli.commands import versions, why
from dbos_cli.options import DbUrl, JsonFlag, open_client
from runtime.errors import DBOSException
from runtime.status import StepInfo, WorkflowStatus, WorkflowStatusString

if TYPE_CHECKING:
    from runtime.client import Change, DBOSClient, Waiting

STATUSES = [s.value for s in WorkflowStatusString]

group = typer.Typer(
    help="List, inspect, cancel, resume, restart and fork workflows.", no_args_is_help=True
)
queue_group = typer.Typer(help="Workflows waiting in or running from queues.", no_args_is_help=True)

Limit = Annotated[
    int,
    typer.Option(
        "--limit",
        "-l",
        parser=checks.whole_number("--limit"),
        help="Show at most this many workflows.",
    ),
]
Offset = Annotated[
    int,
    typer.Option(
        "--offset",
        "-o",
        parser=checks.whole_number("--offset"),
        help="Skip this many workflows first.",
    ),
]
Status = Annotated[
    list[str] | None,
    typer.Option(
        "--status",
        "-S",
        help="Only this status (repeatable): " + ", ".join(STATUSES) + ".",
        show_default=False,
    ),
]
Name = Annotated[
    str | None, typer.Option("--name", "-n", help="Only workflows of this function name.")
]
QueueName = Annotated[str | None, typer.Option("--queue", "-q", help="Only this queue.")]
AppVersion = Annotated[
    str | None, typer.Option("--app-version", "-v", help="Only this application version.")
]
StartTime = Annotated[
    datetime | None,
    typer.Option(
        "--start-time",
        "-t",
        parser=checks.moment("--start-time"),
        help="Only workflows created at or after this time: ISO 8601 (local time unless it has "
        "an offset or Z), or @SECONDS or @MILLISECONDSms since 1970.",
        show_default=False,
    ),
]
EndTime = Annotated[
    datetime | None,
    typer.Option(
        "--end-time",
        "-e",
        parser=checks.moment("--end-time"),
        help="Only workflows created at or before this time (written as for --start-time).",
        show_default=False,
    ),
]
Sort = Annotated[
    str,
    typer.Option(
        "--sort",
        help="Order by creation time: desc (newest first) or asc (oldest first).",
        parser=checks.choice("--sort", ("desc", "asc")),
    ),
]
# DBOS's flag, kept for scripts written against it (newest first is the default now).
SortDesc = Annotated[
    bool, typer.Option("--sort-desc", "-d", hidden=True, help="Newest first (the default now).")
]
Ids = Annotated[
    list[str] | None,
    typer.Argument(help="Workflow IDs (or use the filter options instead).", show_default=False),
]
DryRun = Annotated[
    bool, typer.Option("--dry-run", help="Show what would change, and change nothing.")
]
Yes = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]


def _waits(client: DBOSClient, found: list[WorkflowStatus]) -> dict[str, Waiting]:
    """What the listed PENDING and ENQUEUED workflows wait for (one query for the page; none
    when no row can wait)."""
    live = [wf.workflow_id for wf in found if wf.status in ("PENDING", "ENQUEUED", "DELAYED")]
    return client.get_workflow_waits(live) if live else {}


# How far past a page the footer counts: beyond it, the footer says "more than N" (counting a
# million matching rows on every listing cost more than the listing itself).
COUNT_PAST_PAGE = 10_000


def _page(
    client: DBOSClient, filters: dict[str, Any], offset: int, limit: int, newest_first: bool
) -> render.Page:
    """What the footer of a listing page says: how many match, counted up to
    ``COUNT_PAST_PAGE`` past the page (one row more tells "more than that" from "exactly")."""
    bound = min(offset + limit + COUNT_PAST_PAGE, 2**63 - 2)
    total = client.count_workflows(at_most=bound + 1, **filters)
    return render.Page(min(total, bound), offset, newest_first, capped=total > bound)


def _show_listing(
    found: list[WorkflowStatus],
    waits: dict[str, Waiting],
    json_output: bool,
    page: render.Page | None = None,
) -> None:
    """A listing (of `workflow list` or `queue list`): a table, or JSON without the values (a
    list, as ever: no count in it). ``page`` adds the table's footer."""
    if json_output:
        now = render.now_ms()
        render.print_json(
            [
                render.workflow_json(wf, values=False, waiting=waits.get(wf.workflow_id), now=now)
                for wf in found
            ]
        )
    elif page is not None and not found and page.total:
        render.listing_footer(0, page)  # some match, none on this page: the footer says so
    else:
        render.workflow_table(found, waits=waits)
        if page is not None:
            render.listing_footer(len(found), page)


@group.command("list")
def list_workflows(
    db_url: DbUrl = None,
    limit: Limit = 10,
    offset: Offset = 0,
    status: Status = None,
    name: Name = None,
    queue: QueueName = None,
    app_version: AppVersion = None,
    start_time: StartTime = None,
    end_time: EndTime = None,
    sort: Sort = "desc",
    sort_desc: SortDesc = False,
    json_output: JsonFlag = False,
    attr: Attr = None,
    schedule: Annotated[
        list[str] | None,
        typer.Option(
            "--schedule",
            help="Only the runs of this managed schedule (its ticks, backfills and triggers); "
            "repeatable.",
        ),
    ] = None,
) -> None:
    """List workflows, newest first (--sort asc for oldest first); a footer says how many more
    match."""
    filters: dict[str, Any] = {
        "attributes": parse_attrs(attr),
        "schedule_name": schedule or None,
        "status": status,
        "name": name,
        "queue_name": queue,
        "app_version": app_version,
        "start_time": start_time,
        "end_time": end_time,
    }
    newest_first = sort_desc or sort == "desc"
    with open_client(db_url) as client:
        found = client.list_workflows(
            **filters,
            limit=limit,
            offset=offset,
            sort_desc=newest_first,
            load_input=False,
            load_output=False,
        )
        waits = _waits(client, found)
        page = None if json_output else _page(client, filters, offset, limit, newest_first)
    _show_listing(found, waits, json_output, page)


def _running_steps(client: DBOSClient, wf: WorkflowStatus) -> list[StepInfo]:
    """The steps ``wf`` runs now (only a PENDING workflow runs any)."""
    if wf.status != "PENDING":
        return []
    return [
        s
        for s in client.list_workflow_steps(wf.workflow_id, load_output=False, include_running=True)
        if s.running
    ]


@group.command("get")
def get_workflow(
    workflow_id: Annotated[str, typer.Argument(help="The workflow's ID.")],
    db_url: DbUrl = None,
    json_output: JsonFlag = False,
) -> None:
    """Show one workflow: its record (with what it waits for, when it waits), input, and output
    or error."""
    with open_client(db_url) as client:
        wf = client.get_workflow(workflow_id)
        waiting = _waits(client, [wf]).get(wf.workflow_id)
        # The same sentence as `dbos workflow why` ("Why" for a workflow that has ended).
        summary = client.explain_workflow(workflow_id).summary
        running = render.RunningSteps(_running_steps(client, wf))
    if json_output:
        render.print_json(render.workflow_json(wf, waiting=waiting) | running.json())
    else:
        render.workflow_panel(wf, waiting, summary, running.rows())


@group.command("steps")
def list_steps(
    workflow_id: Annotated[str, typer.Argument(help="The workflow's ID.")],
    db_url: DbUrl = None,
    json_output: JsonFlag = False,
) -> None:
    """Show the recorded steps of a workflow as a timeline."""
    with open_client(db_url) as client:
        wf = client.get_workflow(workflow_id)
        steps = client.list_workflow_steps(workflow_id, include_running=True)
    if json_output:
        render.print_json([render.step_json(s) for s in steps])
    else:
        render.steps_table(steps, wf)


@dataclass(frozen=True)
class _Filters:
    """The filter options of a bulk command; an empty value is not a filter."""

    status: list[str] | None
    name: str | None
    queue_name: str | None
    start_time: datetime | None
    end_time: datetime | None

    def given(self) -> bool:
        """Whether any filter was given."""
        return any((self.status, self.name, self.queue_name, self.start_time, self.end_time))


def _targets(
    client: DBOSClient,
    ids: list[str] | None,
    filters: _Filters,
    default_status: list[str],
) -> tuple[list[str], bool]:
    """The workflows to act on: the IDs given, or those matching the filters (by default only in
    the statuses the action applies to). Returns them and whether they came from filters."""
    if ids and filters.given():
        raise DBOSException("give workflow IDs or filter options, not both")
    if ids:
        return list(dict.fromkeys(ids)), False
    if not filters.given():
        raise DBOSException(
            "give workflow IDs, or filter options (--status, --name, --queue, --start-time, "
            "--end-time) to select workflows"
        )
    found = client.list_workflows(
        status=filters.status or default_status,
        name=filters.name or None,
        queue_name=filters.queue_name or None,
        start_time=filters.start_time or None,
        end_time=filters.end_time or None,
        load_input=False,
        load_output=False,
    )
    return [wf.workflow_id for wf in found], True


def _plural(n: int) -> str:
    return f"{n} workflow{'s' if n != 1 else ''}"


def _skipped_lines(skipped: list[Change], would: bool) -> None:
    """The skipped workflows, counted by reason (and listed when few)."""
    if not skipped:
        return
    reasons = Counter(c.reason for c in skipped)
    detail = ", ".join(f"{n} {reason}" for reason, n in reasons.most_common())
    render.warning(f"{'would skip' if would else 'skipped'} {len(skipped)}: {detail}")
    if len(skipped) <= 10:
        for c in skipped:
            render.info(f"  {c.workflow_id}: {c.reason}")


def _summary(verb: str, changes: list[Change], json_output: bool) -> int:
    changed = [c.workflow_id for c in changes if c.changed]
    skipped = [c for c in changes if not c.changed]
    missing = [c.workflow_id for c in skipped if c.missing]
    if json_output:
        render.print_json(
            {
                verb: changed,
                "skipped": [{"workflow_id": c.workflow_id, "reason": c.reason} for c in skipped],
            }
        )
    else:
        render.success(f"{verb} {_plural(len(changed))}")
        _skipped_lines(skipped, would=False)
    return 1 if missing else 0


@dataclass(frozen=True)
class _Action:
    """A bulk action: its words, what it does (``run(client, ids, dry_run)``: the runtime's
    ``*_each``, whose dry run evaluates the real run's own predicate), and the statuses its
    filters select by default."""

    verb: str  # "cancelled"
    imperative: str  # "Cancel"
    run: Callable[[DBOSClient, list[str], bool], list[Change]]
    default_status: list[str]


def _dry_run_report(
    client: DBOSClient, action: _Action, changes: list[Change], json_output: bool
) -> None:
    """What the real run would do: the workflows it would change (a table), and those it would
    skip, with why; the same Change list the real run returns."""
    would = [c.workflow_id for c in changes if c.changed]
    skipped = [c for c in changes if not c.changed]
    rows = client.list_workflows(workflow_ids=would, load_input=False, load_output=False)
    rows.sort(key=lambda w: would.index(w.workflow_id))
    waits = _waits(client, rows)
    if json_output:
        now = render.now_ms()
        render.print_json(
            {
                "would_" + action.verb: [
                    render.workflow_json(w, values=False, waiting=waits.get(w.workflow_id), now=now)
                    for w in rows
                ],
                "skipped": [{"workflow_id": c.workflow_id, "reason": c.reason} for c in skipped],
            }
        )
        return
    render.workflow_table(rows, title=f"would be {action.verb} (dry run)", waits=waits)
    _skipped_lines(skipped, would=True)
    render.info(f"dry run: {_plural(len(would))} would be {action.verb}; nothing changed")


def _bulk(
    action: _Action,
    db_url: str | None,
    ids: list[str] | None,
    filters: _Filters,
    dry_run: bool,
    yes: bool,
    json_output: bool,
) -> None:
    with open_client(db_url) as client:
        targets, by_filter = _targets(client, ids, filters, action.default_status)
        if dry_run:
            _dry_run_report(client, action, action.run(client, targets, True), json_output)
            return
        if by_filter and not yes:
            # Ask about what the run would really change (the dry run's count), not about
            # everything the filters match.
            preview = action.run(client, targets, True)
            count = sum(1 for c in preview if c.changed)
            if not count:
                if json_output:  # still one document: nothing changed, and why
                    _summary(action.verb, preview, json_output)
                    return
                render.info(
                    f"no workflow would be {action.verb} ({_plural(len(targets))} match); "
                    "nothing to do"
                )
                _skipped_lines([c for c in preview if not c.changed], would=True)
                return
            # On stderr: stdout carries only the result (one JSON document with --json).
            render.confirm(f"{action.imperative} {_plural(count)}?")
        changes = action.run(client, targets, False)
    code = _summary(action.verb, changes, json_output)
    if code:
        raise typer.Exit(code)


@group.command("cancel")
def cancel(
    ids: Ids = None,
    db_url: DbUrl = None,
    status: Status = None,
    name: Name = None,
    queue: QueueName = None,
    start_time: StartTime = None,
    end_time: EndTime = None,
    dry_run: DryRun = False,
    yes: Yes = False,
    json_output: JsonFlag = False,
) -> None:
    """Cancel workflows: a running one stops at its next step; an enqueued one leaves its queue."""
    filters = _Filters(status, name, queue, start_time, end_time)
    action = _Action(
        "cancelled",
        "Cancel",
        lambda client, targets, dry: client.cancel_each(targets, dry_run=dry),
        ["PENDING", "ENQUEUED", "DELAYED"],
    )
    _bulk(action, db_url, ids, filters, dry_run, yes, json_output)


@group.command("resume")
def resume(
    ids: Ids = None,
    db_url: DbUrl = None,
    status: Status = None,
    name: Name = None,
    queue: QueueName = None,
    start_time: StartTime = None,
    end_time: EndTime = None,
    dry_run: DryRun = False,
    yes: Yes = False,
    json_output: JsonFlag = False,
    latest_version: versions.LatestVersion = False,
    application_version: versions.ApplicationVersion = None,
) -> None:
    """Resume workflows from their last completed step: a live executor of the application picks
    them up (one from a queue goes back to it; an enqueued one starts now, bypassing its queue)."""
    filters = _Filters(status, name, queue, start_time, end_time)
    action = _Action(
        "resumed",
        "Resume",
        lambda client, targets, dry: versions.resume_on(
            client, targets, application_version, latest_version, dry_run=dry
        ),
        ["CANCELLED", "MAX_RECOVERY_ATTEMPTS_EXCEEDED"],
    )
    _bulk(action, db_url, ids, filters, dry_run, yes, json_output)


@group.command("restart")
def restart(
    workflow_id: Annotated[str, typer.Argument(help="The workflow to run again.")],
    db_url: DbUrl = None,
    json_output: JsonFlag = False,
    latest_version: versions.LatestVersion = False,
    application_version: versions.ApplicationVersion = None,
) -> None:
    """Run a workflow again from the start with the same inputs, under a new ID (printed)."""
    versions.quiet_unserved_log()
    with open_client(db_url) as client:
        target = versions.target_version(client, application_version, latest_version)
        if target is None:
            new_id = client.restart_workflow(workflow_id).get_workflow_id()
        else:
            new_id = client.fork_workflow(
                workflow_id, 1, application_version=target
            ).get_workflow_id()
        versions.report_unserved(client, [new_id])
    if json_output:
        render.print_json({"workflow_id": new_id, "restarted_from": workflow_id})
    else:
        render.info(new_id)
        render.info(f"restarted {workflow_id} as {new_id}; `dbos workflow why {new_id}` follows it")


@group.command("fork")
def fork(
    workflow_id: Annotated[str, typer.Argument(help="The workflow to fork.")],
    step: Annotated[
        int,
        typer.Option(
            "--step",
            "-s",
            parser=checks.whole_number("--step", minimum=1),
            help="First step to run anew; earlier steps keep their outcomes.",
        ),
    ],
    forked_workflow_id: Annotated[
        str | None, typer.Option("--forked-workflow-id", help="ID of the new workflow.")
    ] = None,
    app_version: versions.ApplicationVersion = None,
    db_url: DbUrl = None,
    json_output: JsonFlag = False,
    latest_version: versions.LatestVersion = False,
) -> None:
    """Start a new workflow that reuses the outcomes of the steps before --step (its ID is
    printed)."""
    versions.quiet_unserved_log()
    with open_client(db_url) as client:
        new_id = client.fork_workflow(
            workflow_id,
            step,
            forked_workflow_id=forked_workflow_id,
            application_version=versions.target_version(client, app_version, latest_version),
        ).get_workflow_id()
        versions.report_unserved(client, [new_id])
    if json_output:
        render.print_json({"workflow_id": new_id, "forked_from": workflow_id, "step": step})
    else:
        render.info(new_id)


def queue_list(
    db_url: DbUrl = None,
    limit: Limit = 10,
    offset: Offset = 0,
    status: Status = None,
    name: Name = None,
    queue: QueueName = None,
    start_time: StartTime = None,
    end_time: EndTime = None,
    sort: Sort = "desc",
    sort_desc: SortDesc = False,
    json_output: JsonFlag = False,
) -> None:
    """List workflows waiting in or running from queues (ENQUEUED, or PENDING with a queue),
    newest first (--sort asc for oldest first); a footer says how many more match."""
    filters: dict[str, Any] = {
        "queue_name": queue,
        "status": status,
        "name": name,
        "start_time": start_time,
        "end_time": end_time,
    }
    newest_first = sort_desc or sort == "desc"
    with open_client(db_url) as client:
        found = client.list_queued_workflows(
            **filters,
            limit=limit,
            offset=offset,
            sort_desc=newest_first,
            load_input=False,
        )
        waits = _waits(client, found)
        page = (
            None
            if json_output
            else _page(client, {**filters, "queues_only": True}, offset, limit, newest_first)
        )
    _show_listing(found, waits, json_output, page)


def register(app: typer.Typer) -> None:
    """Add `dbos workflow ...`, `dbos workflow queue list` and its alias `dbos queue list`."""
    nested = typer.Typer(help="Workflows in queues.", no_args_is_help=True)
    nested.command("list")(queue_list)
    group.add_typer(nested, name="queue")
    queue_group.command("list")(queue_list)
    why.register(group)
    app.add_typer(group, name="workflow")
    app.add_typer(queue_group, name="queue")

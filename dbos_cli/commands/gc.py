"""`dbos workflow gc`: delete finished workflows older than a duration (or beyond the newest N),
with everything recorded for them, in batches (``DBOSClient.garbage_collect``). A dry run counts
exactly what would go; without ``-y`` the command shows that count and asks first."""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Annotated, Any

import typer

from dbos_cli import checks, render
from dbos_cli.options import DbUrl, JsonFlag, open_client

if TYPE_CHECKING:
    from runtime.client import GarbageCollection

OlderThan = Annotated[
    float | None,
    typer.Option(
        "--older-than",
        parser=checks.duration("--older-than"),
        help="Delete finished workflows created more than this long ago: 30d, 12h, 90m, 45s, 1w.",
        show_default=False,
    ),
]
RowsThreshold = Annotated[
    int | None,
    typer.Option(
        "--rows-threshold",
        parser=checks.whole_number("--rows-threshold", minimum=1),
        help="Keep only the newest N workflows (of any status): older finished ones are deleted. "
        "With --older-than, the stricter of the two applies.",
        show_default=False,
    ),
]
GcStatus = Annotated[
    list[str] | None,
    typer.Option(
        "--status",
        "-S",
        parser=checks.finished_status("--status"),
        help="Only this finished status (repeatable): " + ", ".join(checks.FINISHED) + ". "
        "Default: all of them. Unfinished workflows are never deleted.",
        show_default=False,
    ),
]
BatchSize = Annotated[
    int | None,
    typer.Option(
        "--batch-size",
        parser=checks.whole_number("--batch-size", minimum=1),
        help="Workflows deleted per transaction (default 1000): smaller batches hold locks for "
        "less time.",
        show_default=False,
    ),
]
DryRun = Annotated[
    bool, typer.Option("--dry-run", help="Count what would be deleted, and delete nothing.")
]
Yes = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]


def _plural(n: int) -> str:
    return f"{n} workflow{'s' if n != 1 else ''}"


def _when(cutoff_ms: int | None) -> str:
    if cutoff_ms is None:
        return "-"
    moment = datetime.fromtimestamp(cutoff_ms / 1000, timezone.utc).astimezone()
    return moment.isoformat(timespec="seconds")


def _document(result: GarbageCollection) -> dict[str, Any]:
    return {
        "dry_run": result.dry_run,
        "would_delete" if result.dry_run else "deleted": result.deleted,
        "batches": result.batches,
        "cutoff_epoch_ms": result.cutoff_epoch_timestamp_ms,
        "kept_for_children": result.kept_for_children,
        "kept_for_parent": result.kept_for_parent,
        "kept_for_runner": result.kept_for_runner,
        "duration_s": round(result.duration_s, 3),
    }


def _kept_lines(result: GarbageCollection) -> None:
    if result.kept_for_children:
        render.info(
            f"kept {_plural(result.kept_for_children)} whose child workflow is still unfinished"
        )
    if result.kept_for_parent:
        render.info(
            f"kept {_plural(result.kept_for_parent)} still referred to by a parent or a fork "
            "that is kept"
        )
    if result.kept_for_runner:
        render.info(
            f"kept {_plural(result.kept_for_runner)} cancelled while in a step still running"
        )


def gc(
    older_than: OlderThan = None,
    rows_threshold: RowsThreshold = None,
    status: GcStatus = None,
    batch_size: BatchSize = None,
    dry_run: DryRun = False,
    yes: Yes = False,
    db_url: DbUrl = None,
    json_output: JsonFlag = False,
) -> None:
    """Delete finished workflows (SUCCESS, ERROR, CANCELLED, MAX_RECOVERY_ATTEMPTS_EXCEEDED)
    older than --older-than, with their steps, messages, events, streams and idempotency keys.
    Never deletes a PENDING, ENQUEUED or DELAYED workflow, a parent whose child is still
    unfinished, or a child whose parent is."""
    if older_than is None and rows_threshold is None:
        render.error("give --older-than DURATION (e.g. 30d) or --rows-threshold N")
        raise typer.Exit(1)
    cutoff = None if older_than is None else int((time.time() - older_than) * 1000)
    options: dict[str, Any] = {"statuses": status or None}
    if batch_size is not None:
        options["batch_size"] = batch_size
    with open_client(db_url) as client:
        if dry_run or not yes:
            preview = client.garbage_collect(cutoff, rows_threshold, dry_run=True, **options)
            if dry_run:
                if json_output:
                    render.print_json(_document(preview))
                    return
                render.info(
                    f"dry run: {_plural(preview.deleted)} created before "
                    f"{_when(preview.cutoff_epoch_timestamp_ms)} would be deleted; nothing changed"
                )
                _kept_lines(preview)
                return
            if not preview.deleted:
                if json_output:
                    render.print_json(_document(preview) | {"dry_run": False, "deleted": 0})
                    return
                render.info("no finished workflow to delete; nothing changed")
                _kept_lines(preview)
                return
            # On stderr: stdout carries only the result (one JSON document with --json).
            render.confirm(
                f"Delete {_plural(preview.deleted)} created before "
                f"{_when(preview.cutoff_epoch_timestamp_ms)}, with all their data?"
            )
            # The confirmed cutoff, not a new one: with --rows-threshold, workflows started since
            # the preview would move it and delete more than the prompt said.
            cutoff, rows_threshold = preview.cutoff_epoch_timestamp_ms, None
        result = client.garbage_collect(cutoff, rows_threshold, **options)
    if json_output:
        render.print_json(_document(result))
        return
    render.success(
        f"deleted {_plural(result.deleted)} in {result.batches} "
        f"batch{'es' if result.batches != 1 else ''} in {result.duration_s:.2f} s"
    )
    _kept_lines(result)


def register(group: typer.Typer) -> None:
    """Add `dbos workflow gc` to the `workflow` group."""
    group.command("gc")(gc)

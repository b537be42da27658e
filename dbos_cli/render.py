"""The only module that knows Rich: how the CLI shows results, errors and JSON."""

from __future__ import annotations

import json
import sys
import time
import unicodedata
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import TYPE_CHECKING, Any

from rich.markup import escape as escape_markup

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

    from runtime.client import ExecutorInfo, VersionWork, Waiting
    from runtime.status import StepInfo, WorkflowStatus


def _obeyed(ch: str) -> bool:
    """Whether a terminal would act on ``ch`` instead of showing it: a control or format
    character (ESC, C1 controls, bidi overrides), newline and tab aside."""
    return ch not in "\n\t" and unicodedata.category(ch) in ("Cc", "Cf")


def _visible(ch: str) -> str:
    return repr(ch)[1:-1] if _obeyed(ch) else ch  # '\x1b', '\u202e': shown, never obeyed


def escape(text: str) -> str:
    """Text from the database (or the app) made safe to print on one line: Rich markup escaped,
    and every control or format character a terminal would obey (ESC sequences, C1 controls,
    bidi overrides), and newline and tab too, shown as its Python escape, so an ID or a name is
    one cell of a table, as stored. Every renderer goes through it (or ``escape_block``)."""
    return escape_markup(
        "".join(_visible(ch) for ch in text).replace("\n", "\\n").replace("\t", "\\t")
    )


def escape_block(text: str) -> str:
    """``escape`` for text that spans lines (messages, tracebacks, pretty-printed values): its
    newlines and tabs are kept."""
    return escape_markup("".join(_visible(ch) for ch in text))


@cache
def _console(stderr: bool) -> Console:
    # Created on first use: `dbos --version` and JSON output never pay for Rich's console.
    from rich.console import Console

    # No emoji codes: a stored name or an argument with `:b:` in it must print as typed.
    return Console(stderr=stderr, highlight=False, soft_wrap=True, emoji=False)


class _Lazy:
    """``out`` and ``err`` stand for the two consoles until first used."""

    def __init__(self, stderr: bool) -> None:
        self._stderr = stderr

    def __getattr__(self, name: str) -> Any:
        return getattr(_console(self._stderr), name)


out: Any = _Lazy(stderr=False)
err: Any = _Lazy(stderr=True)

STATUS_STYLE = {
    "PENDING": "yellow",
    "ENQUEUED": "cyan",
    "DELAYED": "blue",
    "SUCCESS": "green",
    "ERROR": "red",
    "CANCELLED": "magenta",
    "MAX_RECOVERY_ATTEMPTS_EXCEEDED": "bold red",
}


def info(message: str) -> None:
    """A line of normal output (user text is escaped, never read as markup; a newline or tab in
    it is shown as ``\\n``/``\\t``, so the line stays one line)."""
    out.print(escape(message))


def block(text: str) -> None:
    """Output that spans lines (a pretty-printed value), escaped but for newlines and tabs."""
    out.print(escape_block(text))


def success(message: str) -> None:
    """A line reporting that something was done."""
    out.print(f"[green]✓[/green] {escape(message)}")


def error(message: str) -> None:
    """The one line an error gets on stderr."""
    err.print(f"[red]error:[/red] {escape(message)}")


def confirm(question: str) -> None:
    """Ask ``question [y/N]`` on stderr and read the answer from stdin; anything but yes (or the
    end of input) raises ``typer.Abort``. Nothing goes to stdout, which carries only the result
    (one JSON document with ``--json``)."""
    import sys

    import typer

    err.print(f"{escape_block(question)} [y/N]: ", end="")
    answer = sys.stdin.readline().strip().lower()
    if answer not in ("y", "yes"):
        raise typer.Abort()


def warning(message: str) -> None:
    """A warning on stderr."""
    err.print(f"[yellow]warning:[/yellow] {escape(message)}")


def status_text(status: str) -> str:
    """A status name in its colour, as Rich markup."""
    style = STATUS_STYLE.get(status, "white")
    return f"[{style}]{escape(status)}[/{style}]"


def print_json(document: Any) -> None:
    """Machine-readable output: one JSON document on stdout and nothing else."""
    text = json.dumps(document, indent=2, default=str, ensure_ascii=False)
    sys.stdout.write(_terminal_safe(text) + "\n")  # C1 controls too: still the same JSON
    sys.stdout.flush()


# -- workflows -------------------------------------------------------------------------------------

MAX_VALUE_LINES = 30
MAX_VALUE_CHARS = 3000


def local_time(epoch_ms: int | None) -> str:
    """An epoch-millisecond time as local ISO 8601 (seconds precision)."""
    if epoch_ms is None:
        return ""
    return datetime.fromtimestamp(epoch_ms / 1000).astimezone().isoformat(timespec="seconds")


@dataclass(frozen=True)
class Page:
    """Where a listing page stands: ``total`` matching (or, ``capped``, more than that many:
    the count stopped there), from ``offset``, in which order."""

    total: int
    offset: int
    newest_first: bool
    capped: bool = False


def listing_footer(shown: int, page: Page) -> None:
    """The line under a listing page: which rows of how many matching, in which order, and the
    option that shows the next page when more match."""
    total, offset = page.total, page.offset
    if total == 0:
        return  # the table says "no workflows match"
    order = "newest first" if page.newest_first else "oldest first"
    of = f"more than {total}" if page.capped else str(total)
    beyond = max(total - offset - shown, 0)
    if shown:
        where = f"{offset + 1}-{offset + shown} of {of} ({order})"
    elif offset >= total:
        where = f"none past offset {offset}: {of} match"
    else:  # --limit 0
        where = f"{of} match; none shown (--limit 0)"
    if beyond and shown:
        where += f"; {'more' if page.capped else f'{beyond} more'}: --offset {offset + shown}"
    out.print(f"[dim]{escape(where)}[/dim]")


def short_time(epoch_ms: int | None) -> str:
    """Local time for tables: ISO 8601 without the offset, to fit narrow terminals."""
    if epoch_ms is None:
        return ""
    return datetime.fromtimestamp(epoch_ms / 1000).isoformat(timespec="seconds")


def error_text(error: BaseException | None) -> str:
    """``Type: message`` of a recorded error."""
    if error is None:
        return ""
    original = getattr(error, "original_type", None)
    kind = original or type(error).__name__
    message = str(error)
    return f"{kind}: {message}" if message else str(kind)


def traceback_text(error: BaseException | None) -> str | None:
    """The traceback stored with a recorded error (its last 8 kB); None when there is none."""
    trace = getattr(error, "dbos_traceback", None)
    return trace if isinstance(trace, str) else None


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, default=str, ensure_ascii=False, sort_keys=True)


def _compact(value: Any) -> str:
    """One line of JSON (database text: the caller escapes it for the terminal)."""
    return json.dumps(value, default=str, ensure_ascii=False, sort_keys=True)


def _truncated(text: str) -> tuple[str, bool]:
    lines = text.splitlines()
    cut = False
    if len(lines) > MAX_VALUE_LINES:
        lines, cut = lines[:MAX_VALUE_LINES], True
    joined = "\n".join(lines)
    if len(joined) > MAX_VALUE_CHARS:
        joined, cut = joined[:MAX_VALUE_CHARS], True
    return joined, cut


def now_ms() -> int:
    """This machine's clock, in epoch milliseconds (how far a wait's end is)."""
    return int(time.time() * 1000)


def waiting_json(waiting: Waiting | None, now: int) -> dict[str, Any] | None:
    """The stable JSON shape of what a workflow waits for (None: its record shows no wait)."""
    if waiting is None:
        return None
    return {
        "kind": waiting.kind,
        "until": local_time(waiting.until_ms) or None,
        "until_ms": waiting.until_ms,
        "detail": waiting.detail,
        "child_status": waiting.child_status,
        "description": waiting.describe(now, local=True),
    }


def workflow_json(
    wf: WorkflowStatus,
    *,
    values: bool = True,
    waiting: Waiting | None = None,
    now: int | None = None,
) -> dict[str, Any]:
    """The stable JSON shape of a workflow record; ``waiting`` is always there (null when the
    record shows no wait)."""
    doc: dict[str, Any] = {
        "workflow_id": wf.workflow_id,
        "status": wf.status,
        "name": wf.name,
        "class_name": wf.class_name,
        "config_name": wf.config_name,
        "queue_name": wf.queue_name,
        "executor_id": wf.executor_id,
        "app_version": wf.app_version,
        "created_at": local_time(wf.created_at),
        "updated_at": local_time(wf.updated_at),
        "recovery_attempts": wf.recovery_attempts,
        "parent_workflow_id": wf.parent_workflow_id,
        "forked_from": wf.forked_from,
        "was_forked_from": wf.was_forked_from,
        "priority": wf.priority,
        "deduplication_id": wf.deduplication_id,
        "queue_partition_key": wf.queue_partition_key,
        "delay_until_epoch_ms": wf.delay_until_epoch_ms,
        "dequeued_at": local_time(wf.dequeued_at),
        "attributes": wf.attributes,
        "schedule_name": wf.schedule_name,
        "waiting": waiting_json(waiting, now_ms() if now is None else now),
    }
    if values:
        doc["input"] = wf.input
        doc["output"] = wf.output
        doc["error"] = error_text(wf.error) or None
        doc["traceback"] = traceback_text(wf.error)
    return doc


def step_json(step: StepInfo) -> dict[str, Any]:
    """The stable JSON shape of a recorded step."""
    duration = (
        step.completed_at - step.started_at
        if step.completed_at is not None and step.started_at is not None
        else None
    )
    return {
        "function_id": step.function_id,
        "function_name": step.function_name,
        "status": step_status(step),
        "output": step.output,
        "error": error_text(step.error) or None,
        "traceback": traceback_text(step.error),
        "child_workflow_id": step.child_workflow_id,
        "started_at": local_time(step.started_at) or None,
        "completed_at": local_time(step.completed_at) or None,
        "duration_ms": duration,
        "failed_attempts": step.attempts,
    }


def _cell_len(cell: object) -> int:
    from rich.text import Text

    return Text.from_markup(cell, emoji=False).cell_len if isinstance(cell, str) else 0


def print_table(table: Table) -> None:
    """Print a table the way every table of the CLI is printed: a header is never cut (``Vers…``),
    a ``no_wrap`` column without a ``max_width`` (IDs, statuses, times, numbers) always shows its
    cells whole on one line, and the other columns share the room left (down to their header's
    width: ellipsis, or prose wrapping). A table that cannot fit the terminal even so runs past
    its right edge, as `kubectl` and `gh` do, rather than breaking an ID over lines (operators
    copy them)."""
    from rich.padding import Padding

    whole, flexible = 0, []
    for column in table.columns:
        header = _cell_len(column.header)
        widest = max([header, *(_cell_len(c) for c in column.cells)])
        if column.no_wrap and column.max_width is None:
            column.width = widest
            whole += widest
        else:
            flexible.append((column, header, max(header, min(widest, column.max_width or widest))))
    _, right, _, left = Padding.unpack(table.padding)
    gaps = (len(table.columns) - 1) * (left + right + (1 if table.box else 0))
    room = out.width - gaps - whole
    floor = sum(header for _, header, _ in flexible)
    extra = sum(want - header for _, header, want in flexible)
    share = 1.0 if extra <= max(room - floor, 0) else max(room - floor, 0) / extra
    for column, header, want in flexible:
        column.width = header + int((want - header) * share)
    total = whole + gaps + sum(c.width or 0 for c, _, _ in flexible)
    console = _console(False)  # Console.print never renders wider than the console is
    width = console.width
    console.width = max(width, total)
    try:
        console.print(table)
    finally:
        console.width = width


def workflow_table(
    workflows: list[WorkflowStatus],
    title: str | None = None,
    waits: dict[str, Waiting] | None = None,
) -> None:
    """Workflows as a table: ID, name, status, queue, created, updated, executor, version, and
    what PENDING ones wait for when the terminal is wide enough."""
    from rich.table import Table

    table = Table(title=title, header_style="bold", show_edge=False, pad_edge=False)
    # On a narrow terminal the less urgent columns go, rather than squeezing every column: at 80
    # columns a UUID, its name, status and creation time fit on one line (see print_table).
    wide = out.width >= 150
    table.add_column("ID", no_wrap=True)
    table.add_column("Name", overflow="ellipsis", no_wrap=True, max_width=40)
    table.add_column("Status", no_wrap=True)
    with_queue = out.width >= 100
    if with_queue:
        table.add_column("Queue", overflow="ellipsis", no_wrap=True, max_width=20)
    table.add_column("Created", no_wrap=True)
    if wide:
        table.add_column("Updated", no_wrap=True)
        table.add_column("Executor", overflow="ellipsis", no_wrap=True, max_width=16)
        table.add_column("Version", no_wrap=True)
    # Only a very wide terminal gets the wait column (the others keep their room); `workflow get`
    # shows the wait anywhere. A queue is in its own column already.
    waits = {k: w for k, w in (waits or {}).items() if w.kind != "queue"}
    show_waits = bool(waits) and out.width >= 180
    if show_waits:
        table.add_column("Waiting", overflow="ellipsis", no_wrap=True, max_width=24)
    now = now_ms()
    for wf in workflows:
        cells = [
            escape(wf.workflow_id),
            escape(wf.name),
            status_text(wf.status),
            *([escape(wf.queue_name or "")] if with_queue else []),
            short_time(wf.created_at),
        ]
        if wide:
            cells += [
                short_time(wf.updated_at),
                escape(wf.executor_id or ""),
                escape((wf.app_version or "")[:8]),
            ]
        if show_waits:
            waiting = waits.get(wf.workflow_id)
            cells.append(escape(waiting.brief(now)) if waiting else "")
        table.add_row(*cells)
    print_table(table)
    if not workflows:
        out.print("[dim]no workflows match[/dim]")


@dataclass(frozen=True)
class RunningSteps:
    """The steps a workflow is running now, as ``workflow get`` shows them."""

    steps: list[StepInfo]

    def json(self) -> dict[str, Any]:
        return {
            "running_steps": [
                {
                    "function_id": s.function_id,
                    "function_name": s.function_name,
                    "started_at": local_time(s.started_at),
                }
                for s in self.steps
            ]
        }

    def rows(self) -> list[tuple[str, str]]:
        return [
            (
                "Running step",
                f"{s.function_id} {escape(s.function_name)} since {local_time(s.started_at)}",
            )
            for s in self.steps
        ]


def workflow_panel(
    wf: WorkflowStatus,
    waiting: Waiting | None = None,
    why: str | None = None,
    running: list[tuple[str, str]] | None = None,
) -> None:
    """One workflow's record (with what it waits for: ``why``, the summary of `dbos workflow
    why`, else what its record shows; and the steps it is ``running``), then its input and output
    (or error), pretty-printed."""
    from rich.panel import Panel
    from rich.table import Table

    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column(overflow="fold")
    rows: list[tuple[str, str]] = [
        ("ID", escape(wf.workflow_id)),
        ("Status", status_text(wf.status)),
        (
            "Waiting" if wf.status in ("PENDING", "ENQUEUED", "DELAYED") else "Why",
            escape(why or (waiting.describe(now_ms(), local=True) if waiting else "")),
        ),
        ("Name", escape(wf.name)),
        ("Class", escape(wf.class_name or "")),
        ("Config name", escape(wf.config_name or "")),
        ("Queue", escape(wf.queue_name or "")),
        ("Executor", escape(wf.executor_id or "")),
        ("App version", escape(wf.app_version or "")),
        ("Created", local_time(wf.created_at)),
        ("Started", local_time(wf.started_at)),
        ("Updated", local_time(wf.updated_at)),
        ("Completed", local_time(wf.completed_at)),
        ("Recovery attempts", str(wf.recovery_attempts)),
        ("Parent", escape(wf.parent_workflow_id or "")),
        ("Forked from", escape(wf.forked_from or "")),
        ("Deadline", local_time(wf.workflow_deadline_epoch_ms)),
        ("Attributes", escape(_compact(wf.attributes)) if wf.attributes else ""),
        ("Schedule", escape(wf.schedule_name or "")),
        *(running or []),
    ]
    for label, value in rows:
        if value:
            grid.add_row(label, value)
    out.print(Panel(grid, title="workflow", title_align="left", expand=False))
    sections: list[tuple[str, str]] = [("Input", _pretty(wf.input))]
    if wf.error is not None:
        sections.append(("Error", error_text(wf.error)))
        trace = traceback_text(wf.error)
        if trace:  # its end says where it was raised: that part is shown
            lines = trace.rstrip("\n").splitlines()
            tail = "\n".join(lines[-(MAX_VALUE_LINES - 1) :])[-(MAX_VALUE_CHARS - 80) :]
            more = f"… {len(lines)} lines; --json shows them all\n"
            sections.append(("Traceback", (more if tail != "\n".join(lines) else "") + tail))
    elif wf.status == "SUCCESS":
        sections.append(("Output", _pretty(wf.output)))
    for label, text in sections:
        body, cut = _truncated(text)
        out.print(f"[bold]{label}[/bold]")
        out.print(escape_block(body))
        if cut:
            out.print("[dim]… truncated; --json shows it whole[/dim]")


def _step_state(step: StepInfo) -> str:
    if step.running:
        return "[yellow]RUNNING[/yellow]"
    return "[red]ERROR[/red]" if step.error is not None else "[green]SUCCESS[/green]"


def step_status(step: StepInfo) -> str:
    """``RUNNING`` (a step running now), ``ERROR`` or ``SUCCESS``."""
    if step.running:
        return "RUNNING"
    return "ERROR" if step.error is not None else "SUCCESS"


def steps_table(steps: list[StepInfo], wf: WorkflowStatus) -> None:
    """The recorded steps as a timeline: number, name, outcome, child, duration and a bar placing
    the step within the workflow's run."""
    from rich.table import Table

    starts = [s.started_at for s in steps if s.started_at is not None]
    ends = [s.completed_at for s in steps if s.completed_at is not None]
    origin = min([*starts, *([wf.started_at] if wf.started_at else [])], default=0)
    finish = max([*ends, *([wf.completed_at] if wf.completed_at else [])], default=origin)
    span = max(finish - origin, 1)
    width = 20
    table = Table(header_style="bold", show_edge=False, pad_edge=False)
    timeline = out.width >= 110  # the bar needs room; narrow terminals keep the durations
    table.add_column("#", no_wrap=True, justify="right")
    # The step's name and outcome share the room left; a failed step keeps its name too.
    table.add_column("Step", no_wrap=True, overflow="ellipsis", max_width=40)
    table.add_column("Status", no_wrap=True)
    table.add_column("Output / error", no_wrap=True, overflow="ellipsis", max_width=50)
    children = any(s.child_workflow_id for s in steps)
    if children:  # an ID, shown whole
        table.add_column("Child workflow", no_wrap=True)
    table.add_column("Duration", no_wrap=True, justify="right")
    if timeline:
        table.add_column("Timeline", no_wrap=True)
    for step in steps:
        failed = step.error is not None
        outcome = error_text(step.error) if failed else json.dumps(step.output, default=str)
        if step.running:
            outcome = f"running since {short_time(step.started_at)}"
        elif step.attempts:
            tries = len(step.attempts)
            outcome = f"after {tries} failed attempt{'s' if tries > 1 else ''}: {outcome}"
        outcome, _ = _truncated(outcome)
        if len(outcome) > 60:
            outcome = outcome[:59] + "…"
        duration = ""
        bar = ""
        if step.started_at is not None and step.completed_at is not None:
            ms = step.completed_at - step.started_at
            duration = f"{ms / 1000:.3f}s" if ms >= 1000 else f"{ms}ms"
            left = int((step.started_at - origin) / span * width)
            length = max(1, round(ms / span * width))
            bar = " " * min(left, width - 1) + "█" * min(length, width - left)
        table.add_row(
            str(step.function_id),
            escape(step.function_name),
            _step_state(step),
            escape(outcome),
            *([escape(step.child_workflow_id or "")] if children else []),
            duration,
            *([f"[{'red' if failed else 'cyan'}]{bar}[/]"] if timeline else []),
        )
    print_table(table)
    if not steps:
        out.print("[dim]no recorded steps[/dim]")


# -- executors -------------------------------------------------------------------------------------

EXECUTOR_STYLE = {"ALIVE": "green", "DEAD": "bold red", "STOPPED": "dim"}


def executors_view(found: list[ExecutorInfo], versions: list[VersionWork], now_ms: int) -> None:
    """Processes with their state and last heartbeat, then the work left per version."""
    from rich.table import Table

    table = Table(title="executors", header_style="bold", show_edge=False, pad_edge=False)
    for column in ("Executor", "Host", "PID", "Version", "State", "Last heartbeat", "Pending"):
        table.add_column(column, no_wrap=True)
    for e in found:
        style = EXECUTOR_STYLE.get(e.state, "white")
        state = f"[{style}]{e.state}[/{style}]"
        if e.duplicate_id:
            state += " [bold yellow]DUPLICATE ID[/bold yellow]"
        ago = max(0, now_ms - e.last_heartbeat_at) / 1000
        table.add_row(
            escape(e.executor_id),
            escape(e.hostname),
            str(e.pid),
            escape(e.application_version[:8]),
            state,
            f"{ago:.0f}s ago",
            str(e.pending_workflows),
        )
    print_table(table)
    if not found:
        out.print("[dim]no executor has registered yet[/dim]")
    work = Table(title="work per version", header_style="bold", show_edge=False, pad_edge=False)
    for column in ("Version", "Pending", "Enqueued", "Live processes"):
        work.add_column(column, no_wrap=True)
    work.add_column("Note")  # prose: wraps in the room left
    for v in versions:
        note = ""
        if v.pending + v.enqueued == 0:
            note = "[dim]no work left: its processes can be shut down[/dim]"
        elif v.live_processes == 0:
            note = "[bold red]work waiting and no live process of this version[/bold red]"
        work.add_row(
            escape(v.application_version[:8]),
            str(v.pending),
            str(v.enqueued),
            str(v.live_processes),
            note,
        )
    print_table(work)


def executor_json(e: ExecutorInfo) -> dict[str, Any]:
    """The stable JSON shape of an executor process."""
    return {
        "process_id": e.process_id,
        "executor_id": e.executor_id,
        "hostname": e.hostname,
        "pid": e.pid,
        "app_version": e.application_version,
        "state": e.state,
        "duplicate_id": e.duplicate_id,
        "started_at": local_time(e.started_at),
        "last_heartbeat_at": local_time(e.last_heartbeat_at),
        "stopped_at": local_time(e.stopped_at) or None,
        "lease_ms": e.lease_ms,
        "pending_workflows": e.pending_workflows,
    }


# -- streams ---------------------------------------------------------------------------------------


def _terminal_safe(text: str) -> str:
    """JSON text with every character a terminal would obey (``_obeyed``) written as its JSON
    escape (ESC as ``\\u001b``): still the same JSON (inside a string those are escapes
    already; between tokens only newline and tab occur)."""
    return "".join(json.dumps(ch)[1:-1] if _obeyed(ch) else ch for ch in text)


def stream_header() -> None:
    """The column names above the values `workflow stream` prints as they arrive."""
    out.print("[bold]offset  value[/bold]")


def stream_value(offset: int, value: Any, json_output: bool) -> None:
    """One value of a stream, printed at once: ``offset  value`` (the value as JSON), or with
    ``json_output`` one JSON object ``{"offset", "value"}`` on its own line."""
    if json_output:
        line = json.dumps({"offset": offset, "value": value}, default=str, ensure_ascii=False)
        sys.stdout.write(_terminal_safe(line) + "\n")
        sys.stdout.flush()
        return
    text = json.dumps(value, default=str, ensure_ascii=False, sort_keys=True)
    out.print(f"{offset:>6}  {escape(_terminal_safe(text))}")


def stream_end(count: int) -> None:
    """The line after the last value: the stream is closed or its workflow has ended."""
    out.print(f"[dim]end of stream ({count} value{'' if count == 1 else 's'})[/dim]")


def versions_table(versions: list[dict[str, Any]], live: list[str]) -> None:
    """Registered application versions, latest first, with whether a live executor runs each."""
    from rich.table import Table

    table = Table(
        title="application versions", header_style="bold", show_edge=False, pad_edge=False
    )
    for column in ("Version", "Latest", "Live executors", "Timestamp", "Registered", "ID"):
        table.add_column(column, no_wrap=True)
    for i, v in enumerate(versions):
        table.add_row(
            escape(v["version_name"]),
            "[green]latest[/green]" if i == 0 else "",
            "[green]yes[/green]" if v["version_name"] in live else "[dim]no[/dim]",
            local_time(v["version_timestamp"]),
            local_time(v["created_at"]),
            escape(v["version_id"]),
        )
    print_table(table)
    if not versions:
        out.print("[dim]no application version has registered yet[/dim]")

"""Listing and steering workflows: the operations behind ``DBOS.list_workflows`` and friends,
``DBOSClient`` and the `dbos workflow` commands. They act on the system tables alone: resuming,
restarting or forking makes a workflow ready on the internal queue, and any live executor of its
application version picks it up."""

from __future__ import annotations

import inspect
import socket
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from runtime import migrate
from runtime.action_preview import ActionPreview, Eligibility
from runtime.attribute_db import AttributeTable
from runtime.context import attributes_json, validate_workflow_id
from runtime.errors import DBOSException, DBOSNonExistentWorkflowError
from runtime.executor_db import ExecutorTable
from runtime.liveness import gone_on_this_host, process_identity
from runtime.queues import INTERNAL_QUEUE
from runtime.records import PeerProcess, QueueInfo, VersionWork
from runtime.running_steps import running_steps
from runtime.status import StepInfo, WorkflowStatus, WorkflowStatusString
from runtime.system_db import SystemDatabase
from runtime.waiting import Waiting, derive
from runtime.workflow_admin import WorkflowAdmin
from runtime.workflow_count import WorkflowCount
from runtime.workflow_list import id_prefix_ranges

__all__ = [
    "STATUSES",
    "Change",
    "attributes_text",
    "ExecutorInfo",
    "QueueInfo",
    "TimeArg",
    "VersionWork",
    "cancel",
    "cancel_many",
    "count_workflows",
    "delete",
    "executors",
    "fork",
    "get_workflow",
    "update_attributes",
    "list_steps",
    "list_workflows",
    "workflow_filters",
    "parse_statuses",
    "parse_time",
    "queues",
    "restart",
    "resume",
    "list_arguments",
    "reset_system_database",
    "resume_many",
    "version_work",
    "waits",
]

STATUSES = [s.value for s in WorkflowStatusString]
TimeArg = datetime | str | int | float | None


@dataclass(frozen=True)
class Change:
    """The outcome of a management action on one workflow."""

    workflow_id: str
    changed: bool
    reason: str | None = None  # why nothing changed, for people
    missing: bool = False  # no workflow has that ID (for code: never compare ``reason``)


def parse_statuses(status: str | Iterable[str] | None) -> list[str] | None:
    """Status names, upper-cased and checked."""
    if status is None:
        return None
    names = _listed("status", status)
    checked = []
    for name in names:
        upper = str(name).strip().upper()
        if upper not in STATUSES:
            raise DBOSException(f"invalid status {name!r}; expected one of {', '.join(STATUSES)}")
        checked.append(upper)
    return checked or None


def parse_time(value: TimeArg, what: str) -> int | None:
    """Epoch milliseconds from a datetime, an ISO 8601 string (local time when it has no offset)
    or a number of epoch milliseconds."""
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        if not -MAX_BIGINT <= value <= MAX_BIGINT:  # also refuses nan
            raise DBOSException(f"invalid {what} {value!r}: expected epoch milliseconds")
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"  # Python 3.10's fromisoformat does not read "Z"
        try:
            value = datetime.fromisoformat(text)
        except ValueError:
            raise DBOSException(
                f"invalid {what} {value!r}: expected an ISO 8601 date or time, "
                "e.g. 2026-11-21 or 2026-11-21T14:30:00"
            ) from None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.astimezone()  # local time, as the CLI shows times
        return int(value.timestamp() * 1000)
    raise DBOSException(f"invalid {what} {value!r}")


OneOrMany = str | Iterable[str] | None
# Postgres's bigint: the largest LIMIT, OFFSET or epoch millisecond a query can take.
MAX_BIGINT = 2**63 - 1


def _listed(key: str, value: object) -> list[Any]:
    """``value`` (a string or an iterable of values) as a list; anything else is refused."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, bytes | dict) or not isinstance(value, Iterable):
        raise DBOSException(f"invalid {key} {value!r}: expected a string or a list of strings")
    return list(value)


def _check_whole(key: str, value: object) -> None:
    """Refuse ``value`` for the argument ``key`` unless it is None or an integer that fits a
    bigint and is not negative (a row count, an offset)."""
    if value is not None and (
        not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_BIGINT
    ):
        raise DBOSException(f"invalid {key} {value!r}: expected an integer from 0 to 2**63-1")


def _check_list_arguments(arguments: dict[str, Any]) -> None:
    """Refuse ``list_workflows`` arguments of the wrong type or range with a ``DBOSException``
    naming the argument, rather than a TypeError from deep inside or a query that silently
    matches nothing."""
    for key in ("limit", "offset"):
        _check_whole(key, arguments[key])
    for key in (
        "was_forked_from",
        "has_parent",
        "is_fork",
        "sort_desc",
        "load_input",
        "load_output",
    ):
        value = arguments[key]
        if value is not None and not isinstance(value, bool):
            raise DBOSException(f"invalid {key} {value!r}: expected True or False")


def _text(value: object) -> bool:
    """Whether ``value`` can be a text filter: a string without NUL (Postgres text holds none)."""
    return isinstance(value, str) and "\x00" not in value


def _workflow_ids(ids: object) -> list[str] | None:
    """The ``workflow_ids`` filter as a list; a single string is refused (as in DBOS, the
    argument is a list: a string's characters are not IDs)."""
    if ids is None:
        return None
    found = None if isinstance(ids, str | bytes | dict) else _listed("workflow_ids", ids)
    if found is None or not all(_text(i) for i in found):
        raise DBOSException(f"invalid workflow_ids {ids!r}: expected a list of workflow IDs")
    return found


def _one_or_many(key: str, value: OneOrMany, filters: dict[str, Any]) -> None:
    """Set filter ``key`` (one value: the index-friendly equality) or ``key_any`` (several)."""
    if value is None:
        return
    values = _listed(key, value)
    for v in values:
        if not _text(v):
            raise DBOSException(f"invalid {key} {v!r}: expected a string or a list of strings")
    if len(values) == 1:
        filters[key] = values[0]
    else:  # an empty list matches nothing, as SQL's IN () would
        filters[key + "_any"] = values


def _like_prefix(prefix: str) -> str:
    """A LIKE pattern matching IDs that start with ``prefix`` (its own wildcards escaped)."""
    return prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


# Filters of DBOS 3.x on what no workflow records here.
_UNRECORDED = ("user", "application_name", "shard_key", "parent_shard_key")


def _list_filters(a: dict[str, Any]) -> dict[str, Any]:
    """The WHERE fragments (keys of ``workflow_list.LIST_FILTERS``) and their values for the
    filter arguments ``a`` of ``list_workflows`` (its ``locals()``), checked and converted."""
    statuses = parse_statuses(a["status"])
    queued_only = a["queued_only"]
    filters: dict[str, Any] = {
        "workflow_ids": _workflow_ids(a["workflow_ids"]),
        "status": statuses,
        "start_time": parse_time(a["start_time"], "start time"),
        "end_time": parse_time(a["end_time"], "end time"),
        "queued_only": True if queued_only and statuses is None else None,
        "in_queue": True if queued_only and statuses is not None else None,
        "before": {"before_ts": a["before"][0], "before_id": a["before"][1]}
        if a["before"]
        else None,
        # DBOS 3.x records these; no workflow records them here, so each matches nothing.
        "user": True
        if any(
            a[k] is not None for k in ("user", "application_name", "shard_key", "parent_shard_key")
        )
        else None,
        "attributes": attributes_json(a["attributes"]) if a["attributes"] else None,
    }
    for key in ("completed_after", "completed_before", "dequeued_after", "dequeued_before"):
        filters[key] = parse_time(a[key], key)
    for key, negated in (
        ("was_forked_from", "was_not_forked_from"),
        ("has_parent", "has_no_parent"),
        ("is_fork", "is_not_fork"),
    ):
        if a[key] is not None:
            filters[key if a[key] else negated] = True
    for key in (
        "name",
        "app_version",
        "queue_name",
        "forked_from",
        "parent_workflow_id",
        "executor_id",
        "workflow_id_prefix",
        "schedule_name",
    ):
        _one_or_many(key, a[key], filters)
    if "workflow_id_prefix" in filters:
        filters["workflow_id_prefix"] = _like_prefix(filters["workflow_id_prefix"])
    if "workflow_id_prefix_any" in filters:
        filters["workflow_id_prefix_any"] = id_prefix_ranges(filters["workflow_id_prefix_any"])
    return {k: v for k, v in filters.items() if v is not None}


# The arguments of list_workflows that choose the page and what is loaded, not the workflows.
_PAGING = ("sysdb", "limit", "offset", "sort_desc", "load_input", "load_output")


def workflow_filters(**arguments: Any) -> dict[str, Any]:
    """The WHERE fragments (keys of ``workflow_list.LIST_FILTERS``) and values for filter
    keywords of ``list_workflows`` (not its paging and loading ones), checked as it checks them:
    for a caller that adds fragments of its own (the dashboard's name prefix and paging)."""
    parameters = inspect.signature(list_workflows).parameters
    unknown = sorted(set(arguments) - set(parameters) | set(arguments) & set(_PAGING))
    if unknown:
        raise DBOSException(f"unexpected filter arguments {unknown}")
    full = {k: p.default for k, p in parameters.items() if k != "sysdb"}
    full.update(arguments)
    _check_list_arguments(full)
    return _list_filters(full)


def count_workflows(sysdb: SystemDatabase, *, at_most: int | None = None, **arguments: Any) -> int:
    """How many workflows match the filters (the keywords of ``list_workflows`` but its paging
    and loading ones), counted with the listing's own WHERE clause. ``at_most`` (an integer
    from 0 to 2**63-1) stops the count there: the answer is ``min(matching, at_most)`` and the
    count reads at most that many rows, so a footer's "at least N" costs N rows, not the
    table; anything else raises ``DBOSException``."""
    filters = workflow_filters(**arguments)
    _check_whole("at_most", at_most)
    return WorkflowCount(sysdb).count(filters, at_most)


def list_workflows(
    sysdb: SystemDatabase,
    *,
    workflow_ids: list[str] | None = None,
    status: str | Iterable[str] | None = None,
    start_time: TimeArg = None,
    end_time: TimeArg = None,
    name: OneOrMany = None,
    app_version: OneOrMany = None,
    queue_name: OneOrMany = None,
    limit: int | None = None,
    offset: int | None = None,
    sort_desc: bool = False,
    load_input: bool = True,
    load_output: bool = True,
    queued_only: bool = False,
    before: tuple[int, str] | None = None,
    forked_from: OneOrMany = None,
    parent_workflow_id: OneOrMany = None,
    user: OneOrMany = None,
    workflow_id_prefix: OneOrMany = None,
    executor_id: OneOrMany = None,
    was_forked_from: bool | None = None,
    has_parent: bool | None = None,
    completed_after: TimeArg = None,
    completed_before: TimeArg = None,
    dequeued_after: TimeArg = None,
    dequeued_before: TimeArg = None,
    attributes: dict[str, Any] | None = None,
    is_fork: bool | None = None,
    schedule_name: OneOrMany = None,
    application_name: OneOrMany = None,
    shard_key: OneOrMany = None,
    parent_shard_key: OneOrMany = None,
) -> list[WorkflowStatus]:
    """Workflows matching every given filter, oldest first unless ``sort_desc``. A filter given a
    list matches any of its values; ``queued_only`` (DBOS's ``queues_only``) keeps workflows of a
    queue, and unless ``status`` is given only the ENQUEUED and PENDING ones; ``attributes``
    keeps those whose attributes contain every given key with an equal value (JSON
    containment: a nested object or list matches one that contains it)."""
    _check_list_arguments(locals())
    filters = _list_filters(locals())
    return sysdb.list_workflow_statuses(
        filters,
        sort_desc=sort_desc,
        limit=limit,
        offset=offset,
        load_input=load_input,
        load_output=load_output,
    )


def attributes_text(attributes: object, merge: bool = False) -> str | None:
    """The JSON text ``update_attributes`` stores for ``attributes``, checked before anything is
    recorded: a dict of JSON values with string keys, or None (to clear; not with ``merge``)."""
    if merge and attributes is None:
        raise DBOSException("cannot merge None into workflow attributes: pass a dict")
    if not isinstance(merge, bool):
        raise DBOSException(f"invalid merge {merge!r}: expected True or False")
    return attributes_json(attributes)


def update_attributes(
    sysdb: SystemDatabase, workflow_id: str, attributes: str | None, merge: bool = False
) -> None:
    """Replace a workflow's attributes with ``attributes`` (``attributes_text``'s JSON; None
    clears them), or with ``merge`` write its top-level keys over the current ones. An unknown
    ID changes nothing, as in DBOS."""
    validate_workflow_id(workflow_id)
    AttributeTable(sysdb).update(workflow_id, attributes, merge=merge)


def list_arguments(arguments: dict[str, Any]) -> dict[str, Any]:
    """``list_workflows``'s keywords from the ``locals()`` of a public listing method with DBOS's
    signature (whose ``queues_only`` is ``queued_only`` here)."""
    found = {k: v for k, v in arguments.items() if k not in ("cls", "self", "queues_only")}
    if arguments.get("queues_only"):
        found["queued_only"] = True
    return found


def reset_system_database(url: str, *, schema: str = "dbos", truncate: bool = False) -> None:
    """Drop the system schema ``schema`` at ``url`` (the next launch recreates it), or with
    ``truncate`` empty its tables and keep the schema."""
    if truncate:
        WorkflowAdmin.truncate_all(url, schema)
    else:
        migrate.reset(url, schema)


def get_workflow(sysdb: SystemDatabase, workflow_id: str) -> WorkflowStatus:
    """One workflow's record; unknown IDs raise."""
    found = sysdb.get_workflow_status(workflow_id)
    if found is None:
        raise DBOSNonExistentWorkflowError(workflow_id)
    return found


def waits(sysdb: SystemDatabase, workflow_ids: Iterable[str]) -> dict[str, Waiting]:
    """What each PENDING or ENQUEUED workflow among ``workflow_ids`` waits for, as the database
    shows it (the rule is ``runtime.waiting``'s), by ID; a workflow whose record shows no wait
    (running a step, finished, unknown) is absent. One round trip for all of them."""
    ids = list(dict.fromkeys(workflow_ids))
    if not ids:
        return {}
    found = {}
    for snapshot in sysdb.wait_snapshots(ids):
        waiting = derive(snapshot)
        if waiting is not None:
            found[snapshot.workflow_id] = waiting
    return found


def list_steps(
    sysdb: SystemDatabase,
    workflow_id: str,
    *,
    load_output: bool = True,
    limit: int | None = None,
    offset: int | None = None,
    include_running: bool = False,
) -> list[StepInfo]:
    """The recorded steps of a workflow, in order, as DBOS lists them; with ``include_running``,
    then those running now (``running`` True; see ``runtime.running_steps`` for the delay)
    (``offset`` steps skipped, at most ``limit``; outputs and errors left None unless
    ``load_output``); unknown IDs raise."""
    if limit is not None and limit < 0:
        raise DBOSException("limit must not be negative")
    if offset is not None and offset < 0:
        raise DBOSException("offset must not be negative")
    if sysdb.get_status_result(workflow_id) is None:
        raise DBOSNonExistentWorkflowError(workflow_id)
    steps = sysdb.get_steps(workflow_id)
    if include_running:
        # Then the steps running now (published by their process's heartbeat; none recorded
        # yet). Not by default: DBOS lists the recorded steps only, and ported code that reads
        # steps[-1]["output"] must not meet a step with no outcome.
        done = {s.function_id for s in steps}
        steps += [s for s in running_steps(sysdb, workflow_id) if s.function_id not in done]
    first = offset or 0
    steps = steps[first : None if limit is None else first + limit]
    if not load_output:
        for step in steps:
            step.output, step.error = None, None
    return steps


def _cancel_skipped(workflow_id: str, status: str | None) -> Change:
    """Why a cancel left a workflow in ``status`` (None: no such workflow) as it was."""
    if status is None:
        return Change(workflow_id, False, "no such workflow", missing=True)
    return Change(workflow_id, False, f"already {status}")


def _resume_skipped(workflow_id: str, status: str | None) -> Change:
    """Why a resume left a workflow in ``status`` (None: no such workflow) as it was."""
    if status is None:
        return Change(workflow_id, False, "no such workflow", missing=True)
    if status == WorkflowStatusString.PENDING:
        return Change(workflow_id, False, "still running in a live process: nothing to resume")
    return Change(
        workflow_id,
        False,
        f"already {status}: a finished workflow is not resumed; "
        "fork it to run it again from a step",
    )


def cancel(sysdb: SystemDatabase, workflow_id: str) -> Change:
    """Cancel a PENDING or ENQUEUED workflow; its runner stops before its next step."""
    if sysdb.cancel_workflow(workflow_id):
        return Change(workflow_id, True)
    current = sysdb.get_status_result(workflow_id)
    return _cancel_skipped(workflow_id, None if current is None else current.status)


def resume(sysdb: SystemDatabase, workflow_id: str) -> Change:
    """Make a CANCELLED, ENQUEUED or MAX_RECOVERY_ATTEMPTS_EXCEEDED workflow (or a PENDING one
    whose process died) ready to continue from its last completed step, attempts reset. One that
    came from a queue goes back to it, keeping its place and its queue's limits; an ENQUEUED one
    starts now, bypassing its queue. A workflow still running in a live process is left to it, and
    a finished one is left as it is (fork it to run it again from a step)."""
    if sysdb.resume_workflow(workflow_id, INTERNAL_QUEUE):
        return Change(workflow_id, True)
    current = sysdb.get_status_result(workflow_id)
    return _resume_skipped(workflow_id, None if current is None else current.status)


def fork(
    sysdb: SystemDatabase,
    workflow_id: str,
    start_step: int,
    *,
    forked_workflow_id: str | None = None,
    application_version: str | None = None,
    timeout_seconds: float | None = None,
) -> str:
    """A new workflow with the same inputs that keeps the recorded outcomes of the steps before
    ``start_step`` and runs the rest anew. As in DBOS any step number is accepted: 1 or less keeps
    nothing, one past the last recorded step (or more) keeps every step. ``timeout_seconds`` is
    the fork's timeout (default: the original's). Returns its ID."""
    if not isinstance(start_step, int) or isinstance(start_step, bool):
        raise DBOSException(f"start_step must be an integer, not {start_step!r}")
    if timeout_seconds is not None and (
        isinstance(timeout_seconds, bool)
        or not isinstance(timeout_seconds, int | float)
        or not timeout_seconds > 0
    ):
        raise DBOSException(
            f"invalid workflow timeout {timeout_seconds!r}: a timeout must be a positive number "
            "of seconds"
        )
    if sysdb.get_status_result(workflow_id) is None:
        raise DBOSNonExistentWorkflowError(workflow_id)
    new_id = (
        str(uuid.uuid4())
        if forked_workflow_id is None
        else validate_workflow_id(forked_workflow_id, "forked workflow ID")
    )
    sysdb.fork_workflow(
        workflow_id,
        new_id,
        max(start_step, 1),
        application_version,
        INTERNAL_QUEUE,
        timeout_ms=int(timeout_seconds * 1000) if timeout_seconds is not None else None,
    )
    return new_id


def restart(sysdb: SystemDatabase, workflow_id: str, *, new_workflow_id: str | None = None) -> str:
    """A new execution with the same inputs and a new ID, from the first step."""
    return fork(sysdb, workflow_id, 1, forked_workflow_id=new_workflow_id)


def delete(
    sysdb: SystemDatabase, workflow_ids: Iterable[str], *, delete_children: bool
) -> list[str]:
    """Delete workflows and everything recorded for them (steps, messages to them, events,
    idempotency keys of sends to them), with their descendants when ``delete_children``. A live
    one (PENDING or ENQUEUED) is cancelled in the same transaction: its runner stops at its next
    step and records nothing more. Unknown IDs are ignored. Returns the IDs deleted."""
    ids = _checked_ids(workflow_ids)
    admin = WorkflowAdmin(sysdb)
    if delete_children:
        ids = list(dict.fromkeys(ids + admin.descendants(ids)))
    return admin.delete(ids)


def _checked_ids(workflow_ids: Iterable[str]) -> list[str]:
    if isinstance(workflow_ids, str):
        raise DBOSException("expected a list of workflow IDs, not one string")
    ids = list(workflow_ids)
    for wid in ids:
        if not isinstance(wid, str):
            raise DBOSException(f"invalid workflow ID {wid!r}: expected a string")
    return ids


def _previewed(
    found: dict[str, Eligibility],
    ids: list[str],
    skipped: Callable[[str, str | None], Change],
    after: Eligibility,
) -> list[Change]:
    """The Change list a real run would return, from the evaluated predicate of each workflow.
    A repeated ID meets the workflow as the real run leaves it (``after``): a second cancel skips
    it as already CANCELLED, a second resume takes the ENQUEUED workflow again."""
    found = dict(found)
    changes = []
    for wid in ids:
        state = found.get(wid)
        if state is not None and state.eligible:
            changes.append(Change(wid, True))
            found[wid] = after
        else:
            changes.append(skipped(wid, None if state is None else state.status))
    return changes


def cancel_many(
    sysdb: SystemDatabase, workflow_ids: Iterable[str], *, dry_run: bool = False
) -> list[Change]:
    """``cancel`` for each workflow, in order. ``dry_run``: what a cancel would change now (the
    same predicate as the real run, evaluated in one read), changing nothing."""
    ids = _checked_ids(workflow_ids)
    if dry_run:
        found = ActionPreview(sysdb).cancel(ids)
        return _previewed(found, ids, _cancel_skipped, Eligibility("CANCELLED", False))
    return [cancel(sysdb, wid) for wid in ids]


def resume_many(
    sysdb: SystemDatabase,
    workflow_ids: Iterable[str],
    *,
    all_must_exist: bool = False,
    dry_run: bool = False,
) -> list[Change]:
    """``resume`` for each workflow, in order. ``all_must_exist`` (DBOS's ``resume_workflows``):
    an unknown ID raises ``DBOSNonExistentWorkflowError`` before any workflow is resumed.
    ``dry_run``: what a resume would change now (the same predicate as the real run, evaluated
    in one read), changing nothing."""
    ids = _checked_ids(workflow_ids)
    if dry_run:
        found = ActionPreview(sysdb).resume(ids)
        return _previewed(found, ids, _resume_skipped, Eligibility("ENQUEUED", True))
    if all_must_exist:
        for wid in ids:
            if sysdb.get_status_result(wid) is None:
                raise DBOSNonExistentWorkflowError(wid)
    return [resume(sysdb, wid) for wid in ids]


@dataclass(frozen=True)
class ExecutorInfo:
    """One process that ran (or runs) workflows against this database."""

    process_id: str
    executor_id: str
    hostname: str
    pid: int
    application_version: str
    lease_ms: int
    started_at: int
    last_heartbeat_at: int
    stopped_at: int | None
    # ALIVE; STOPPED (shut down cleanly, or its interpreter exited); DEAD (killed: silent past its
    # lease, or found gone by a process on its host)
    state: str
    pending_workflows: int  # PENDING workflows this process owns
    duplicate_id: bool  # another live process shares its executor ID


def executors(sysdb: SystemDatabase, limit: int | None = 100) -> list[ExecutorInfo]:
    """Recent executor processes, newest first, with their state: the newest ``limit`` and every
    live process besides (however many others started since: a long-lived process must not drop
    out of the view, nor of liveness decisions); ``limit=None``: the live processes only."""
    table = ExecutorTable(sysdb)
    records = table.list_recent(None)
    if limit is not None:
        recent = table.list_recent(limit)
        shown = {r.process_id for r in recent}
        records = recent + [r for r in records if r.process_id not in shown]
        records.sort(key=lambda r: r.started_at, reverse=True)
    # A process on this host that is gone (killed, or exited during a step) is DEAD now, although
    # its lease has not run out: its pid says so.
    hostname, own = socket.gethostname(), process_identity()
    gone = {
        r.process_id
        for r in records
        if r.alive
        and gone_on_this_host(
            PeerProcess(r.process_id, r.executor_id, r.hostname, r.pid, r.process_identity),
            hostname,
            own,
        )
    }
    alive_per_id = Counter(r.executor_id for r in records if r.alive and r.process_id not in gone)
    found = []
    for r in records:
        if r.alive and r.process_id not in gone:
            state = "ALIVE"
        elif r.stopped_at is not None and not r.found_gone:
            state = "STOPPED"
        else:
            state = "DEAD"
        found.append(
            ExecutorInfo(
                process_id=r.process_id,
                executor_id=r.executor_id,
                hostname=r.hostname,
                pid=r.pid,
                application_version=r.application_version,
                lease_ms=r.lease_ms,
                started_at=r.started_at,
                last_heartbeat_at=r.last_heartbeat_at,
                stopped_at=r.stopped_at,
                state=state,
                pending_workflows=r.pending_workflows,
                duplicate_id=state == "ALIVE" and alive_per_id[r.executor_id] > 1,
            )
        )
    return found


def version_work(sysdb: SystemDatabase) -> list[VersionWork]:
    """Per application version: its PENDING and ENQUEUED workflows and live processes."""
    return sysdb.version_work()


def queues(sysdb: SystemDatabase) -> list[QueueInfo]:
    """Every declared queue or queue with live work, but the runtime's internal queue (its work is
    the resumed/restarted/forked workflows, which listings already show as not queued)."""
    return [q for q in sysdb.queue_overview() if q.name != INTERNAL_QUEUE]

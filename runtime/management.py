"""Listing and steering workflows: the operations behind ``DBOS.list_workflows`` and friends,
``DBOSClient`` and the `dbos workflow` commands. They act on the system tables alone: resuming,
restarting or forking makes a workflow ready on the internal queue, and any live executor of its
application version picks it up."""

from __future__ import annotations

import socket
import uuid
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from runtime.context import validate_workflow_id
from runtime.errors import DBOSException, DBOSNonExistentWorkflowError
from runtime.executor_db import ExecutorTable
from runtime.liveness import gone_on_this_host, process_identity
from runtime.queues import INTERNAL_QUEUE
from runtime.records import PeerProcess, QueueInfo, VersionWork
from runtime.status import StepInfo, WorkflowStatus, WorkflowStatusString
from runtime.system_db import SystemDatabase
from runtime.waiting import Waiting, derive

__all__ = [
    "STATUSES",
    "Change",
    "ExecutorInfo",
    "QueueInfo",
    "TimeArg",
    "VersionWork",
    "cancel",
    "executors",
    "fork",
    "get_workflow",
    "list_steps",
    "list_workflows",
    "parse_statuses",
    "parse_time",
    "queues",
    "restart",
    "resume",
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
    names = [status] if isinstance(status, str) else list(status)
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


def list_workflows(
    sysdb: SystemDatabase,
    *,
    workflow_ids: list[str] | None = None,
    status: str | Iterable[str] | None = None,
    start_time: TimeArg = None,
    end_time: TimeArg = None,
    name: str | None = None,
    app_version: str | None = None,
    queue_name: str | None = None,
    limit: int | None = None,
    offset: int | None = None,
    sort_desc: bool = False,
    load_input: bool = True,
    load_output: bool = True,
    queued_only: bool = False,
    before: tuple[int, str] | None = None,
) -> list[WorkflowStatus]:
    """Workflows matching every given filter, oldest first unless ``sort_desc``."""
    if limit is not None and limit < 0:
        raise DBOSException("limit must not be negative")
    if offset is not None and offset < 0:
        raise DBOSException("offset must not be negative")
    filters: dict[str, Any] = {
        "workflow_ids": list(workflow_ids) if workflow_ids is not None else None,
        "status": parse_statuses(status),
        "start_time": parse_time(start_time, "start time"),
        "end_time": parse_time(end_time, "end time"),
        "name": name,
        "app_version": app_version,
        "queue_name": queue_name,
        "queued_only": True if queued_only else None,
        "before": {"before_ts": before[0], "before_id": before[1]} if before else None,
    }
    return sysdb.list_workflow_statuses(
        {k: v for k, v in filters.items() if v is not None},
        sort_desc=sort_desc,
        limit=limit,
        offset=offset,
        load_input=load_input,
        load_output=load_output,
    )


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


def list_steps(sysdb: SystemDatabase, workflow_id: str) -> list[StepInfo]:
    """The recorded steps of a workflow, in order; unknown IDs raise."""
    if sysdb.get_status_result(workflow_id) is None:
        raise DBOSNonExistentWorkflowError(workflow_id)
    return sysdb.get_steps(workflow_id)


def _unchanged(sysdb: SystemDatabase, workflow_id: str) -> Change:
    current = sysdb.get_status_result(workflow_id)
    if current is None:
        return Change(workflow_id, False, "no such workflow", missing=True)
    return Change(workflow_id, False, f"already {current.status}")


def cancel(sysdb: SystemDatabase, workflow_id: str) -> Change:
    """Cancel a PENDING or ENQUEUED workflow; its runner stops before its next step."""
    if sysdb.cancel_workflow(workflow_id):
        return Change(workflow_id, True)
    return _unchanged(sysdb, workflow_id)


def resume(sysdb: SystemDatabase, workflow_id: str) -> Change:
    """Make a CANCELLED, ENQUEUED or MAX_RECOVERY_ATTEMPTS_EXCEEDED workflow (or a PENDING one
    whose process died) ready to continue from its last completed step, attempts reset. One that
    came from a queue goes back to it, keeping its place and its queue's limits; an ENQUEUED one
    starts now, bypassing its queue. A workflow still running in a live process is left to it, and
    a finished one is left as it is (fork it to run it again from a step)."""
    if sysdb.resume_workflow(workflow_id, INTERNAL_QUEUE):
        return Change(workflow_id, True)
    current = sysdb.get_status_result(workflow_id)
    if current is None:
        return Change(workflow_id, False, "no such workflow", missing=True)
    if current.status == WorkflowStatusString.PENDING:
        return Change(workflow_id, False, "still running in a live process: nothing to resume")
    return Change(
        workflow_id,
        False,
        f"already {current.status}: a finished workflow is not resumed; "
        "fork it to run it again from a step",
    )


def fork(
    sysdb: SystemDatabase,
    workflow_id: str,
    start_step: int,
    *,
    forked_workflow_id: str | None = None,
    application_version: str | None = None,
) -> str:
    """A new workflow with the same inputs that keeps the recorded outcomes of the steps before
    ``start_step`` and runs the rest anew. Returns its ID."""
    if sysdb.get_status_result(workflow_id) is None:
        raise DBOSNonExistentWorkflowError(workflow_id)
    last = sysdb.max_function_id(workflow_id)
    if not isinstance(start_step, int) or start_step < 1 or start_step > last + 1:
        raise DBOSException(
            f"step {start_step} is out of range for workflow {workflow_id!r}: it has {last} "
            f"recorded steps, so a fork can start at step 1 to {last + 1}"
        )
    new_id = (
        str(uuid.uuid4())
        if forked_workflow_id is None
        else validate_workflow_id(forked_workflow_id, "forked workflow ID")
    )
    sysdb.fork_workflow(workflow_id, new_id, start_step, application_version, INTERNAL_QUEUE)
    return new_id


def restart(sysdb: SystemDatabase, workflow_id: str, *, new_workflow_id: str | None = None) -> str:
    """A new execution with the same inputs and a new ID, from the first step."""
    return fork(sysdb, workflow_id, 1, forked_workflow_id=new_workflow_id)


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


def executors(sysdb: SystemDatabase, limit: int = 100) -> list[ExecutorInfo]:
    """Recent executor processes, newest first, with their state."""
    records = ExecutorTable(sysdb).list_recent(limit)
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
    """Every declared queue or queue with live work."""
    return sysdb.queue_overview()

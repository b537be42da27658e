"""The dashboard's pages: the workflow list (search, counts per status, paging both ways), a
workflow (its record, steps paged, events, messages, actions that apply), a step's full outcome
as a download, queues and executors. Each page also serves the fragments that /static/live.js
swaps in (``?fragment=rows`` and the like), so a page updates without reloading."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response

from dbos_cli.ui import formatting
from dbos_cli.ui.site import (
    MAX_PAGE_SIZE,
    PAGE_SIZE,
    BadRequest,
    Site,
    echo,
    int_param,
    page_key,
)
from runtime.client import INTERNAL_QUEUE, DBOSClient
from runtime.status import WorkflowStatus

STEP_PAGE = 200
FILTER_KEYS = ("status", "id", "name", "queue", "app_version", "start", "end", "limit", "live")
FRAGMENTS = {"rows", "counts", "summary", "steps"}


def filters_of(request: Request) -> dict[str, Any]:
    """The list filters the query asks for, as keywords of ``DBOSClient.list_workflow_page``
    (checked there: a bad one raises ``DBOSException``, a 400 page)."""
    q = request.query_params
    for key, value in q.multi_items():
        if key in FILTER_KEYS and "\x00" in value:  # Postgres text cannot hold one: no match
            raise BadRequest(f"invalid {key} {echo(value)}: no stored value holds a NUL character")
    return {
        "status": q.getlist("status") or None,
        "workflow_id_prefix": q.get("id") or None,
        "name_prefix": q.get("name") or None,
        "queue_name": q.get("queue") or None,
        "app_version": q.get("app_version") or None,
        "start_time": q.get("start") or None,
        "end_time": q.get("end") or None,
    }


def filter_query(request: Request, **changes: str) -> str:
    """The current filters as a query string, with ``changes`` (an empty value drops a key)."""
    args = [(k, v) for k, v in request.query_params.multi_items() if k in FILTER_KEYS]
    args = [(k, v) for k, v in args if k not in changes] + [(k, v) for k, v in changes.items() if v]
    return urlencode(args)


def live_every(request: Request, default: int) -> int | None:
    """Seconds between live updates: ``?live=N`` (0 turns them off), else ``default``."""
    every = int_param(request, "live", default, 0, 3600)
    return every or None


def _download(body: Any, name: str) -> Response:
    """``body`` as an indented JSON file to save (never shown inline)."""
    text = json.dumps(body, indent=2, default=str, ensure_ascii=False)
    return Response(
        text,
        media_type="application/json",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


def _key(wf: WorkflowStatus) -> str:
    return f"{wf.created_at}:{wf.workflow_id}"


class Pages:
    """The GET handlers."""

    def __init__(self, site: Site) -> None:
        self.site = site

    def fragment(self, request: Request) -> str | None:
        """The fragment asked for (``?fragment=``), checked."""
        name = request.query_params.get("fragment")
        if name is not None and name not in FRAGMENTS:
            raise BadRequest(f"unknown fragment {name[:40]!r}")
        return name

    def workflows(self, request: Request) -> Response:
        """The workflow list, newest first."""
        filters = filters_of(request)
        limit = int_param(request, "limit", PAGE_SIZE, 1, MAX_PAGE_SIZE)
        before, after = page_key(request, "before"), page_key(request, "after")
        if before and after:
            raise BadRequest("give before or after, not both")
        client = self.site.client()
        # Outputs are not shown in the list (a 3 MB output must not load to fill a row); errors
        # are, and only ERROR rows hold one: those are read in a second, small query.
        lean = {**filters, "limit": limit + 1, "load_output": False}
        found = client.list_workflow_page(**lean, before=before, after=after)
        more = len(found) > limit
        if after and not more:  # back at the newest: show a full page of them
            after, found = None, client.list_workflow_page(**lean)
            more = len(found) > limit
        _load_errors(client, found)
        if after:
            found, has_newer, has_older = found[1:], True, True
        else:
            found, has_newer, has_older = found[:limit], before is not None, more
        links = {
            "newest": "/workflows?" + filter_query(request),
            "newer": "/workflows?" + filter_query(request, after=_key(found[0]))
            if has_newer and found
            else None,
            "older": "/workflows?" + filter_query(request, before=_key(found[-1]))
            if has_older and found
            else None,
        }
        counts = client.count_workflows_by_status(**filters)
        chosen = {str(s).strip().upper() for s in filters["status"] or []}
        return self.site.render(
            request,
            "workflows.html",
            fragment=self.fragment(request),
            workflows=found,
            query=request.query_params,
            chosen=chosen,
            counts=counts,
            total=sum(n for s, n in counts.items() if not chosen or s in chosen),
            links=links,
            filter_query=filter_query(request),
            live_every=live_every(request, 5),
            now=formatting.now_ms(),
        )

    def workflow(self, request: Request, workflow_id: str) -> Response:
        """One workflow: its record, what it waits for, actions, steps (paged), events, messages."""
        client = self.site.client()
        wf = client.get_workflow_status(workflow_id)
        if wf is None:
            return self.site.error(request, 404, f"Workflow {echo(workflow_id)} does not exist")
        wf = client.get_workflow(workflow_id)
        first = int_param(request, "steps_from", 0, 0, 2**31)
        steps = client.list_workflow_steps(
            workflow_id, offset=first, limit=STEP_PAGE + 1, include_running=True
        )
        more_steps = len(steps) > STEP_PAGE
        steps = steps[:STEP_PAGE]
        child_ids = [s.child_workflow_id for s in steps if s.child_workflow_id]
        children = client.list_workflows(
            workflow_ids=child_ids, load_input=False, load_output=False
        )
        live = wf.status in formatting.LIVE
        waiting = client.get_workflow_wait(workflow_id) if live else None
        [cancel] = client.cancel_each([workflow_id], dry_run=True)
        [resume] = client.resume_each([workflow_id], dry_run=True)
        return self.site.render(
            request,
            "workflow.html",
            fragment=self.fragment(request),
            wf=wf,
            live=live,
            waiting=waiting,
            # `dbos workflow why`'s answer (templates/_why.html shows it).
            why=client.explain_workflow(workflow_id),
            rows=formatting.step_rows(steps, wf, {c.workflow_id: c for c in children}),
            steps_from=first,
            steps_prev=max(first - STEP_PAGE, 0) if first > 0 else None,
            steps_next=first + STEP_PAGE if more_steps else None,
            actions=formatting.allowed_actions(cancel.changed, resume.changed),
            events=client.get_all_events(workflow_id),
            messages=client.list_pending_messages(workflow_id),
            traceback=formatting.traceback_text(wf.error),
            live_every=live_every(request, 3) if live else None,
            now=formatting.now_ms(),
        )

    def step_output(self, request: Request, workflow_id: str, number: str) -> Response:
        """A step's whole outcome as a JSON download (its output, or its error and trace)."""
        if not (number.isascii() and number.isdigit() and len(number) <= 9):
            raise BadRequest(f"invalid step number {number[:40]!r}")
        client = self.site.client()
        if client.get_workflow_status(workflow_id) is None:
            return self.site.error(request, 404, f"Workflow {echo(workflow_id)} does not exist")
        wanted = int(number)
        steps = client.list_workflow_steps(workflow_id, offset=max(wanted - 1, 0), limit=1)
        step = next((s for s in steps if s.function_id == wanted), None)
        if step is None:  # numbering has gaps only in odd cases: look through all of them
            step = next(
                (s for s in client.list_workflow_steps(workflow_id) if s.function_id == wanted),
                None,
            )
        if step is None:
            return self.site.error(
                request, 404, f"Workflow {echo(workflow_id)} has no step {wanted}"
            )
        body: dict[str, Any] = {"function_id": step.function_id, "name": step.function_name}
        if step.error is not None:
            body["error"] = formatting.error_text(step.error)
            body["traceback"] = formatting.traceback_text(step.error)
        else:
            body["output"] = step.output
        return _download(body, f"step-{wanted}-output.json")

    def whole(self, request: Request, workflow_id: str, part: str) -> Response:
        """A workflow's whole input, output, error (with its trace) or events, as a JSON
        download: the page embeds only the first ``formatting.EMBED_CHARS`` characters."""
        client = self.site.client()
        wf = client.get_workflow_status(workflow_id)
        if wf is None:
            return self.site.error(request, 404, f"Workflow {echo(workflow_id)} does not exist")
        body: Any
        if part == "input":
            body = wf.input
        elif part == "output":
            body = wf.output
        elif part == "error":
            body = {"error": formatting.error_text(wf.error) or None}
            body["traceback"] = formatting.traceback_text(wf.error)
        elif part == "events":
            body = client.get_all_events(workflow_id)
        else:
            return self.site.error(request, 404, f"no such download {part[:40]!r}")
        return _download(body, f"workflow-{part}.json")

    def queues(self, request: Request) -> Response:
        """Every queue with its depth and limits."""
        return self.site.render(
            request,
            "queues.html",
            fragment=self.fragment(request),
            queues=self.site.client().list_queues(),
            live_every=live_every(request, 5),
        )

    def queue(self, request: Request, name: str) -> Response:
        """One queue and the workflows waiting on or running from it."""
        client = self.site.client()
        if "\x00" in name:
            raise BadRequest("a queue name holds no NUL character")
        if name == INTERNAL_QUEUE:  # the runtime's own, left out of every listing
            return self.site.error(request, 404, f"no queue named {echo(name)}")
        info = next((q for q in client.list_queues() if q.name == name), None)
        queued = client.list_queued_workflows(
            queue_name=name, limit=PAGE_SIZE, sort_desc=False, load_input=False
        )
        return self.site.render(
            request,
            "queue.html",
            fragment=self.fragment(request),
            name=name,
            info=info,
            workflows=queued,
            live_every=live_every(request, 5),
            now=formatting.now_ms(),
        )

    def executors(self, request: Request) -> Response:
        """The processes that ran workflows here, and the work per application version."""
        client = self.site.client()
        return self.site.render(
            request,
            "executors.html",
            fragment=self.fragment(request),
            executors=client.list_executors(),
            versions=client.version_work(),
            live_every=live_every(request, 5),
            now=formatting.now_ms(),
        )


def _load_errors(client: DBOSClient, found: list[WorkflowStatus]) -> None:
    """Fill in the errors of the ERROR rows of a listing read without outputs (one query)."""
    errored = [wf.workflow_id for wf in found if wf.status == "ERROR"]
    if not errored:
        return
    errors = {
        wf.workflow_id: wf.error
        for wf in client.list_workflows(workflow_ids=errored, load_input=False, load_output=True)
    }
    for wf in found:
        if wf.workflow_id in errors:
            wf.error = errors[wf.workflow_id]

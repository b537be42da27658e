"""The dashboard behind `dbos ui`: server-rendered pages over the same client API as the CLI.

Safe by default: every value from the database is rendered through Jinja2's autoescaping (with
control and bidi characters shown as escapes); actions are POSTs that go through a confirmation
page. Every request first passes the checks in ``security.py``: Host, token, origin, CSRF, headers.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from dbos_cli.ui import security
from dbos_cli.ui.security import Guard, HostRule, check_csrf, check_token, flash
from runtime.client import STATUSES, DBOSClient
from runtime.errors import DBOSDatabaseError, DBOSException, DBOSNonExistentWorkflowError
from runtime.status import StepInfo, WorkflowStatus

HERE = Path(__file__).parent
PAGE_SIZE = 50
ACTIONS = ("cancel", "resume", "restart", "fork")


def local_time(epoch_ms: int | None) -> str:
    """Local ISO 8601 time for display."""
    if epoch_ms is None:
        return ""
    return datetime.fromtimestamp(epoch_ms / 1000).isoformat(timespec="seconds")


def pretty(value: Any) -> str:
    """A value as indented JSON text (escaped by the template, never marked safe)."""
    return json.dumps(value, indent=2, default=str, ensure_ascii=False, sort_keys=True)


def error_text(error: BaseException | None) -> str:
    """``Type: message`` of a recorded error."""
    if error is None:
        return ""
    kind = getattr(error, "original_type", None) or type(error).__name__
    return f"{kind}: {error}"


def timeline(steps: list[StepInfo], wf: WorkflowStatus) -> list[dict[str, Any]]:
    """Each step's bar: offset and width in percent of the workflow's run, duration in ms."""
    starts = [s.started_at for s in steps if s.started_at is not None]
    ends = [s.completed_at for s in steps if s.completed_at is not None]
    origin = min([*starts, *([wf.started_at] if wf.started_at else [])], default=0)
    finish = max([*ends, *([wf.completed_at] if wf.completed_at else [])], default=origin)
    span = max(finish - origin, 1)
    bars = []
    for s in steps:
        duration = (
            s.completed_at - s.started_at
            if s.completed_at is not None and s.started_at is not None
            else None
        )
        left = ((s.started_at or origin) - origin) / span * 100
        width = max(0.8, (duration or 0) / span * 100)
        bars.append(
            {
                "step": s,
                "duration_ms": duration,
                "left": round(min(left, 99.0), 2),
                "width": round(min(width, 100.0 - min(left, 99.0)), 2),
                "failed": s.error is not None,
                "outcome": error_text(s.error) if s.error is not None else pretty(s.output),
            }
        )
    return bars


def create_app(
    database_url: str,
    *,
    token: str | None = None,
    schema: str = "dbos",
    hosts: HostRule | None = None,
) -> Starlette:
    """The dashboard for the system tables at ``database_url``, in ``schema``. ``hosts``: the Host
    headers it answers (None: any, for tests). Raises DBOSConfigError for an unusable token."""
    if token is not None:
        check_token(token, remote=False)
    templates = security.templates(HERE / "templates")
    templates.env.globals.update(
        local_time=local_time, pretty=pretty, error_text=error_text, statuses=STATUSES
    )
    state: dict[str, DBOSClient] = {}

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        state["client"] = DBOSClient(database_url, dbos_system_schema=schema)
        yield
        state["client"].destroy()

    def client() -> DBOSClient:
        return state["client"]

    def render(request: Request, template: str, status_code: int = 200, **context: Any) -> Response:
        context.update(request=request, csrf=request.state.csrf)
        return templates.TemplateResponse(request, template, context, status_code=status_code)

    # -- pages ------------------------------------------------------------------------------------

    async def home(request: Request) -> Response:
        return RedirectResponse("/workflows", status_code=303)

    async def workflows(request: Request) -> Response:
        q = request.query_params
        statuses = q.getlist("status") or None
        before = None
        if q.get("before"):
            ts, _, wid = q["before"].partition(":")
            if ts.isdigit():
                before = (int(ts), wid)
        error = None
        try:
            found = client().list_workflows(
                status=statuses,
                name=q.get("name") or None,
                queue_name=q.get("queue") or None,
                app_version=q.get("app_version") or None,
                start_time=q.get("start") or None,
                end_time=q.get("end") or None,
                limit=PAGE_SIZE + 1,
                sort_desc=True,
                before=before,
                load_input=False,
                load_output=False,
            )
        except DBOSDatabaseError:
            raise  # a generic 503 (security.failure): its message names the user and host
        except DBOSException as exc:
            found, error = [], str(exc)
        more = len(found) > PAGE_SIZE
        found = found[:PAGE_SIZE]
        next_page = None
        if more and found:
            args = [(k, v) for k, v in q.multi_items() if k != "before"]
            last = found[-1]
            args.append(("before", f"{last.created_at}:{last.workflow_id}"))
            next_page = "/workflows?" + urlencode(args)
        refresh = q.get("refresh", "5")
        return render(
            request,
            "workflows.html",
            workflows=found,
            query=q,
            chosen=set(statuses or []),
            error=error,
            next_page=next_page,
            refresh=refresh if refresh.isdigit() and refresh != "0" else None,
        )

    async def workflow(request: Request) -> Response:
        wid = request.path_params["workflow_id"]
        try:
            wf = client().get_workflow(wid)
            steps = client().list_workflow_steps(wid)
        except DBOSNonExistentWorkflowError as exc:
            return render(request, "error.html", status_code=404, message=str(exc))
        children = client().list_workflows(
            workflow_ids=[s.child_workflow_id for s in steps if s.child_workflow_id],
            load_input=False,
            load_output=False,
        )
        live = wf.status in ("PENDING", "ENQUEUED", "DELAYED")
        waiting = client().get_workflow_wait(wid) if live else None
        now = int(datetime.now().timestamp() * 1000)
        return render(
            request,
            "workflow.html",
            wf=wf,
            waiting=waiting,
            # The same line as `dbos workflow get` (escaped by the template like all else).
            waiting_text=waiting.describe(now, local=True) if waiting else None,
            bars=timeline(steps, wf),
            children={c.workflow_id: c for c in children},
            last_step=max((s.function_id for s in steps), default=0),
        )

    async def action(request: Request) -> Response:
        wid = request.path_params["workflow_id"]
        kind = request.path_params["action"]
        form = await request.form()
        if (denied := check_csrf(request, form)) is not None:
            return denied
        if kind not in ACTIONS:
            return PlainTextResponse("unknown action", status_code=404)
        step = str(form.get("step") or "1")
        if form.get("confirmed") != "yes":
            return render(request, "confirm.html", wid=wid, action=kind, step=step)
        target, message = wid, ""
        try:
            if kind == "cancel":
                [change] = client().cancel_each([wid])
                message = "cancelled" if change.changed else f"not cancelled: {change.reason}"
            elif kind == "resume":
                [change] = client().resume_each([wid])
                message = "resumed" if change.changed else f"not resumed: {change.reason}"
            elif kind == "restart":
                target = client().restart_workflow(wid).get_workflow_id()
                message = f"restarted from {wid}"
            else:
                if not step.isdigit():
                    raise DBOSException(f"invalid step {step!r}")
                target = client().fork_workflow(wid, int(step)).get_workflow_id()
                message = f"forked from {wid} at step {step}"
        except DBOSException as exc:
            message = f"failed: {exc}"
        return flash(RedirectResponse(f"/workflows/{target}", status_code=303), message)

    async def queues(request: Request) -> Response:
        return render(request, "queues.html", queues=client().list_queues())

    async def queue(request: Request) -> Response:
        name = request.path_params["name"]
        info = next((q for q in client().list_queues() if q.name == name), None)
        queued = client().list_queued_workflows(
            queue_name=name, limit=PAGE_SIZE, sort_desc=False, load_input=False
        )
        return render(request, "queue.html", name=name, info=info, workflows=queued)

    async def executors(request: Request) -> Response:
        now = int(datetime.now().timestamp() * 1000)
        return render(
            request,
            "executors.html",
            executors=client().list_executors(),
            versions=client().version_work(),
            now=now,
        )

    routes = [
        Route("/", home),
        Route("/workflows", workflows),
        Route("/workflows/{workflow_id:path}/{action}", action, methods=["POST"]),
        Route("/workflows/{workflow_id:path}", workflow),
        Route("/queues", queues),
        Route("/queues/{name:path}", queue),
        Route("/executors", executors),
        Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
    ]
    return Starlette(
        routes=routes,
        lifespan=lifespan,
        middleware=[Middleware(Guard, token=token, hosts=hosts)],
    )

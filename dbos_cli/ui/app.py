"""The dashboard behind `dbos ui`: server-rendered pages over the same client API as the CLI.

Safe by default: every value from the database is rendered through Jinja2's autoescaping (with
control and bidi characters shown as escapes); actions are POSTs that go through a confirmation
page. Every request first passes the checks in ``security.py``: Host, token, origin, CSRF, headers.

Pages are in ``pages.py``, actions in ``actions.py``, what they share in ``site.py`` and how values
are shown in ``formatting.py``. A workflow's ID is one percent-encoded path segment in every link
(``/workflows/a%2Fb%3Fc``); the routes below split the raw path, so IDs holding ``/``, ``?``,
``#``, ``%`` or ``..`` reach the right workflow.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import anyio.to_thread
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from dbos_cli.ui import security
from dbos_cli.ui.actions import Actions
from dbos_cli.ui.pages import Pages
from dbos_cli.ui.security import CSRF_COOKIE, Guard, HostRule, check_token, database_error
from dbos_cli.ui.site import BadRequest, Site, path_segments
from runtime.client import DBOSClient
from runtime.errors import DBOSDatabaseError, DBOSException, DBOSNonExistentWorkflowError

__all__ = ["CSRF_COOKIE", "create_app"]

HERE = Path(__file__).parent
Handler = Callable[[Request], Response]
AsyncHandler = Callable[[Request], Awaitable[Response]]
# Worker threads for the handlers (their database calls block); the pool has 4 connections.
DB_THREADS = 8
# Seconds a request waits for a pooled connection before the dashboard answers 503.
DB_WAIT_S = 3.0
# A statement running longer than this (a table locked by a migration) ends, and its connection
# frees: one slow table costs the pages that read it, not every page (seconds).
DB_STATEMENT_S = 5.0
# Requests waiting for a worker beyond this many are answered 503 at once: when the database is
# slow, a queue of refreshes must not grow behind it.
MAX_WAITING = DB_THREADS
# Requests of one page (one handler) running at once, below the client's 4 pooled connections.
PER_PAGE = 2


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
    site = Site(security.templates(HERE / "templates"))
    threads: dict[str, anyio.CapacityLimiter] = {}
    pages, actions = Pages(site), Actions(site)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        client = DBOSClient(database_url, dbos_system_schema=schema)
        # A viewer waits this long for a pooled connection before a 503, not the runtime's 15 s.
        client.set_connection_wait(DB_WAIT_S)
        client.set_statement_timeout(DB_STATEMENT_S)
        site.state["client"] = client
        yield
        site.state["client"].destroy()

    def guarded(handler: Handler) -> AsyncHandler:
        key = f"page:{handler.__qualname__}"

        """The handler run in a worker thread, never on the event loop: its database calls block,
        and one slow or failing call must not stall every other request (static files included,
        which the loop serves). The workers are a limiter of their own, so that requests stuck on
        the database cannot take the threads static files use either. Bad input (and a workflow
        gone mid-request) becomes a 4xx page with its message."""

        async def run(request: Request) -> Response:
            if request.method == "POST":  # read on the loop: the handler then never awaits
                request.state.form = await request.form()
            if "limiter" not in threads:
                threads["limiter"] = anyio.CapacityLimiter(DB_THREADS)
            limiter = threads["limiter"]
            # One page (all its requests: tabs, live fragments) holds at most PER_PAGE pooled
            # connections, so a table locked under it leaves the others to the other pages.
            page = threads.setdefault(key, anyio.CapacityLimiter(PER_PAGE))
            if _full(limiter, MAX_WAITING) or _full(page, PER_PAGE):
                return site.error(
                    request, 503, "the dashboard is busy (the database is slow): try again"
                )
            async with page:
                return await anyio.to_thread.run_sync(answer, request, limiter=limiter)

        def answer(request: Request) -> Response:
            try:
                return handler(request)
            except BadRequest as exc:
                return site.error(request, 400, str(exc))
            except DBOSNonExistentWorkflowError as exc:
                return site.error(request, 404, str(exc))
            except DBOSDatabaseError as exc:  # its message names the user and host: not shown
                return site.error(request, *database_error(request, exc))
            except DBOSException as exc:
                return site.error(request, 400, str(exc))

        return run

    def home(request: Request) -> Response:
        return RedirectResponse("/workflows", status_code=303)

    def workflow_parts(request: Request) -> list[str]:
        """The ID and what follows it: from the path, or (``/workflow/...?id=``, for an ID of
        only dots, see ``formatting.workflow_url``) from the query."""
        if request.url.path.startswith("/workflows/"):
            return path_segments(request, "/workflows/")
        rest = [p for p in path_segments(request, "/workflow") if p]
        return [request.query_params.get("id", ""), *rest]

    def workflow_get(request: Request) -> Response:
        parts = workflow_parts(request)
        if len(parts) == 4 and parts[1] == "steps" and parts[3] == "output":
            return pages.step_output(request, parts[0], parts[2])
        if len(parts) == 3 and parts[1] == "whole":
            return pages.whole(request, parts[0], parts[2])
        # One encoded segment is the ID; an unencoded link's slashes are taken as part of it.
        return pages.workflow(request, "/".join(parts))

    def workflow_post(request: Request) -> Response:
        parts = workflow_parts(request)
        if len(parts) < 2:
            return site.error(request, 404, "no action named: POST /workflows/ID/ACTION")
        return actions.one(request, "/".join(parts[:-1]), parts[-1])

    def bulk(request: Request) -> Response:
        return actions.bulk(request, request.path_params["action"])

    def queue(request: Request) -> Response:
        return pages.queue(request, "/".join(path_segments(request, "/queues/")))

    routes = [
        Route("/", home),
        Route("/workflows", guarded(pages.workflows)),
        Route("/workflows/{rest:path}", guarded(workflow_get), methods=["GET", "HEAD"]),
        Route("/workflows/{rest:path}", guarded(workflow_post), methods=["POST"]),
        *[
            Route(path, guarded(handler), methods=methods)
            for path in ("/workflow", "/workflow/{rest:path}")
            for handler, methods in ((workflow_get, ["GET", "HEAD"]), (workflow_post, ["POST"]))
        ],
        Route("/bulk/{action}", guarded(bulk), methods=["POST"]),
        Route("/queues", guarded(pages.queues)),
        Route("/queues/{rest:path}", guarded(queue)),
        Route("/executors", guarded(pages.executors)),
        Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
    ]
    return Starlette(
        routes=routes,
        lifespan=lifespan,
        middleware=[Middleware(Guard, token=token, hosts=hosts)],
    )


def _full(limiter: anyio.CapacityLimiter, waiting: int) -> bool:
    """Every token of ``limiter`` taken and ``waiting`` requests already queued for one."""
    return limiter.available_tokens == 0 and limiter.statistics().tasks_waiting >= waiting

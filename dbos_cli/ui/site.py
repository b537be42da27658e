"""What every dashboard handler shares: the client, the templates, rendering (whole pages, page
fragments for live updates, error pages), reading a workflow ID out of a path, and checking
query parameters so that bad input gets a 4xx page with a message, never a 500."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.templating import Jinja2Templates

from dbos_cli.ui import formatting
from dbos_cli.ui.security import flash
from runtime.client import STATUSES, DBOSClient

PAGE_SIZE = 50
MAX_PAGE_SIZE = 500
# Postgres's bigint: the largest epoch millisecond a paging key can hold.
MAX_BIGINT = 2**63 - 1


# Characters of the request's own input an error page repeats: a crafted link must not make the
# dashboard show a paragraph of the attacker's text ("invalid status 'Your session expired...'").
ECHO_CHARS = 60
# A quoted span in a message (ours or the runtime's): where input is echoed.
_QUOTED = re.compile(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"", re.S)


def echo(text: str) -> str:
    """``text`` (request input) as an error message repeats it: quoted, at most ECHO_CHARS."""
    return repr(text[:ECHO_CHARS]) + ("…" if len(text) > ECHO_CHARS else "")


def capped_message(message: str) -> str:
    """``message`` with each quoted span cut to ECHO_CHARS characters, and at most 400 in all."""

    def cut(found: re.Match[str]) -> str:
        span = found.group(0)
        return span if len(span) <= ECHO_CHARS + 2 else span[: ECHO_CHARS + 1] + "…" + span[0]

    shown = _QUOTED.sub(cut, message)
    return shown if len(shown) <= 400 else shown[:400] + "…"


class BadRequest(Exception):
    """Input the dashboard refuses: shown as a 400 page with this message."""


class Site:
    """The client, the templates and the rendering shared by the dashboard's handlers."""

    def __init__(self, templates: Jinja2Templates) -> None:
        self.templates = templates
        self.state: dict[str, DBOSClient] = {}
        templates.env.filters.update(segment=formatting.segment)
        templates.env.globals.update(
            local_time=formatting.local_time,
            iso_time=formatting.iso_time,
            relative=formatting.relative,
            duration=formatting.duration,
            workflow_duration=formatting.workflow_duration,
            pretty=formatting.pretty,
            error_text=formatting.error_text,
            traceback_text=formatting.traceback_text,
            workflow_url=formatting.workflow_url,
            statuses=STATUSES,
            embed_chars=formatting.EMBED_CHARS,
        )

    def client(self) -> DBOSClient:
        """The dashboard's client (opened by the app's lifespan)."""
        return self.state["client"]

    def render(
        self, request: Request, template: str, status_code: int = 200, **context: Any
    ) -> Response:
        """A page, or with ``fragment`` in ``context`` only that part of it (for live.js): the
        template ``_PAGE_FRAGMENT.html`` that the page includes."""
        context.update(request=request)
        part = context.get("fragment")
        if part:
            template = "_" + template.replace(".html", f"_{part}.html")
            if template not in self.templates.env.list_templates():
                raise BadRequest(f"this page has no fragment {part!r}")
        return self.templates.TemplateResponse(request, template, context, status_code=status_code)

    def error(self, request: Request, status_code: int, message: str) -> Response:
        """The error page: a title for the status and the message, escaped."""
        return self.render(
            request,
            "error.html",
            status_code=status_code,
            message=capped_message(message),
            code=status_code,
        )

    def redirect(self, url: str, message: str) -> Response:
        """A redirect (303) to ``url`` showing ``message`` there (a signed cookie, never the URL:
        a crafted link must not make the dashboard say anything)."""
        return flash(RedirectResponse(url, status_code=303), message)


def posted_form(request: Request) -> FormData:
    """The POSTed form, read on the event loop before the handler runs in a worker thread (see
    ``app.guarded``): a handler never awaits."""
    form = getattr(request.state, "form", None)
    if not isinstance(form, FormData):
        raise BadRequest("this request carries no form")
    return form


def path_segments(request: Request, prefix: str) -> list[str]:
    """The decoded segments of the path after ``prefix``, split where the client put a ``/``
    (an encoded ``%2F`` stays inside its segment): so a workflow ID holding ``/``, ``?``, ``#``,
    ``%`` or ``..`` is one segment when the link encoded it."""
    raw = request.scope.get("raw_path")
    if isinstance(raw, bytes):
        text = raw.decode("latin-1")
    else:  # a server without raw_path: the decoded path (unencoded slashes split IDs)
        text = request.url.path
    rest = text.split(prefix, 1)[1] if prefix in text else ""
    try:
        return [unquote(part, errors="strict") for part in rest.split("/")]
    except UnicodeDecodeError:
        raise BadRequest("the path is not valid UTF-8 once decoded") from None


def int_param(request: Request, key: str, default: int, low: int, high: int) -> int:
    """An integer query parameter in ``[low, high]``; anything else is a ``BadRequest``."""
    text = request.query_params.get(key)
    if text is None or text == "":
        return default
    if not (text.isascii() and text.isdigit() and len(text) <= 19) or not low <= int(text) <= high:
        raise BadRequest(
            f"invalid {key} {text[:40]!r}: expected a whole number from {low} to {high}"
        )
    return int(text)


def page_key(request: Request, key: str) -> tuple[int, str] | None:
    """A paging key ``CREATED_MS:WORKFLOW_ID`` from the query; a bad one is a ``BadRequest``."""
    text = request.query_params.get(key)
    if not text:
        return None
    ts, sep, wid = text.partition(":")
    if not (sep and ts.isascii() and ts.isdigit() and len(ts) <= 19 and int(ts) <= MAX_BIGINT):
        raise BadRequest(
            f"invalid {key} {text[:40]!r}: expected CREATED_MS:WORKFLOW_ID from a paging link"
        )
    if "\x00" in wid:
        raise BadRequest(f"invalid {key}: a workflow ID holds no NUL character")
    return int(ts), wid


def step_number(text: str) -> int:
    """A fork's step number from a form; anything but a whole number >= 1 is a ``BadRequest``."""
    if not (text.isascii() and text.isdigit() and len(text) <= 9) or int(text) < 1:
        raise BadRequest(f"invalid step {text[:40]!r}: expected a whole number from 1")
    return int(text)

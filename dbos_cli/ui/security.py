"""The dashboard's request guard: every request passes through :class:`Guard` before a page sees it.

What it enforces, and why:

- ``Host`` must name this dashboard (the bound address, loopback aliases for a loopback bind, or a
  name given with ``--allowed-host``). A page on ``evil.example`` whose name is re-pointed at
  127.0.0.1 (DNS rebinding) otherwise reads and drives the dashboard as same-origin.
- The token, when configured, on every request (bearer header or the cookie a ``/?token=`` visit
  sets), compared as bytes in constant time so that no input can make the comparison itself fail.
- State-changing requests (POST) must come from this origin (``Origin``, else ``Referer``, else
  ``Sec-Fetch-Site``) and carry a CSRF token that is an HMAC, under a per-process secret, of the
  session cookie: a cookie/field pair made up by someone else does not pass (:func:`csrf_valid`).
- Messages after an action travel in a signed, short-lived cookie (:func:`flash`), never in the
  URL, so a crafted link cannot show an official-looking banner.
- Every response, errors and static files included, carries ``Cache-Control: no-store``,
  ``nosniff``, ``X-Frame-Options`` and a CSP that allows scripts from this origin only.
- An exception from a page becomes a 4xx with a message when the input caused it, a 503 "database
  unavailable" when the database is unreachable (the detail is logged here, never shown: it names
  the user and host; :func:`database_error`), and otherwise a 500 with no details.
- Text from the database is rendered with control and bidi characters shown as escapes
  (:func:`visible`, installed as the templates' ``finalize`` hook so no template can forget it).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import logging
import re
import secrets
import time
import unicodedata
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from jinja2 import Environment, FileSystemLoader
from markupsafe import Markup, escape
from starlette.datastructures import FormData
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.templating import Jinja2Templates

from runtime.errors import (
    DBOSConfigError,
    DBOSConnectionError,
    DBOSDatabaseError,
    DBOSException,
    DBOSSchemaMissingError,
)

TOKEN_COOKIE = "dbos_ui_token"
CSRF_COOKIE = "dbos_csrf"  # the session id; the CSRF token is derived from it, never equal to it
FLASH_COOKIE = "dbos_flash"
FLASH_SECONDS = 60
MIN_REMOTE_TOKEN = 16
SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Content-Security-Policy": (
        "default-src 'self'; style-src 'self'; script-src 'self'; frame-ancestors 'none'; "
        "base-uri 'none'; form-action 'self'"
    ),
}

log = logging.getLogger("dbos_cli.ui")
# Per process: restarting the dashboard invalidates open forms and pending flashes, nothing more.
_SECRET = secrets.token_bytes(32)


def _sign(*parts: str) -> str:
    message = "\x00".join(parts).encode("utf-8", "surrogatepass")
    return hmac.new(_SECRET, message, hashlib.sha256).hexdigest()


def same_secret(given: str, expected: str) -> bool:
    """Constant-time equality of two strings as UTF-8 bytes (``hmac.compare_digest`` refuses
    non-ASCII ``str``; a hostile query, header or cookie must get a 401, not a 500)."""
    return hmac.compare_digest(
        given.encode("utf-8", "surrogatepass"), expected.encode("utf-8", "surrogatepass")
    )


# -- the token ------------------------------------------------------------------------------------


def check_token(token: str, *, remote: bool) -> None:
    """Refuse a token that cannot travel in a header or cookie (anything but printable ASCII) or,
    on a non-loopback bind (``remote``), one shorter than 16 characters.
    Raises DBOSConfigError with a one-line message."""
    if not token or not all(" " < ch < "\x7f" for ch in token):
        raise DBOSConfigError(
            "the dashboard token must be printable ASCII without spaces (letters, digits, "
            "punctuation)"
        )
    if remote and len(token) < MIN_REMOTE_TOKEN:
        raise DBOSConfigError(
            f"the dashboard token is {len(token)} characters; off loopback it must be at least "
            f"{MIN_REMOTE_TOKEN} (e.g. python -c 'import secrets; print(secrets.token_urlsafe())')"
        )


# -- the Host header ------------------------------------------------------------------------------


def _split_host(header: str) -> tuple[str, int] | None:
    """``(name, port)`` of a Host header, lower-cased, port 80 when absent; None when malformed."""
    text = header.strip().lower()
    if text.startswith("["):
        name, bracket, rest = text.partition("]")
        name += bracket
    elif text.count(":") <= 1:
        name, _, port_text = text.partition(":")
        rest = ":" + port_text if port_text else ""
    else:
        return None
    if rest and not (rest.startswith(":") and rest[1:].isascii() and rest[1:].isdigit()):
        return None
    port = int(rest[1:]) if rest else 80
    return (name, port) if name and port < 65536 else None


# A DNS name (labels of letters, digits, '-', '_'), as a Host header can carry it.
_HOST_NAME = re.compile(r"^(?!-)[a-z0-9_-]{1,63}(?<!-)(\.(?!-)[a-z0-9_-]{1,63}(?<!-))*\.?$")


def _ip_literal(name: str) -> bool:
    try:
        ipaddress.ip_address(name.strip("[]"))
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class HostRule:
    """The Host headers the dashboard answers: exact ``(name, port)`` pairs, configured names on
    any port (a proxy in front may use its own), and, for a wildcard bind, any IP literal on our
    port (an IP address cannot be re-pointed, so it cannot be a rebinding attack)."""

    exact: frozenset[tuple[str, int]]
    names: frozenset[str]
    port: int
    any_ip: bool = False

    @classmethod
    def for_bind(cls, host: str, port: int, names: Iterable[str] = ()) -> HostRule:
        """The rule for a dashboard listening on ``host:port`` also served as ``names``."""
        bound = host.strip("[]").lower()
        wildcard = bound in ("", "0.0.0.0", "::")
        own = {f"[{bound}]" if ":" in bound else bound}
        if wildcard or bound == "localhost" or (_ip_literal(bound) and _is_loopback(bound)):
            own |= {"localhost", "127.0.0.1", "[::1]"}
        exact = {(name, port) for name in own}
        plain = set()
        for name in names:
            parsed = _split_host(name)
            if parsed is None or not (_HOST_NAME.match(parsed[0]) or _ip_literal(parsed[0])):
                raise DBOSConfigError(f"--allowed-host {name!r} is not a host name or host:port")
            if "]:" in name or (not name.startswith("[") and ":" in name):
                exact.add(parsed)  # the name came with a port: only that port
            else:
                plain.add(parsed[0])
        return cls(frozenset(exact), frozenset(plain), port, any_ip=wildcard)

    def allows(self, header: str) -> bool:
        """Whether a request with this Host header is addressed to this dashboard."""
        parsed = _split_host(header)
        if parsed is None:
            return False
        name, port = parsed
        if parsed in self.exact or name in self.names:
            return True
        return self.any_ip and port == self.port and _ip_literal(name)


def _is_loopback(host: str) -> bool:
    return ipaddress.ip_address(host).is_loopback


# -- origin, CSRF and flash messages --------------------------------------------------------------


def same_origin(request: Request) -> bool:
    """Whether a state-changing request comes from a page of this dashboard: ``Origin`` (browsers
    send it on every POST), else ``Referer``, else ``Sec-Fetch-Site``. A client that sends none
    of them (curl, a script with the token) is not a browser and cannot be forged into one."""
    host = request.headers.get("host", "").lower()
    origin = request.headers.get("origin")
    if origin is not None:
        return origin != "null" and urlsplit(origin).netloc.lower() == host
    referer = request.headers.get("referer")
    if referer is not None:
        return urlsplit(referer).netloc.lower() == host
    return request.headers.get("sec-fetch-site", "same-origin") in ("same-origin", "none")


def csrf_token(request: Request) -> str:
    """The CSRF token for this request's session, to put in a form's ``csrf`` field."""
    return _sign("csrf", str(request.state.session))


def csrf_valid(request: Request, form: FormData) -> bool:
    """Whether the form's ``csrf`` field is the token of the session its cookie names."""
    given = form.get("csrf")
    return bool(request.cookies.get(CSRF_COOKIE)) and (
        isinstance(given, str) and same_secret(given, csrf_token(request))
    )


def flash(response: Response, text: str) -> Response:
    """Show ``text`` once on the next page this browser loads (within a minute), typically on an
    action's redirect: ``return flash(RedirectResponse(url, 303), "cancelled")``. The cookie is
    signed by this process, so no link or other site can make the dashboard say anything (and no
    other site can set a cookie here to replay one)."""
    body = base64.urlsafe_b64encode(text[:1000].encode("utf-8", "replace")).decode("ascii")
    expires = str(int(time.time()) + FLASH_SECONDS)
    signature = _sign("flash", body, expires)
    response.set_cookie(
        FLASH_COOKIE,
        f"{body}.{expires}.{signature}",
        max_age=FLASH_SECONDS,
        httponly=True,
        samesite="strict",
    )
    return response


def read_flash(request: Request) -> str | None:
    """The message a :func:`flash` left, when its signature is valid and it has not expired."""
    body, _, rest = request.cookies.get(FLASH_COOKIE, "").partition(".")
    expires, _, signature = rest.partition(".")
    if not (len(expires) <= 12 and expires.isascii() and expires.isdigit()):
        return None
    if int(expires) < time.time():
        return None
    if not same_secret(signature, _sign("flash", body, expires)):
        return None
    return base64.urlsafe_b64decode(body.encode("ascii")).decode("utf-8", "replace")


# -- rendering database text ----------------------------------------------------------------------


def _hidden(ch: str) -> bool:
    """Whether a browser would act on ``ch`` or not show it: controls (but newline and tab, which
    the JSON panes need), bidi overrides and isolates, and other format characters."""
    return ch not in "\n\t" and unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp")


def visible(value: Any) -> Any:
    """Jinja ``finalize`` hook: every ``{{ value }}`` is escaped, then each control or bidi
    character becomes its escape (``\\u202e``) in a ``<span class=ctl>``, so database text can
    neither reorder nor hide what the page shows. The span has no quotes: inside an attribute
    it is inert text."""
    if value is None or isinstance(value, (bool, int, float)):
        return value
    text = str(value)
    if not any(_hidden(ch) for ch in text):
        return value
    safe = value if isinstance(value, Markup) else escape(text)
    return Markup(
        "".join(
            f"<span class=ctl>{repr(ch)[1:-1]}</span>" if _hidden(ch) else ch for ch in str(safe)
        )
    )


def attribute_text(value: Any) -> Markup:
    """Jinja filter ``in_attr`` for text inside an attribute or ``<title>``, where markup is not
    rendered (so :func:`visible`'s span would show as literal tags): each control or bidi
    character becomes its escape as plain text (``\\u202e``), then the whole is escaped."""
    text = "" if value is None else str(value)
    return escape("".join(repr(ch)[1:-1] if _hidden(ch) else ch for ch in text))


def templates(directory: str | Path) -> Jinja2Templates:
    """The dashboard's templates: :func:`visible` on every ``{{ value }}``, and ``csrf`` (the
    form token) and ``flash`` (the message to show, or None) in every page's context."""
    env = Environment(loader=FileSystemLoader(str(directory)), autoescape=True, finalize=visible)
    env.filters["in_attr"] = attribute_text
    return Jinja2Templates(env=env, context_processors=[page_context])


def page_context(request: Request) -> dict[str, Any]:
    """What every page may use from the guard: ``csrf`` and ``flash``."""
    return {"csrf": request.state.csrf, "flash": request.state.flash}


# -- the middleware -------------------------------------------------------------------------------


def _plain(status: int, text: str) -> Response:
    """A one-line text response; control and bidi characters of echoed input shown as escapes."""
    shown = "".join(repr(ch)[1:-1] if _hidden(ch) else ch for ch in text)
    return PlainTextResponse(shown, status_code=status)


def _safe_path(path: str) -> str:
    """A same-site redirect target: one leading slash (``//evil.example`` would leave the site)."""
    return "/" + path.lstrip("/\\")


def _token_target(request: Request) -> str:
    """Where a ``?token=`` visit goes once the token is a cookie: the same path as the client sent
    it (still percent-encoded, so ``%2F`` inside a workflow ID stays one segment) and the same
    query minus ``token``; always on this site."""
    raw = request.scope.get("raw_path")
    path = raw.decode("latin-1") if isinstance(raw, bytes) else quote(request.url.path)
    kept = [(k, v) for k, v in request.query_params.multi_items() if k != "token"]
    return _safe_path(path) + ("?" + urlencode(kept) if kept else "")


class Guard(BaseHTTPMiddleware):
    """Host, token, origin and session checks for every request; strict headers on every response;
    exceptions from pages turned into responses that reveal nothing."""

    def __init__(self, app: Any, token: str | None, hosts: HostRule | None = None) -> None:
        super().__init__(app)
        self.token = token
        self.hosts = hosts

    async def dispatch(
        self, request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        try:
            response = self.refuse(request)
            if response is None:
                response = await self.serve(request, call_next)
        except Exception as exc:  # every failure must become a response, never a traceback
            response = failure(request, exc)
        for name, value in SECURITY_HEADERS.items():
            response.headers[name] = value
        return response

    def refuse(self, request: Request) -> Response | None:
        """The response refusing this request before any page sees it, or None to go on."""
        host = request.headers.get("host", "")
        if self.hosts is not None and not self.hosts.allows(host):
            return _plain(
                400,
                f"this dashboard does not answer to the host name {host!r}: open it by the address "
                "it listens on, or start it with --allowed-host NAME",
            )
        if self.token is not None:
            given = request.query_params.get("token")
            if given is not None and same_secret(given, self.token):
                # Trade the token in the URL for a cookie, and drop it from the address bar.
                response = RedirectResponse(_token_target(request), status_code=303)
                response.set_cookie(TOKEN_COOKIE, given, httponly=True, samesite="strict")
                return response
            header = request.headers.get("authorization", "")
            bearer = header[7:] if header.lower().startswith("bearer ") else ""
            cookie = request.cookies.get(TOKEN_COOKIE, "")
            if not (same_secret(bearer, self.token) or same_secret(cookie, self.token)):
                return _plain(
                    401,
                    "a token is required: open /?token=... or send 'Authorization: Bearer ...'",
                )
        if request.method not in ("GET", "HEAD", "OPTIONS") and not same_origin(request):
            return _plain(403, "cross-origin request refused: use the dashboard's own pages")
        return None

    async def serve(
        self, request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        """The page's response, with the session cookie set and a shown flash cleared."""
        session = request.cookies.get(CSRF_COOKIE, "")
        fresh = not (len(session) == 43 and session.isascii())
        request.state.session = secrets.token_urlsafe(32) if fresh else session
        request.state.csrf = csrf_token(request)
        request.state.flash = read_flash(request)
        response = await call_next(request)
        if fresh:
            response.headers.append("Vary", "Cookie")
            response.set_cookie(
                CSRF_COOKIE, request.state.session, httponly=True, samesite="strict"
            )
        html = response.headers.get("content-type", "").startswith("text/html")
        setting = any(
            c.startswith(FLASH_COOKIE + "=") for c in response.headers.getlist("set-cookie")
        )
        if FLASH_COOKIE in request.cookies and html and not setting:
            response.delete_cookie(FLASH_COOKIE, httponly=True, samesite="strict")
        return response


def database_error(request: Request, exc: DBOSDatabaseError) -> tuple[int, str]:
    """``(status, message)`` to show a viewer for a database error, which is logged here: its
    text names the user, host and database, so the viewer gets none of it. Unreachable, missing
    schema or busy: 503; a value the database refused (e.g. a NUL character): 400."""
    log.error("dashboard: %s %s: %s", request.method, request.url.path, exc)
    if isinstance(exc, (DBOSConnectionError, DBOSSchemaMissingError)) or exc.transient:
        return 503, "database unavailable: see the dashboard's log for the reason"
    return 400, "the database refused this request's input (the dashboard's log has the reason)"


def failure(request: Request, exc: Exception) -> Response:
    """The response for an exception a page raised: the input's fault gets a 400 with the
    message; a database failure a 503 without details (they name user, host and database: logged
    here instead); anything else a 500 without details, logged with its traceback."""
    if isinstance(exc, DBOSDatabaseError):
        return _plain(*database_error(request, exc))
    if isinstance(exc, (DBOSException, ValueError, UnicodeError)):
        return _plain(400, f"bad request: {exc}")
    log.exception("dashboard: %s %s failed", request.method, request.url.path)
    return _plain(500, "internal error: see the dashboard's log")

"""The dashboard's request guard: token check, CSRF secret, and strict response headers.

Kept apart from the pages (app.py) so that the rules every request passes through live in one place.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response

TOKEN_COOKIE = "dbos_ui_token"
CSRF_COOKIE = "dbos_csrf"


class Guard(BaseHTTPMiddleware):
    """Token check (when configured) and CSRF protection for every request."""

    def __init__(self, app: Any, token: str | None) -> None:
        super().__init__(app)
        self.token = token

    async def dispatch(
        self, request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        if self.token is not None:
            given = request.query_params.get("token")
            if given is not None and hmac.compare_digest(given, self.token):
                # Trade the token in the URL for a cookie, and drop it from the address bar.
                response: Response = RedirectResponse(request.url.path, status_code=303)
                response.set_cookie(TOKEN_COOKIE, given, httponly=True, samesite="strict")
                return response
            header = request.headers.get("authorization", "")
            bearer = header[7:] if header.lower().startswith("bearer ") else ""
            cookie = request.cookies.get(TOKEN_COOKIE, "")
            if not (
                hmac.compare_digest(bearer, self.token) or hmac.compare_digest(cookie, self.token)
            ):
                return PlainTextResponse(
                    "a token is required: open /?token=... or send 'Authorization: Bearer ...'",
                    status_code=401,
                )
        # The CSRF secret: the cookie's, or a fresh one that this response sets. POST endpoints
        # compare it with the form's field (they read the body; a middleware must not).
        request.state.csrf = request.cookies.get(CSRF_COOKIE) or secrets.token_urlsafe(32)
        response = await call_next(request)
        if CSRF_COOKIE not in request.cookies:
            response.set_cookie(CSRF_COOKIE, request.state.csrf, httponly=True, samesite="strict")
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Content-Security-Policy"] = (
            "default-src 'self'; style-src 'self'; script-src 'self'; frame-ancestors 'none'"
        )
        return response

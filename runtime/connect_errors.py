"""One line for a connection that could not be made: where (host:port/database, never a password)
and what went wrong, in words an operator acts on (refused, no answer, host name, authentication,
missing database, SSL).

A URL whose password holds an unencoded ``@``, ``/``, ``?`` or ``#`` is parsed by libpq with part
of the password as the host, port or database (``postgresql://u:p@ss@host/db`` connects to the
host ``ss@host``), and the driver's message echoes that part. Such a URL is named in its redacted
form and the message says what is wrong with it, with none of the driver's text."""

from __future__ import annotations

import re

from runtime import pg_hosts
from runtime.config import redact_url

_AMBIGUOUS = (
    "the URL is ambiguous: its password holds an unencoded '@', '/', '?' or '#' "
    "(percent-encode them, e.g. '@' as %40)"
)


def _params(url: str) -> dict[str, str]:
    return pg_hosts.params(url)


def _secret(url: str) -> str:
    """The password as the URL's writer meant it: from after ``user:`` to the last ``@`` before
    the host list (what ``redact_url`` masks), or the ``password`` parameter."""
    match = re.match(r"[A-Za-z][A-Za-z0-9+.\-]*://([^:/?#@]*):(.*)@", url, re.DOTALL)
    if match:
        return match.group(2)
    return _params(url).get("password", "")


def _ambiguous(url: str, params: dict[str, str]) -> bool:
    """Whether libpq read part of the password as a host, port or database."""
    secret = _secret(url)
    if not secret:
        return False
    shown = (params.get("host", ""), params.get("port", ""), params.get("dbname", ""))
    return params.get("password", "") != secret and any(
        piece in value for piece in _pieces(secret) for value in shown
    )


def _pieces(secret: str) -> list[str]:
    """The parts of a password a parser may have split it into."""
    return [p for p in re.split(r"[@/?#:]", secret) if p] + [secret]


def _where(url: str, params: dict[str, str], ambiguous: bool) -> str:
    if ambiguous or not params:
        return redact_url(url)
    hosts = ",".join(pg_hosts.host_list(params))
    return f"{hosts}/{params.get('dbname') or params.get('user') or 'postgres'}"


def _quoted(text: str) -> str | None:
    found = re.search(r"\"([^\"]*)\"|'([^']*)'", text)
    if found is None:
        return None
    return found.group(1) if found.group(1) is not None else found.group(2)


def _reason(text: str, params: dict[str, str], connect_timeout_s: float) -> str:
    """What went wrong, from the driver's message."""
    lower = text.lower()
    if "session is read-only" in lower:  # target_session_attrs=read-write met a standby
        return "the server is read-only (a standby?), and the URL asks for a writable one"
    if "server is in hot standby mode" in lower or "server is not in hot standby" in lower:
        return (
            f"the server does not match target_session_attrs={params.get('target_session_attrs')}"
        )
    if "connection refused" in lower:
        return "connection refused (is a server listening on that host and port?)"
    if "timeout expired" in lower or "timed out" in lower:
        return f"no answer within {connect_timeout_s:g} s"
    if "failed to resolve host" in lower or "could not translate host name" in lower:
        host = params.get("host", "")
        if "," in host:  # several hosts, none resolving: the driver's message names the last
            return f"cannot resolve any of the host names (the last: {_quoted(text) or host!r})"
        return f"cannot resolve the host name {host.rpartition('@')[2]!r}"
    if "password authentication failed" in lower or "no password supplied" in lower:
        return f"authentication failed for user {params.get('user', '')!r} (check the password)"
    if re.search(r'role ".*" does not exist', text):
        return f"authentication failed: no role {params.get('user', '')!r} on that server"
    if re.search(r'database ".*" does not exist', text):
        name = params.get("dbname", "")
        return f"the database {name!r} does not exist (`dbos migrate` creates it)"
    if re.search(r"invalid \w+ value", lower):  # a bad option value, e.g. sslmode=bogus
        return _first_line(text)
    if "ssl" in lower and ("not support" in lower or "required" in lower):
        return "the server does not support SSL, but the URL's sslmode requires it"
    if "ssl" in lower:
        return f"SSL negotiation failed (sslmode {params.get('sslmode', 'prefer')!r})"
    return _first_line(text)


def _first_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    line = lines[0] if lines else "unknown error"
    for prefix in ("connection failed: ", "connection is bad: "):
        line = line.removeprefix(prefix)
    return line


def describe(exc: BaseException, url: str, connect_timeout_s: float) -> str:
    """``cannot reach the database at WHERE: WHY`` for a connection attempt to ``url`` that
    raised ``exc``; no password, however the URL is shaped."""
    params = _params(url)
    ambiguous = _ambiguous(url, params)
    if ambiguous:
        # libpq read part of the password as the host, port or database: its own message
        # would echo that part, and what it says about a host name that is not one misleads.
        reason = _AMBIGUOUS
    elif _ATTEMPTS_HEADER in str(exc):
        reason = _each_host(str(exc), params, connect_timeout_s)
    else:  # parsed as its writer meant it: libpq's text never holds the password
        reason = _reason(str(exc), params, connect_timeout_s)
    return f"cannot reach the database at {_where(url, params, ambiguous)}: {reason}"


# The driver's message when every host of a multi-host URL failed: the last failure, this
# header, then one line per attempt: "- host: 'h', port: 'p', hostaddr: 'a': <why>", where the
# hostaddr is ``None`` (unquoted) for a Unix-socket directory or an address given as such.
_ATTEMPTS_HEADER = "Multiple connection attempts failed"
_ATTEMPT = re.compile(r"^- host: '([^']*)', port: '([^']*)', hostaddr: (?:'[^']*'|None): (.*)$")


def _each_host(text: str, params: dict[str, str], connect_timeout_s: float) -> str:
    """``every host failed: h1:p1 (why); h2:p2 (why)`` from the driver's message listing each
    attempt (a host name resolving to several addresses is one attempt per address)."""
    attempts: list[tuple[str, str, list[str]]] = []
    for line in text.partition(_ATTEMPTS_HEADER)[2].splitlines():
        found = _ATTEMPT.match(line.strip())
        if found is not None:
            attempts.append((found.group(1), found.group(2), [found.group(3)]))
        elif attempts:  # libpq's hint lines continue the attempt above them
            attempts[-1][2].append(line)
    failures = [
        f"{pg_hosts.host_list({'host': host, 'port': port})[0]} "
        f"({_reason(chr(10).join(why), params | {'host': host}, connect_timeout_s)})"
        for host, port, why in attempts
    ]
    return "every host failed: " + "; ".join(failures) if failures else _first_line(text)

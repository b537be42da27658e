"""The hosts a connection URL names, and the connection settings every runtime connection gets
unless the URL sets them.

libpq accepts several hosts in one URL, in two spellings that mean the same:
``postgresql://u:pw@h1:5432,h2:5433/db`` and ``postgresql://u:pw@/db?host=h1,h2&port=5432,5433``.
The driver tries them in order; with ``target_session_attrs=read-write`` it skips a server that
refuses writes (a standby), so the URL keeps naming the primary after a failover.
"""

from __future__ import annotations

from typing import Any

import psycopg

# A URL naming several hosts lists the servers a failover may move the primary between; the
# system database must accept writes, and landing on a standby would make every write fail. So
# such a URL gets `target_session_attrs=read-write` unless it says otherwise (an explicit value,
# even `any`, is the operator's choice and is kept).
MULTI_HOST_SESSION_ATTRS = "read-write"

# TCP keepalives and a send timeout, so that a server that vanishes without a TCP reset (power
# loss, a network partition, a VM paused) is noticed in tens of seconds, not after the OS default
# of two hours of silence (then ~11 minutes of probes). The LISTEN connection needs it most: it
# only ever waits, so without probes nothing would tell it that the primary it listens to is gone
# and it would never reconnect to the new one.
# - keepalives_idle 10 s: the first probe after 10 s of silence. One tiny packet per idle
#   connection every 10 s costs nothing; a shorter idle time buys little, as failover managers
#   take 10-30 s to promote a standby anyway.
# - keepalives_interval 5 s, keepalives_count 3: three unanswered probes 5 s apart declare the
#   peer dead, ~25 s after the last sign of life; three tolerate a lost packet or two.
# - tcp_user_timeout 20 s: data sent (a checkpoint) but not acknowledged for 20 s fails the
#   connection instead of being retransmitted for ~15 minutes; 20 s rides out a brief network
#   hiccup without cutting a healthy but slow link.
# libpq ignores all four on a Unix-domain socket.
KEEPALIVE_DEFAULTS: dict[str, str] = {
    "keepalives": "1",
    "keepalives_idle": "10",
    "keepalives_interval": "5",
    "keepalives_count": "3",
    "tcp_user_timeout": "20000",  # milliseconds
}


def params(url: str) -> dict[str, str]:
    """The connection parameters of ``url`` as libpq reads them; empty when it cannot be parsed
    (callers refuse such a URL before connecting)."""
    try:
        return {k: str(v) for k, v in psycopg.conninfo.conninfo_to_dict(url).items()}
    except Exception:  # any parse failure: the URL is refused elsewhere, with a clear message
        return {}


def host_list(given: dict[str, str]) -> list[str]:
    """``host:port`` for each server the parameters name, in the order libpq tries them. A single
    port applies to every host (libpq's rule); no host means the local default."""
    hosts = (given.get("host") or given.get("hostaddr") or "localhost").split(",")
    ports = (given.get("port") or "5432").split(",")
    if len(ports) == 1:
        ports = ports * len(hosts)
    return [
        f"{_bracketed(h) or 'localhost'}:{p or '5432'}"
        for h, p in zip(hosts, ports + [""] * (len(hosts) - len(ports)), strict=False)
    ]


def _bracketed(host: str) -> str:
    """An IPv6 address in brackets, so that its port stays readable after the ``:``."""
    return f"[{host}]" if ":" in host and not host.startswith("/") else host


def is_multi_host(given: dict[str, str]) -> bool:
    """Whether the parameters name more than one server."""
    return "," in (given.get("host") or given.get("hostaddr") or "")


def session_defaults(url: str, connect_timeout_s: int | None = None) -> dict[str, Any]:
    """The settings to add to a connection to ``url``: those of ``KEEPALIVE_DEFAULTS`` it does not
    set, ``target_session_attrs`` when it names several hosts and does not set that, and
    ``connect_timeout`` (seconds, per host) when given and the URL does not set it. Passed as
    keyword arguments to the driver, which would let them override the URL's own values: so
    only what the URL leaves unset is returned. (The URL's own ``connect_timeout`` matters with
    several hosts: a first host that vanished without a trace costs that long per connection
    before the next host is tried.)"""
    given = params(url)
    added: dict[str, Any] = {k: v for k, v in KEEPALIVE_DEFAULTS.items() if k not in given}
    if connect_timeout_s is not None and "connect_timeout" not in given:
        added["connect_timeout"] = connect_timeout_s
    if is_multi_host(given) and "target_session_attrs" not in given:
        added["target_session_attrs"] = MULTI_HOST_SESSION_ATTRS
    return added


def open_budget_s(url: str, default_timeout_s: int) -> float:
    """How long opening a first connection to ``url`` may take in the worst case libpq allows:
    each host's ``connect_timeout`` (the URL's, or ``default_timeout_s``) in turn, since a host
    that swallows packets costs its whole timeout before the next is tried. A ``connect_timeout``
    of 0 (wait forever) counts as ``default_timeout_s``: callers bound their own wait."""
    given = params(url)
    try:
        per_host = int(given.get("connect_timeout") or default_timeout_s)
    except ValueError:
        per_host = default_timeout_s
    if per_host <= 0:
        per_host = default_timeout_s
    # libpq (and psycopg) wait at least 2 s per attempt whatever smaller value is given.
    per_host = max(per_host, MIN_CONNECT_TIMEOUT_S)
    return float(per_host * max(1, len(host_list(given))))


#: libpq's floor for connect_timeout: a smaller positive value waits 2 s.
MIN_CONNECT_TIMEOUT_S = 2

"""A first host that accepts TCP connections and never answers (a server hung, or a proxy in front
of a dead one) costs its connect_timeout per new connection, and then the next host serves: the
pool's first open waits long enough for every host's timeout in turn, rather than giving up while
a healthy second host was never tried."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import psycopg.conninfo
import pytest

from runtime import DBOSClient
from runtime.pg_hosts import open_budget_s


@pytest.fixture
def silent_port() -> Iterator[int]:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])  # kept open, never answered
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield int(server.getsockname()[1])
    finally:
        stop.set()
        thread.join(2)
        for conn in held:
            conn.close()
        server.close()


def test_the_pool_outwaits_a_silent_first_host(db_url: str, silent_port: int) -> None:
    given = psycopg.conninfo.conninfo_to_dict(db_url)
    url = psycopg.conninfo.make_conninfo(
        db_url, host=f"127.0.0.1,{given['host']}", port=f"{silent_port},{given['port']}"
    )
    started = time.monotonic()
    with DBOSClient(url) as client:
        assert client.list_workflows() == []
    # The silent host's default connect_timeout (10 s), then the healthy one.
    assert time.monotonic() - started < 40


def test_the_budget_counts_every_host() -> None:
    assert open_budget_s("postgresql://u@a:1,b:2/db", 10) == 20
    assert open_budget_s("postgresql://u@a:1,b:2,c:3/db?connect_timeout=3", 10) == 9
    assert open_budget_s("postgresql://u@a:1,b:2/db?connect_timeout=0", 10) == 20
    assert open_budget_s("postgresql://u@a/db", 10) == 10
    # libpq waits at least 2 s per host whatever smaller timeout is asked.
    assert open_budget_s("postgresql://u@a:1,b:2,c:3/db?connect_timeout=1", 10) == 6

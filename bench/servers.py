"""What the per-workload benches share: a fresh embedded Postgres for one run, a fresh database
per sample, the interleaving of several checkouts (rounds alternate which goes first, so that both
see the same machine), and the CPU the server has used. Imported by the bench scripts run from
this folder; importable under DBOS Transact's interpreter too (``runtime`` is imported only by
``server``)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import psycopg

T = TypeVar("T")


@contextmanager
def server(prefix: str) -> Iterator[str]:
    """A fresh embedded Postgres (pg_stat_statements preloaded) in a temporary folder, stopped on
    exit; yields its URL."""
    from runtime.embedded import EmbeddedPostgres

    pg = EmbeddedPostgres(
        Path(tempfile.mkdtemp(prefix=f"dbos-{prefix}-")),
        settings={"shared_preload_libraries": "'pg_stat_statements'"},
    )
    url = pg.start()
    try:
        yield url
    finally:
        pg.stop()


def fresh_database(url: str, name: str) -> str:
    """Create database ``name`` on ``url``'s server (pg_stat_statements installed in it); returns
    its URL."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    db_url = url.rsplit("/", 1)[0] + "/" + name
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
    return db_url


def interleaved(items: Sequence[T], rounds: int) -> Iterator[tuple[int, int, T]]:
    """(round, index, item) for every round and item, every other round in reverse order."""
    for n in range(rounds):
        order = list(range(len(items)))
        if n % 2:
            order.reverse()
        for i in order:
            yield n, i, items[i]


def postgres_cpu_s(url: str) -> float:
    """CPU seconds the server at ``url`` (on this machine) has used so far: its live processes,
    plus the children the postmaster has reaped (a closed connection's backend counts there)."""
    tick = os.sysconf("SC_CLK_TCK")

    def stat(pid: int) -> list[str]:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()

    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT pg_backend_pid()").fetchone()
        assert row is not None
        # Read while the connection is open: its backend exits when the connection closes.
        postmaster = int(stat(int(row[0]))[1])  # the backend's parent
    total = sum(int(x) for x in stat(postmaster)[11:15])  # utime, stime, cutime, cstime
    for child in Path(f"/proc/{postmaster}/task/{postmaster}/children").read_text().split():
        try:
            total += sum(int(x) for x in stat(int(child))[11:13])
        except OSError:  # exited meanwhile: now in the postmaster's cutime/cstime
            pass
    return total / tick

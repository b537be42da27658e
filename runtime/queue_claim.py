"""The round trips of one queue claim (``SystemDatabase.dequeue``), on a connection it lends.

A queue without limits: the claim alone. With a global concurrency only: BEGIN, the queue's
advisory lock, the claim (which counts the free slots itself, under the lock) and COMMIT, sent as
one pipeline with one sync, so one round trip. With a rate limit: the lock and the count of
starts in the window first, then the claim capped by what the window has left.
"""

from __future__ import annotations

import time
from typing import Any

import psycopg

from runtime import queries


def claim_rows(
    conn: psycopg.Connection[Any],
    claim: str,
    params: dict[str, Any],
    *,
    limiter: tuple[int, float] | None,
) -> tuple[list[Any], int | None]:
    """Run the claim ``claim`` with ``params`` (its ``limit`` lowered to what a rate limit leaves);
    returns the claimed rows and, when the rate limit capped the claim, the epoch millisecond at
    which its window has room again."""
    partition = params["partition"]
    lock = {
        "lock_key": f"dbos.queue:{params['queue_name']}"
        + ("" if partition is None else f":{partition}")
    }
    if limiter is None and params["concurrency"] is None:
        return conn.execute(claim, params).fetchall(), None
    if limiter is None:
        # One pipeline, one sync (``conn.transaction()`` would sync at its start and end too).
        try:
            with conn.pipeline():
                conn.execute("BEGIN")
                conn.execute(queries.LOCK_QUEUE, lock)
                cursor = conn.execute(claim, params)
                conn.execute("COMMIT")
        except BaseException:
            conn.rollback()  # a failed statement leaves the transaction open
            raise
        return cursor.fetchall(), None
    window_reopens: int | None = None
    with conn.transaction():
        conn.execute(queries.LOCK_QUEUE, lock)
        limit, period_s = limiter
        period_ms = int(period_s * 1000)
        now = int(time.time() * 1000)
        found = conn.execute(
            queries.COUNT_QUEUE_STARTS if partition is None else queries.COUNT_PARTITION_STARTS,
            {**params, "since_ms": now - period_ms},
        ).fetchone()
        started, oldest = (int(found[0]), found[1]) if found else (0, None)
        if started + params["limit"] > limit:
            params["limit"] = max(0, limit - started)
            # If this claim fills the window, nothing more can start until its oldest start is
            # a period old (this claim's, when the window was empty).
            first = int(oldest) if oldest is not None else now
            window_reopens = first + period_ms + 1
        if params["limit"] <= 0:
            return [], window_reopens
        return conn.execute(claim, params).fetchall(), window_reopens

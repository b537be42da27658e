"""The chaos workload, served by several `dbos start` executors while faults are injected.

Every side effect lands in a ledger that the harness checks independently of the runtime's records:

- ``chaos_attempts``: one row per *attempt* of a step (written before the step returns, outside
  any transaction), with the step number and the time the attempt *started*, so re-executions
  are countable. (The start, not the moment the row lands: an attempt that began while its runner
  still owned the workflow may land after a database outage, when another runner has recorded the
  step meanwhile; at-least-once allows such overlapping attempts, but none may start after the
  record.)
  The row is written in a transaction guarded by the workflow's fencing token
  (``DBOS.fencing_token``): a runner that lost the workflow to a takeover (paused past its lease
  between its ownership check and the step) has its write refused, as a real side effect's target
  would refuse it. Refusals are counted in ``chaos_fenced``.
- ``chaos_tx``: one row per committed transaction, with no unique key, so duplicates are countable.

``CHAOS_BREAK=replay`` (test code only) makes replay ignore recorded outcomes, a deliberately broken
build the harness must catch.
"""

from __future__ import annotations

import logging
import os
import random
import time
from typing import Any

import psycopg

from runtime import DBOS, DBOSWorkflowFencedError, Queue

LEDGER_DDL = """
CREATE TABLE IF NOT EXISTS chaos_attempts (
    workflow_id text NOT NULL, function_id int NOT NULL, attempt_at_ms bigint NOT NULL,
    pid int NOT NULL
);
CREATE TABLE IF NOT EXISTS chaos_tx (
    workflow_id text NOT NULL, function_id int NOT NULL, pid int NOT NULL
);
CREATE TABLE IF NOT EXISTS chaos_fenced (
    workflow_id text NOT NULL, function_id int NOT NULL, attempt_at_ms bigint NOT NULL,
    refused_at_ms bigint NOT NULL, pid int NOT NULL
);
"""

orders = Queue("chaos_orders", concurrency=4)  # a global limit across all executors
free = Queue("chaos_free")  # messaging pairs: a waiting receiver must not starve its sender


def _note_attempt(started_ms: int) -> None:
    # The side effect of a step: its own transaction (not the runtime's), fenced, retried until
    # the database answers (a step may fail only for its own reasons, and ours has none).
    token = DBOS.fencing_token
    assert token is not None
    while True:
        try:
            with psycopg.connect(DBOS.database_url, connect_timeout=5) as conn:
                with conn.transaction():
                    token.check(conn)
                    conn.execute(
                        "INSERT INTO chaos_attempts VALUES (%s, %s, %s, %s)",
                        (token.workflow_id, DBOS.step_id, started_ms, os.getpid()),
                    )
            return
        except DBOSWorkflowFencedError:
            _note_refusal(token.workflow_id, started_ms)
            raise
        except psycopg.Error:
            time.sleep(0.2)


def _note_refusal(workflow_id: str, started_ms: int) -> None:
    # Counted for the report only (best effort: the run's verdict does not depend on it).
    try:
        with psycopg.connect(DBOS.database_url, autocommit=True, connect_timeout=5) as conn:
            conn.execute(
                "INSERT INTO chaos_fenced VALUES (%s, %s, %s, %s, %s)",
                (workflow_id, DBOS.step_id, started_ms, int(time.time() * 1000), os.getpid()),
            )
    except psycopg.Error as exc:
        logging.getLogger("chaos").warning("refusal of %s not counted: %s", workflow_id, exc)


@DBOS.step()
def step_op(tag: str) -> str:
    _note_attempt(int(time.time() * 1000))
    time.sleep(random.uniform(0.0, 0.15))
    return f"{DBOS.workflow_id}:{tag}"


@DBOS.transaction()
def tx_op(tag: str) -> str:
    DBOS.sql_session.execute(
        "INSERT INTO chaos_tx VALUES (%s, %s, %s)", (DBOS.workflow_id, DBOS.step_id, os.getpid())
    )
    time.sleep(random.uniform(0.0, 0.1))
    return tag


@DBOS.workflow()
def child(tag: str) -> str:
    return step_op(tag) + "|" + tx_op(tag)


@DBOS.workflow()
def order(i: int) -> list[Any]:
    first = step_op("a")
    paid = tx_op("b")
    shipped = child(f"c{i}")
    DBOS.set_event("progress", "half")
    DBOS.sleep(0.2)
    last = step_op("d")
    return [first, paid, shipped, last, tx_op("e")]


@DBOS.workflow()
def receiver(count: int) -> list[Any]:
    return [DBOS.recv("m", timeout_seconds=600) for _ in range(count)]


@DBOS.workflow()
def sender(receiver_id: str, count: int) -> int:
    for k in range(count):
        DBOS.send(receiver_id, f"{receiver_id}:{k}", topic="m")
        step_op(f"s{k}")
    return count


@DBOS.workflow()
def event_reader(target: str) -> Any:
    return DBOS.get_event(target, "progress", timeout_seconds=600)


if os.environ.get("CHAOS_BREAK") == "replay":
    from runtime.engine import Engine

    def _forgetful(self: Engine, ctx: Any, name: str) -> tuple[int, Any]:
        return ctx.next_function_id(), None  # ignores what a previous run recorded

    Engine.begin_operation = _forgetful  # type: ignore[method-assign]

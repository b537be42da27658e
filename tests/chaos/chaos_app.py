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
- ``chaos_spans``: when each completed step body started and ended, so the harness can count the
  workflows of a queue running at one moment (an attempt cut short by a kill has no span; its
  start is in ``chaos_attempts``).
- ``chaos_tx``: one row per committed transaction, with no unique key, so duplicates are countable.
- ``chaos_dispatches``: written by a trigger the harness installs (not by the runtime's code), one
  row per first dispatch of a ``chaos_rate`` workflow with its start time, so starts per period
  are countable.

Workflows: ``order`` (a concurrency-limited queue: steps, transactions, a child called directly,
an event, a durable sleep), ``family`` (a parent that starts a child, calls another, sleeps and
waits for the first; started by ``launch_family`` on no queue, sometimes under a timeout that
expires mid-run), ``rated`` (a
rate-limited queue), ``failing`` (ends ERROR by design), ``napper`` (a long sleep that parks), and
messaging pairs and event readers (their waits park too, when long).

``CHAOS_BREAK`` (test code only) builds a deliberately broken runtime the harness must catch:
``replay`` ignores recorded outcomes; ``dequeue`` brings back the queue claim of #15 item 1 (rows
chosen by ``IN (SELECT ... LIMIT n FOR UPDATE SKIP LOCKED)``, which a nested loop re-runs).
"""

from __future__ import annotations

import logging
import os
import random
import time
from typing import Any

import psycopg

from runtime import DBOS, DBOSWorkflowFencedError, Queue, SetWorkflowTimeout

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
CREATE TABLE IF NOT EXISTS chaos_spans (
    workflow_id text NOT NULL, function_id int NOT NULL, started_ms bigint NOT NULL,
    ended_ms bigint NOT NULL
);
CREATE TABLE IF NOT EXISTS chaos_dispatches (
    workflow_id text NOT NULL, started_ms bigint NOT NULL
);
CREATE OR REPLACE FUNCTION chaos_note_dispatch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO chaos_dispatches VALUES (NEW.workflow_uuid, NEW.started_at_epoch_ms);
    RETURN NEW;
END;
$$;
DROP TRIGGER IF EXISTS chaos_dispatch_trigger ON dbos.workflow_status;
CREATE TRIGGER chaos_dispatch_trigger AFTER UPDATE OF status ON dbos.workflow_status
    FOR EACH ROW WHEN (OLD.status = 'ENQUEUED' AND NEW.status = 'PENDING'
                       AND NEW.queue_name = 'chaos_rate' AND OLD.started_at_epoch_ms IS NULL)
    EXECUTE FUNCTION chaos_note_dispatch();
"""

ORDERS_CONCURRENCY = 4
WAIT_S = 7200
RATE_LIMIT = 5
RATE_PERIOD_S = 2.0

orders = Queue("chaos_orders", concurrency=ORDERS_CONCURRENCY)  # across all executors
rate = Queue("chaos_rate", limiter={"limit": RATE_LIMIT, "period": RATE_PERIOD_S})
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


def _note_span(started_ms: int) -> None:
    # After the body: best effort (a lost span only weakens the concurrency check).
    try:
        with psycopg.connect(DBOS.database_url, autocommit=True, connect_timeout=5) as conn:
            conn.execute(
                "INSERT INTO chaos_spans VALUES (%s, %s, %s, %s)",
                (DBOS.workflow_id, DBOS.step_id, started_ms, int(time.time() * 1000)),
            )
    except psycopg.Error as exc:
        logging.getLogger("chaos").warning("span of %s not noted: %s", DBOS.workflow_id, exc)


@DBOS.step()
def step_op(tag: str) -> str:
    started = int(time.time() * 1000)
    _note_attempt(started)
    time.sleep(random.uniform(0.0, 0.15))
    _note_span(started)
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
    return step_op(tag) + "|" + tx_op(tag) + "|" + step_op(tag + "'")


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
def family(i: int) -> list[Any]:
    started = DBOS.start_workflow(child, f"f{i}")
    called = child(f"g{i}")
    DBOS.sleep(0.3)
    return [started.get_result(), called, step_op("h")]


@DBOS.workflow()
def launch_family(i: int, timeout: float | None) -> str:
    # Started from a workflow, as apps start most workflows: on no queue, so a resumed family and
    # its children all go to the internal queue together.
    with SetWorkflowTimeout(timeout):
        return DBOS.start_workflow(family, i).workflow_id


@DBOS.workflow()
def napper(seconds: float) -> list[str]:
    # A long durable sleep between two steps: it parks (gives its thread back) and is woken by
    # its timer, possibly in another executor after a kill.
    first = step_op("n1")
    DBOS.sleep(seconds)
    return [first, step_op("n2")]


@DBOS.workflow()
def rated(i: int) -> str:
    return step_op(f"r{i}")


@DBOS.workflow()
def failing(i: int) -> None:
    step_op("x")
    raise ValueError(f"failing {i} fails by design")


@DBOS.workflow()
def receiver(count: int) -> list[Any]:
    # Timeouts longer than any run: a sender (or an order) cancelled by the operator early and
    # resumed only at the end must still be waited for.
    return [DBOS.recv("m", timeout_seconds=WAIT_S) for _ in range(count)]


@DBOS.workflow()
def sender(receiver_id: str, count: int) -> int:
    for k in range(count):
        DBOS.send(receiver_id, f"{receiver_id}:{k}", topic="m")
        step_op(f"s{k}")
    return count


@DBOS.workflow()
def event_reader(target: str) -> Any:
    return DBOS.get_event(target, "progress", timeout_seconds=WAIT_S)


if os.environ.get("CHAOS_BREAK") == "replay":
    from runtime.engine.protocol import Operations

    def _forgetful(self: Operations, ctx: Any, name: str) -> tuple[int, Any]:
        return ctx.next_function_id(), None  # ignores what a previous run recorded

    Operations.begin = _forgetful  # type: ignore[method-assign]

if os.environ.get("CHAOS_BREAK") == "dequeue":
    from runtime import queries

    queries.DEQUEUE = f"""
UPDATE dbos.workflow_status w
SET status = 'PENDING', executor_id = %(executor_id)s, owner_process = %(process_id)s,
    application_version = coalesce(w.application_version, %(application_version)s),
    owner_epoch = nextval('dbos.owner_epoch_seq'::regclass), started_at_epoch_ms = {queries.NOW_MS},
    updated_at = {queries.NOW_MS},
    workflow_deadline_epoch_ms = CASE WHEN w.workflow_timeout_ms IS NOT NULL
        THEN {queries.NOW_MS} + w.workflow_timeout_ms ELSE w.workflow_deadline_epoch_ms END
WHERE w.workflow_uuid IN (
    SELECT workflow_uuid FROM dbos.workflow_status
    WHERE queue_name = %(queue_name)s AND status = 'ENQUEUED'
      AND (application_version IS NULL OR application_version = %(application_version)s)
      AND name = ANY(%(names)s)
    ORDER BY priority, created_at
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
RETURNING w.workflow_uuid, w.status, w.owner_epoch, w.name, w.class_name, w.inputs,
          w.workflow_deadline_epoch_ms, w.recovery_attempts, w.application_version,
          w.queue_name,
          EXISTS (SELECT 1 FROM dbos.operation_outputs o WHERE o.workflow_uuid = w.workflow_uuid),
          w.priority, w.created_at
"""  # noqa: S608 (test code: the statement this project used before #15)

"""Ticket checkout: the reference scenario of durable execution.

Each order reserves a ticket (a transaction), charges the card through a slow payment provider (a
step), then either issues the ticket or, when the payment is declined, releases the reservation
(transactions). Run it with `dbos start examples/checkout.py`, kill it at any moment (even with
kill -9), start it again: each checkout resumes from its last completed step, no ticket is reserved
twice and no card is charged twice.
"""

from __future__ import annotations

import os
import sys
import time

import psycopg

from runtime import DBOS, SetWorkflowID

EVENT = "PyCon tickets"
DECLINED_CARD = "4000-0000-0000-0002"
# Slow enough to kill the app mid-checkout by hand; the scripted demo sets it lower.
STEP_SECONDS = float(os.environ.get("CHECKOUT_STEP_SECONDS", "1.5"))
RUN = os.environ.get("CHECKOUT_RUN", "demo")

ORDERS = [
    ("alice", "4242-4242-4242-4242"),
    ("bob", DECLINED_CARD),
    ("carol", "5555-5555-5555-4444"),
]


def say(order: str, message: str) -> None:
    print(f"  [{order}] {message}", flush=True)


@DBOS.transaction()
def setup_tables() -> None:
    s = DBOS.sql_session
    s.execute("CREATE TABLE IF NOT EXISTS tickets (event text PRIMARY KEY, remaining int)")
    s.execute(
        "CREATE TABLE IF NOT EXISTS purchases "
        "(order_id text PRIMARY KEY, customer text, event text, card text)"
    )
    s.execute(
        "CREATE TABLE IF NOT EXISTS charges (id serial, order_id text, customer text, card text)"
    )
    s.execute("INSERT INTO tickets VALUES (%s, 100) ON CONFLICT (event) DO NOTHING", (EVENT,))


@DBOS.transaction()
def reserve_ticket(order: str) -> bool:
    row = DBOS.sql_session.execute(
        "UPDATE tickets SET remaining = remaining - 1 WHERE event = %s AND remaining > 0 "
        "RETURNING remaining",
        (EVENT,),
    ).fetchone()
    if row is None:
        say(order, "sold out")
        return False
    say(order, f"reserved a ticket ({row[0]} left)")
    return True


@DBOS.step(retries_allowed=True, interval_seconds=0.5, max_attempts=3)
def process_payment(order: str, card: str) -> bool:
    say(order, f"charging card {card[-4:]} ...")
    # The provider's own ledger of charges, written outside any workflow transaction (as a real
    # provider would), so the demo can show that no card was charged twice.
    time.sleep(STEP_SECONDS)  # the payment provider is slow: a good moment to kill the app
    with psycopg.connect(DBOS.database_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO charges (order_id, customer, card) VALUES (%s, %s, %s)",
            (DBOS.workflow_id, order, card[-4:]),
        )
    ok = card != DECLINED_CARD
    say(order, "payment accepted" if ok else "payment declined")
    return ok


@DBOS.transaction()
def issue_ticket(order: str, card: str) -> None:
    DBOS.sql_session.execute(
        "INSERT INTO purchases VALUES (%s, %s, %s, %s)",
        (DBOS.workflow_id, order, EVENT, card[-4:]),
    )
    say(order, "ticket issued")


@DBOS.transaction()
def undo_reserve_ticket(order: str) -> None:
    DBOS.sql_session.execute(
        "UPDATE tickets SET remaining = remaining + 1 WHERE event = %s", (EVENT,)
    )
    say(order, "reservation released")


@DBOS.workflow()
def checkout_workflow(order: str, card: str) -> bool:
    """Reserve, pay, then issue the ticket or undo the reservation."""
    say(order, f"checkout running (workflow {DBOS.workflow_id})")
    if not reserve_ticket(order):
        return False
    time.sleep(STEP_SECONDS / 3)
    if process_payment(order, card):
        issue_ticket(order, card)
        return True
    undo_reserve_ticket(order)
    return False


def main() -> None:
    """Start every order (idempotently, by order ID) and report when all are done."""
    setup_tables()
    handles = []
    for name, card in ORDERS:
        with SetWorkflowID(f"{RUN}-order-{name}"):
            handles.append((name, DBOS.start_workflow(checkout_workflow, name, card)))
    for name, handle in handles:
        outcome = "purchased" if handle.get_result() else "not purchased"
        print(f"  [{name}] done: {outcome}", flush=True)
    print("ALL CHECKOUTS DONE", flush=True)
    sys.stdout.flush()

"""The seeds' checkout flow over HTTP, with async workflows behind a FastAPI app.

    POST /checkout/{order_id}   starts the checkout workflow and answers with its payment URL
                                 (the workflow publishes it as an event)
    POST /payment_webhook       the payment provider reports the outcome; forwarded to the
                                 workflow with send (the provider's event ID is the idempotency
                                 key, so a retried webhook is delivered once)
    GET  /orders/{order_id}     the checkout's status and outcome

The workflow reserves a ticket, waits (durably) for the payment result, then issues the ticket or
releases the reservation, also when the payment never comes (timeout). Kill the server at any
point; started again, every checkout resumes where it was.

Run it with `dbos start examples/web_checkout/app.py` (its main() serves with uvicorn; PORT, default
8000), or `python examples/web_checkout/app.py`.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import uvicorn
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel

from runtime import DBOS, DBOSNonExistentWorkflowError, SetWorkflowID

EVENT = "PyCon tickets"
PAYMENT_TIMEOUT_S = float(os.environ.get("PAYMENT_TIMEOUT_S", "300"))


@DBOS.transaction()
async def setup_tables() -> None:
    s = DBOS.sql_session
    await s.execute(
        "CREATE TABLE IF NOT EXISTS web_tickets (event text PRIMARY KEY, remaining int)"
    )
    await s.execute(
        "CREATE TABLE IF NOT EXISTS web_purchases (order_id text PRIMARY KEY, event text)"
    )
    await s.execute(
        "INSERT INTO web_tickets VALUES (%s, 100) ON CONFLICT (event) DO NOTHING", (EVENT,)
    )


@DBOS.transaction()
async def reserve_ticket() -> bool:
    cursor = await DBOS.sql_session.execute(
        "UPDATE web_tickets SET remaining = remaining - 1 WHERE event = %s AND remaining > 0 "
        "RETURNING remaining",
        (EVENT,),
    )
    return cursor.fetchone() is not None


@DBOS.transaction()
async def issue_ticket(order_id: str) -> None:
    await DBOS.sql_session.execute("INSERT INTO web_purchases VALUES (%s, %s)", (order_id, EVENT))


@DBOS.transaction()
async def undo_reserve_ticket() -> None:
    await DBOS.sql_session.execute(
        "UPDATE web_tickets SET remaining = remaining + 1 WHERE event = %s", (EVENT,)
    )


@DBOS.workflow()
async def checkout_workflow(order_id: str) -> str:
    """Reserve, publish the payment URL, wait for the payment, then issue or release."""
    if not await reserve_ticket():
        await DBOS.set_event_async("payment_url", None)
        return "sold out"
    await DBOS.set_event_async("payment_url", f"https://pay.example/session/{DBOS.workflow_id}")
    status = await DBOS.recv_async("payment_status", timeout_seconds=PAYMENT_TIMEOUT_S)
    if status == "paid":
        await issue_ticket(order_id)
        return "purchased"
    await undo_reserve_ticket()
    return "payment failed" if status else "payment timed out"


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    # Under `dbos start` the runtime is launched already (launch is idempotent); served directly
    # by uvicorn, the app launches and destroys it with itself.
    DBOS.launch()
    await setup_tables()
    yield
    DBOS.destroy()


app = FastAPI(title="Ticket checkout", lifespan=lifespan)


class PaymentNotice(BaseModel):
    """What the payment provider posts to the webhook."""

    workflow_id: str
    status: str  # "paid" or "failed"
    event_id: str  # the provider's ID of this notice: retries of one notice share it


@app.post("/checkout/{order_id}")
async def checkout(order_id: str) -> dict[str, Any]:
    """Start (or re-attach to) the order's checkout and return its payment URL."""
    with SetWorkflowID(f"checkout-{order_id}"):  # one checkout per order, however often posted
        handle = await DBOS.start_workflow_async(checkout_workflow, order_id)
    url = await DBOS.get_event_async(handle.workflow_id, "payment_url", timeout_seconds=30)
    if url is None:
        raise HTTPException(status_code=409, detail="sold out")
    return {"workflow_id": handle.workflow_id, "payment_url": url}


@app.post("/payment_webhook")
async def payment_webhook(notice: PaymentNotice) -> dict[str, str]:
    """Forward the provider's notice to the waiting workflow, exactly once per notice."""
    try:
        await DBOS.send_async(
            notice.workflow_id,
            notice.status,
            topic="payment_status",
            idempotency_key=notice.event_id,
        )
    except DBOSNonExistentWorkflowError:
        raise HTTPException(status_code=404, detail="unknown checkout") from None
    return {"status": "received"}


@app.get("/orders/{order_id}")
async def order(order_id: str) -> dict[str, Any]:
    """The checkout's status and, once finished, its outcome."""
    try:
        handle = await DBOS.retrieve_workflow_async(f"checkout-{order_id}")
    except DBOSNonExistentWorkflowError:
        raise HTTPException(status_code=404, detail="unknown order") from None
    status = await handle.get_status()
    return {"status": status.status, "outcome": status.output}


def main() -> None:
    """Serve the app (what `dbos start` calls after launching the runtime)."""
    uvicorn.run(app, host="127.0.0.1", port=int(os.environ.get("PORT", "8000")), log_level="info")


if __name__ == "__main__":
    main()

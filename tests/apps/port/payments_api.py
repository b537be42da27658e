"""A payment checkout service, written as an async DBOS Transact app behind FastAPI: async
workflows and steps, a workflow that publishes its payment link as an event and then waits for
the payment provider's webhook as a message, and handles to follow it.

Run as ``python payments_api.py PORT`` with ``DBOS_SYSTEM_DATABASE_URL`` and ``EFFECTS_FILE``
set; launching recovers whatever a killed process left pending. Routes:

- ``POST /checkout/{key}``: start (once per key) the checkout, answer its workflow ID and link;
- ``POST /webhook/{workflow_id}/{outcome}``: the provider's callback, ``paid`` or ``declined``;
- ``GET /orders/{workflow_id}``: the workflow's status, result and events;
- ``GET /stats``: how many checkouts succeeded and how many are pending.
"""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any

import uvicorn
from common import record_effect_async
from dbos import DBOS, DBOSConfig, SetWorkflowID
from fastapi import FastAPI

app = FastAPI()
config: DBOSConfig = {
    "name": "payments-api",
    "system_database_url": os.environ["DBOS_SYSTEM_DATABASE_URL"],
}
DBOS(config=config)

PAYMENT_TOPIC = "payment_outcome"


@DBOS.step()
async def create_payment_session(key: str, cents: int) -> str:
    await asyncio.sleep(0.1)  # the payment provider's API
    await record_effect_async("payments", "session", key, cents=cents)
    return f"https://pay.example/{key}"


@DBOS.step()
async def send_receipt(key: str, outcome: str) -> str:
    await asyncio.sleep(0.3)  # the mail service
    await record_effect_async("payments", "receipt", key, outcome=outcome)
    return f"receipt-{key}-{outcome}"


@DBOS.step()
async def request_pick(key: str) -> str:
    await asyncio.sleep(0.05)  # the warehouse's API
    await record_effect_async("payments", "warehouse", key)
    return f"picked-{key}"


@DBOS.workflow()
async def notify_warehouse(key: str) -> str:
    return await request_pick(key)


@DBOS.workflow()
async def checkout_workflow(key: str, cents: int) -> str:
    link = await create_payment_session(key, cents)
    await DBOS.set_event_async("payment_link", link)
    outcome = await DBOS.recv_async(PAYMENT_TOPIC, timeout_seconds=120)
    if outcome == "paid":
        child = await DBOS.start_workflow_async(notify_warehouse, key)
        picked = await child.get_result()
        await DBOS.set_event_async("picked", picked)
    receipt = await send_receipt(key, outcome or "timeout")
    await DBOS.set_event_async("order_status", outcome or "timeout")
    return receipt


@app.post("/checkout/{key}")
async def checkout(key: str, cents: int = 1000) -> dict[str, Any]:
    # The idempotency key is the workflow ID: a retried request joins the same checkout.
    with SetWorkflowID(f"checkout-{key}"):
        handle = await DBOS.start_workflow_async(checkout_workflow, key, cents)
    link = await DBOS.get_event_async(handle.workflow_id, "payment_link", timeout_seconds=30)
    return {"workflow_id": handle.workflow_id, "link": link}


@app.post("/webhook/{workflow_id}/{outcome}")
async def webhook(workflow_id: str, outcome: str) -> dict[str, str]:
    await DBOS.send_async(workflow_id, outcome, topic=PAYMENT_TOPIC)
    return {"delivered": workflow_id}


@app.get("/orders/{workflow_id}")
async def order(workflow_id: str, wait: bool = False) -> dict[str, Any]:
    handle = await DBOS.retrieve_workflow_async(workflow_id)
    result = await handle.get_result() if wait else None
    status = await handle.get_status()
    return {
        "status": status.status,
        "result": result,
        "order_status": await DBOS.get_event_async(workflow_id, "order_status", 0),
        "picked": await DBOS.get_event_async(workflow_id, "picked", 0),
        "events": await DBOS.get_all_events_async(workflow_id),
    }


@app.get("/stats")
async def stats() -> dict[str, int]:
    done = await DBOS.list_workflows_async(name="checkout_workflow", status="SUCCESS")
    waiting = await DBOS.list_workflows_async(name="checkout_workflow", status="PENDING")
    return {"succeeded": len(done), "pending": len(waiting)}


if __name__ == "__main__":
    DBOS.launch()
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")

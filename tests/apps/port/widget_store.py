"""A widget store, written as a DBOS Transact app: SQLAlchemy transactions on the application
database, a concurrency-limited queue for fulfilment, a registered (database-backed) queue for
confirmation emails, events for order status and workflow IDs as idempotency keys.

Run as ``python widget_store.py MODE COUNT``, with ``DBOS_SYSTEM_DATABASE_URL``,
``DBOS_DATABASE_URL`` (the application database) and ``EFFECTS_FILE`` set:

- ``place``: launch, place orders ``order-0`` .. ``order-{COUNT-1}`` and wait for all of them;
- ``recover``: launch (which recovers what a killed process left pending) and wait for them.

Both end by printing one JSON line: each order's result and ``order_status`` event, the
workflow counts ``DBOS.list_workflows`` reports, and the result of placing ``order-0`` again.
"""

from __future__ import annotations

import json
import os
import sys
import time

import sqlalchemy as sa
from common import record_effect
from dbos import DBOS, DBOSConfig, Queue, SetWorkflowID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

config: DBOSConfig = {
    "name": "widget-store",
    "system_database_url": os.environ["DBOS_SYSTEM_DATABASE_URL"],
    "application_database_url": os.environ["DBOS_DATABASE_URL"],
}
DBOS(config=config)

WIDGET = 1
STOCK = 1000


class Base(DeclarativeBase):
    pass


products = sa.Table(
    "products",
    Base.metadata,
    sa.Column("product_id", sa.Integer, primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("inventory", sa.Integer, nullable=False),
)

orders = sa.Table(
    "orders",
    Base.metadata,
    sa.Column("order_id", sa.Text, primary_key=True),
    sa.Column("product_id", sa.Integer, nullable=False),
    sa.Column("quantity", sa.Integer, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
)


class Shipment(Base):
    # No uniqueness on order_id on purpose: a shipment recorded twice must show as two rows.
    __tablename__ = "shipments"
    shipment_id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    order_id: Mapped[str]
    tracking: Mapped[str]


fulfilment_queue = Queue("fulfilment", concurrency=2)
# A queue whose configuration lives in the system database (registered after launch).
NOTIFICATIONS = "notifications"


@DBOS.transaction()
def reserve_inventory(order_id: str, product_id: int, quantity: int) -> bool:
    taken = DBOS.sql_session.execute(
        sa.text(
            "UPDATE products SET inventory = inventory - :quantity "
            "WHERE product_id = :product_id AND inventory >= :quantity"
        ),
        {"quantity": quantity, "product_id": product_id},
    ).rowcount
    if taken == 0:
        return False
    DBOS.sql_session.execute(
        sa.insert(orders).values(
            order_id=order_id, product_id=product_id, quantity=quantity, status="reserved"
        )
    )
    return True


@DBOS.transaction()
def record_shipment(order_id: str, tracking: str) -> None:
    DBOS.sql_session.add(Shipment(order_id=order_id, tracking=tracking))
    DBOS.sql_session.execute(
        sa.update(orders).where(orders.c.order_id == order_id).values(status="shipped")
    )


@DBOS.step()
def charge_card(order_id: str, quantity: int) -> str:
    time.sleep(0.2)  # the payment provider's round trip
    record_effect("store", "charge", order_id, quantity=quantity)
    return f"charge-{order_id}"


@DBOS.step()
def ship_package(order_id: str) -> str:
    time.sleep(0.3)  # the carrier's API
    record_effect("store", "ship", order_id)
    return f"track-{order_id}"


@DBOS.step()
def send_email(order_id: str, subject: str) -> None:
    time.sleep(0.1)  # the mail service
    record_effect("store", "email", order_id, subject=subject)


@DBOS.workflow()
def send_confirmation(order_id: str) -> str:
    send_email(order_id, "your order is on its way")
    return f"emailed-{order_id}"


@DBOS.workflow()
def fulfil_order(order_id: str) -> str:
    tracking = ship_package(order_id)
    record_shipment(order_id, tracking)
    return tracking


@DBOS.workflow()
def checkout_workflow(product_id: int, quantity: int) -> str:
    order_id = DBOS.workflow_id
    assert order_id is not None
    if not reserve_inventory(order_id, product_id, quantity):
        DBOS.set_event("order_status", "out_of_stock")
        return "out_of_stock"
    DBOS.set_event("order_status", "reserved")
    charge_card(order_id, quantity)
    DBOS.set_event("order_status", "paid")
    handle = fulfilment_queue.enqueue(fulfil_order, order_id)
    tracking = handle.get_result()
    DBOS.set_event("order_status", "shipped")
    confirmation = DBOS.enqueue_workflow(NOTIFICATIONS, send_confirmation, order_id)
    confirmation.get_result()
    return tracking


def place_order(order_id: str, quantity: int) -> str:
    # The order ID is the workflow ID: placing the same order twice runs it once.
    with SetWorkflowID(order_id):
        handle = DBOS.start_workflow(checkout_workflow, WIDGET, quantity)
    return handle.get_result()


def create_tables() -> None:
    url = sa.make_url(os.environ["DBOS_DATABASE_URL"]).set(drivername="postgresql+psycopg")
    engine = sa.create_engine(url)
    Base.metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO products (product_id, name, inventory) "
                "VALUES (:id, 'widget', :stock) ON CONFLICT DO NOTHING"
            ),
            {"id": WIDGET, "stock": STOCK},
        )
    engine.dispose()


def quantity_of(index: int) -> int:
    return 1 + index % 3


def main() -> None:
    mode, count = sys.argv[1], int(sys.argv[2])
    create_tables()
    DBOS.launch()
    DBOS.register_queue(NOTIFICATIONS, worker_concurrency=4, polling_interval_sec=0.2)
    order_ids = [f"order-{i}" for i in range(count)]
    if mode == "place":
        handles = []
        for i, order_id in enumerate(order_ids):
            with SetWorkflowID(order_id):
                handles.append(DBOS.start_workflow(checkout_workflow, WIDGET, quantity_of(i)))
        results = [h.get_result() for h in handles]
    else:
        results = [DBOS.retrieve_workflow(order_id).get_result() for order_id in order_ids]
    summary = {
        "results": dict(zip(order_ids, results, strict=True)),
        "events": {o: DBOS.get_event(o, "order_status", timeout_seconds=5) for o in order_ids},
        "checkouts_succeeded": len(DBOS.list_workflows(name="checkout_workflow", status="SUCCESS")),
        "fulfilments_succeeded": len(DBOS.list_workflows(name="fulfil_order", status="SUCCESS")),
        "confirmations_succeeded": len(
            DBOS.list_workflows(name="send_confirmation", status="SUCCESS")
        ),
        "again": place_order("order-0", quantity_of(0)),
    }
    print(json.dumps(summary), flush=True)
    DBOS.destroy()


if __name__ == "__main__":
    main()

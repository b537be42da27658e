"""Version 2 of the shop app (see replay_v1.py), incompatible with v1's pending workflows: a step
inserted before a recorded one (checkout), a step renamed (checkout_async), a workflow removed
(sleeper), a parameter added without a default (parent_handle), and code that now raises where v1
did not (parent_direct), a configured instance no longer created (till). The replay check
reports each."""

from __future__ import annotations

from runtime import DBOS, DBOSConfiguredInstance


@DBOS.step()
def audit(order: str) -> None:
    print("audit", order)


@DBOS.step()
def reserve(order: str) -> str:
    return f"reserved {order}"


@DBOS.step()
def charge(order: str, amount: int) -> int:
    return amount


@DBOS.step()
async def reserve_stock(order: str) -> str:
    return f"reserved {order}"


@DBOS.workflow()
def checkout(order: str, amount: int) -> str:
    audit(order)
    reservation = reserve(order)
    charged = charge(order, amount)
    DBOS.recv("confirm", timeout_seconds=600)
    return f"{reservation}, charged {charged}"


@DBOS.workflow()
async def checkout_async(order: str) -> str:
    reservation = await reserve_stock(order)
    await DBOS.recv_async("confirm", timeout_seconds=600)
    return reservation


@DBOS.workflow()
def child(order: str) -> str:
    DBOS.recv("go", timeout_seconds=600)
    return order


@DBOS.workflow()
def parent_direct(order: str) -> str:
    reserve(order)
    if not order.startswith("order-"):
        raise ValueError(f"bad order id {order!r}")
    return child(order)


@DBOS.workflow()
def parent_handle(order: str, priority: int) -> str:
    reserve(order)
    handle = DBOS.start_workflow(child, order + "-h")
    return handle.get_result()


@DBOS.workflow()
def finished(order: str) -> str:
    return reserve(order)


@DBOS.dbos_class()
class Till(DBOSConfiguredInstance):
    """A configured instance whose method is a workflow."""

    def __init__(self, config_name: str) -> None:
        super().__init__(config_name)

    @DBOS.workflow()
    def close(self, day: str) -> str:
        reserve(day)
        DBOS.recv("close", timeout_seconds=600)
        return f"{self.config_name} closed {day}"


# The configured instance is no longer created.

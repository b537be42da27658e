"""Version 2 of the shop app (see replay_v1.py), compatible with v1's pending workflows: step
bodies changed, local variables renamed, a step appended after the recorded history, a new
workflow. The replay check finds every v1 workflow replays."""

from __future__ import annotations

from runtime import DBOS, DBOSConfiguredInstance


@DBOS.step()
def reserve(order: str) -> str:
    return f"reserved {order} (v2 warehouse)"


@DBOS.step()
def charge(order: str, amount: int) -> int:
    return amount * 100  # now in cents


@DBOS.step()
async def reserve_async(order: str) -> str:
    return f"reserved {order} (v2)"


@DBOS.step()
def notify(order: str) -> None:
    print("shipped", order)


@DBOS.workflow()
def checkout(order: str, amount: int) -> str:
    held = reserve(order)
    paid = charge(order, amount)
    DBOS.recv("confirm", timeout_seconds=600)
    notify(order)  # new, after what v1 recorded
    return f"{held}, charged {paid}"


@DBOS.workflow()
async def checkout_async(order: str) -> str:
    held = await reserve_async(order)
    await DBOS.recv_async("confirm", timeout_seconds=600)
    return held.upper()


@DBOS.workflow()
def child(order: str) -> str:
    DBOS.recv("go", timeout_seconds=600)
    return order


@DBOS.workflow()
def parent_direct(order: str) -> str:
    reserve(order)
    return child(order)


@DBOS.workflow()
def parent_handle(order: str) -> str:
    reserve(order)
    handle = DBOS.start_workflow(child, order + "-h")
    result = handle.get_result()
    notify(order)
    return result


@DBOS.workflow()
def sleeper(order: str) -> None:
    # A step inserted before recorded ones, behind a patch: v1's runs take the old path.
    if DBOS.patch("notify-first"):
        notify(order)
    reserve(order)
    DBOS.sleep(600)
    charge(order, 2)


@DBOS.workflow()
def finished(order: str) -> str:
    return reserve(order)


@DBOS.workflow()
def refund(order: str) -> None:
    notify(order)


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


TILL = Till("main")

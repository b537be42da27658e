"""Version 1 of a shop app, for the replay check (tests/test_check_replay.py).

``python tests/apps/replay_v1.py PREFIX`` launches it on ``DBOS_DATABASE_URL``, starts one
workflow of each kind under ``PREFIX-<name>``, prints ``started`` and serves until killed: each
workflow blocks (in a recv, a durable sleep, or on a child that blocks) with steps recorded
before, so it is left PENDING mid-run. ``replay_v2_ok.py`` and ``replay_v2_bad.py`` are the next
versions, compatible and not.
"""

from __future__ import annotations

import sys
import time

from runtime import DBOS, DBOSConfiguredInstance, SetWorkflowID


@DBOS.step()
def reserve(order: str) -> str:
    return f"reserved {order}"


@DBOS.step()
def charge(order: str, amount: int) -> int:
    return amount


@DBOS.step()
async def reserve_async(order: str) -> str:
    return f"reserved {order}"


@DBOS.workflow()
def checkout(order: str, amount: int) -> str:
    reservation = reserve(order)
    charged = charge(order, amount)
    DBOS.recv("confirm", timeout_seconds=600)
    return f"{reservation}, charged {charged}"


@DBOS.workflow()
async def checkout_async(order: str) -> str:
    reservation = await reserve_async(order)
    await DBOS.recv_async("confirm", timeout_seconds=600)
    return reservation


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
    return handle.get_result()


@DBOS.workflow()
def sleeper(order: str) -> None:
    reserve(order)
    DBOS.sleep(600)
    charge(order, 1)


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


TILL = Till("main")


def main(prefix: str) -> None:
    DBOS(config={"name": "shop", "application_version": "v1"})  # type: ignore[typeddict-item]
    DBOS.launch()
    with SetWorkflowID(f"{prefix}-finished"):
        finished("f")
    starts = [
        ("checkout", checkout, ("o1", 5)),
        ("checkout_async", checkout_async, ("o2",)),
        ("parent_direct", parent_direct, ("o3",)),
        ("parent_handle", parent_handle, ("o4",)),
        ("sleeper", sleeper, ("o5",)),
        ("till", TILL.close, ("mon",)),
    ]
    for name, func, args in starts:
        with SetWorkflowID(f"{prefix}-{name}"):
            DBOS.start_workflow(func, *args)
    print("started", flush=True)
    while True:
        time.sleep(1)


if __name__ == "__main__":
    main(sys.argv[1])

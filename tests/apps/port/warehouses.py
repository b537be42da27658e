"""Warehouses, written as a DBOS Transact app whose workflows and steps are methods: one
``@DBOS.dbos_class()`` class derived from ``DBOSConfiguredInstance``, two instances of it with
different ``config_name`` s (so a recovered workflow finds its own instance again), and
classmethod and staticmethod steps beside the instance steps, a plain function run as a step
through ``DBOS.run_step``, and ``DBOS.wait_first`` over the handles.

Run as ``python warehouses.py MODE COUNT``, with ``DBOS_SYSTEM_DATABASE_URL`` and
``EFFECTS_FILE`` set:

- ``start``: launch, start ``COUNT`` restocks in each warehouse and wait for all of them;
- ``recover``: launch (which recovers what a killed process left pending) and wait for them.

Both end by printing one JSON line with each restock's result.
"""

from __future__ import annotations

import json
import os
import sys
import time

from common import record_effect
from dbos import DBOS, DBOSConfig, DBOSConfiguredInstance, SetWorkflowID

config: DBOSConfig = {
    "name": "warehouses",
    "system_database_url": os.environ["DBOS_SYSTEM_DATABASE_URL"],
}
DBOS(config=config)


def read_scale(site: str, sku: str, units: int) -> float:
    # A plain function, checkpointed where the workflow calls it through DBOS.run_step.
    time.sleep(0.05)  # the scale's serial line
    record_effect("warehouse", "weigh", f"{site}/{sku}")
    return round(units * 0.25, 2)


@DBOS.dbos_class()
class Warehouse(DBOSConfiguredInstance):
    def __init__(self, site: str, supplier: str, bins: int) -> None:
        self.supplier = supplier
        self.bins = bins
        super().__init__(config_name=site)

    @DBOS.workflow()
    def restock(self, sku: str, units: int) -> dict[str, object]:
        po = self.order_from_supplier(sku, units)
        bin_no = Warehouse.pick_bin(sku, self.bins)
        label = self.receive(po, bin_no)
        audit = Warehouse.audit(self.config_name, sku, units)
        kilos = DBOS.run_step(None, read_scale, self.config_name, sku, units)
        return {
            "site": self.config_name,
            "po": po,
            "bin": bin_no,
            "label": label,
            "audit": audit,
            "kilos": kilos,
        }

    @DBOS.step()
    def order_from_supplier(self, sku: str, units: int) -> str:
        time.sleep(0.15)  # the supplier's API
        record_effect("warehouse", "order", f"{self.config_name}/{sku}", units=units)
        return f"{self.supplier}:{sku}:{units}"

    @DBOS.step()
    def receive(self, po: str, bin_no: int) -> str:
        time.sleep(0.15)  # the dock's scanner
        record_effect("warehouse", "receive", f"{self.config_name}/{po}")
        return f"{self.config_name}-bin{bin_no}-{po}"

    @staticmethod
    @DBOS.step()
    def pick_bin(sku: str, bins: int) -> int:
        return sum(sku.encode()) % bins

    @classmethod
    @DBOS.step()
    def audit(cls, site: str, sku: str, units: int) -> str:
        record_effect("warehouse", "audit", f"{site}/{sku}", cls=cls.__name__)
        return f"{cls.__name__}:{site}:{sku}:{units}"


# Configured instances are created before launch, so recovery can find them by config_name.
east = Warehouse("east", supplier="acme", bins=7)
west = Warehouse("west", supplier="globex", bins=5)


def main() -> None:
    mode, count = sys.argv[1], int(sys.argv[2])
    DBOS.launch()
    jobs = [(site, f"sku-{i}", 10 + i) for i in range(count) for site in (east, west)]
    ids = [f"restock-{site.config_name}-{sku}" for site, sku, _ in jobs]
    if mode == "start":
        handles = []
        for workflow_id, (site, sku, units) in zip(ids, jobs, strict=True):
            with SetWorkflowID(workflow_id):
                handles.append(DBOS.start_workflow(site.restock, sku, units))
    else:
        handles = [DBOS.retrieve_workflow(workflow_id) for workflow_id in ids]
    first = DBOS.wait_first(handles)
    results = [h.get_result() for h in handles]
    with SetWorkflowID("restock-direct"):
        direct = west.restock("sku-direct", 1)  # a direct call runs the workflow inline
    summary = {
        "results": dict(zip(ids, results, strict=True)),
        "direct": direct,
        "first_done": first.workflow_id,
    }
    print(json.dumps(summary), flush=True)
    DBOS.destroy()


if __name__ == "__main__":
    main()

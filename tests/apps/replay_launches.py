"""An app that launches DBOS when imported: `dbos workflow check-replay` must refuse it before it
recovers (runs the steps of, writes to) the workflows the check promises to leave alone."""

from __future__ import annotations

from runtime import DBOS


@DBOS.workflow()
def checkout(order: str, amount: int) -> str:
    return order


DBOS.launch()

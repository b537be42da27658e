"""A test application whose system tables live in another schema, killed mid-workflow.

Run as ``python -m tests.apps.schema_app DB_URL SCHEMA MODE``:
- ``start``: launch, start workflow ``schema-kill`` (one step, then a transaction, then a step
  that prints ``IN_STEP3`` and waits forever), wait;
- ``recover``: launch (recovering this executor's pending workflows), print the result.
Every operation appends to table ``effects``, so the test counts executions.
"""

from __future__ import annotations

import sys
import time

import psycopg

from runtime import DBOS, SetWorkflowID

WORKFLOW_ID = "schema-kill"


def _effect(db_url: str, what: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS effects (what text)")
        conn.execute("INSERT INTO effects VALUES (%s)", (what,))


def main() -> None:
    db_url, schema, mode = sys.argv[1:4]

    @DBOS.step()
    def first() -> str:
        _effect(db_url, "first")
        return "one"

    @DBOS.transaction()
    def second() -> str:
        DBOS.sql_session.execute("CREATE TABLE IF NOT EXISTS tx_effects (what text)")
        DBOS.sql_session.execute("INSERT INTO tx_effects VALUES ('second')")
        return "two"

    @DBOS.step()
    def third() -> str:
        _effect(db_url, f"third-{mode}")
        if mode == "start":
            print("IN_STEP3", flush=True)
            time.sleep(3600)
        return "three"

    @DBOS.workflow()
    def flow() -> list[str]:
        return [first(), second(), third()]

    DBOS(
        config={
            "name": "schema-app",
            "database_url": db_url,
            "dbos_system_schema": schema,
            "executor_id": "local",
            "application_version": "v1",
        }
    )
    DBOS.launch()
    if mode == "start":
        with SetWorkflowID(WORKFLOW_ID):
            DBOS.start_workflow(flow)
        time.sleep(3600)
    else:
        print("RESULT", DBOS.retrieve_workflow(WORKFLOW_ID).get_result(), flush=True)
        DBOS.destroy()


if __name__ == "__main__":
    main()

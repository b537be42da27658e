"""A test application whose workflows are instance methods of configured instances, so that tests
can kill it mid-workflow and check that recovery runs each workflow on its own instance.

Run as ``python -m tests.apps.classes_app MODE DB_URL INSTANCES``, INSTANCES a comma-separated
list of the config names to create (before launch, in that order):
- ``start``: launch, start ``Account.transfer`` on every instance (workflow ID ``wf-NAME``), and
  SIGKILL this process once every one of them has recorded its first two operations (each then
  holds, so that none gets further).
- ``start-step``: the same with the step method ``Account.note`` started on its own (its
  one-step workflow, op 7, 8, ...), killed while every step holds after writing its row.
- ``recover``: launch (which recovers the workflows of dead processes), wait for the workflows
  ``wf-NAME`` of the names in ``WAIT_FOR`` (default: every instance), print their results as JSON
  ``{workflow_id: result}`` and exit cleanly.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time

import psycopg

from runtime import DBOS, DBOSConfiguredInstance, SetWorkflowID

CLASSES_DDL = """
CREATE TABLE IF NOT EXISTS class_ledger (
    id bigserial PRIMARY KEY, workflow_id text, op int, kind text, instance text, pid int
)
"""


def _db_url() -> str:
    return os.environ["CLASSES_DB_URL"]


@DBOS.dbos_class()
class Account(DBOSConfiguredInstance):
    """One account per config name; every operation records which instance ran it."""

    def __init__(self, owner: str) -> None:
        super().__init__(config_name=owner)
        self.owner = owner

    @DBOS.step()
    def note(self, op: int) -> str:
        # A step's effect outside any transaction, like an email: counted to prove exactly-once.
        with psycopg.connect(_db_url(), autocommit=True) as conn:
            conn.execute(
                "INSERT INTO class_ledger (workflow_id, op, kind, instance, pid) "
                "VALUES (%s, %s, 'step', %s, %s)",
                (DBOS.workflow_id, op, self.owner, os.getpid()),
            )
        while os.environ.get("HOLD_IN_STEP"):  # started as a workflow of its own: killed here
            time.sleep(0.05)
        return f"{self.owner}:step{op}"

    @DBOS.transaction()
    def book(self, op: int) -> str:
        DBOS.sql_session.execute(
            "INSERT INTO class_ledger (workflow_id, op, kind, instance, pid) "
            "VALUES (%s, %s, 'tx', %s, %s)",
            (DBOS.workflow_id, op, self.owner, os.getpid()),
        )
        return f"{self.owner}:tx{op}"

    @DBOS.workflow()
    def transfer(self, amount: int) -> list[str]:
        done = [self.note(1), self.book(2)]
        while os.environ.get("HOLD_AFTER_2"):  # the process is killed while we hold
            time.sleep(0.05)
        done.append(self.note(3))
        done.append(f"{self.owner}:{amount}")
        return done


def _recorded(names: list[str], op: int) -> bool:
    """Whether every ``wf-NAME`` has written a row for operation ``op`` or a later one."""
    with psycopg.connect(_db_url()) as conn:
        row = conn.execute(
            "SELECT count(DISTINCT workflow_id) FROM class_ledger WHERE op >= %s "
            "AND workflow_id = ANY(%s)",
            (op, [f"wf-{n}" for n in names]),
        ).fetchone()
    return row is not None and row[0] == len(names)


def main() -> None:
    mode, db_url, names_arg = sys.argv[1:4]
    names = [n for n in names_arg.split(",") if n]
    os.environ["CLASSES_DB_URL"] = db_url
    accounts = {name: Account(name) for name in names}  # before launch: recovery needs them
    DBOS(config={"name": "classes", "database_url": db_url, "application_version": "classes-v1"})
    DBOS.launch()
    if mode == "start":
        for i, (name, account) in enumerate(accounts.items()):
            with SetWorkflowID(f"wf-{name}"):
                DBOS.start_workflow(account.transfer, 100 + i)
        while not _recorded(names, 2):
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGKILL)
    if mode == "start-step":
        for i, (name, account) in enumerate(accounts.items()):
            with SetWorkflowID(f"wf-{name}"):
                DBOS.start_workflow(account.note, 7 + i)
        while not _recorded(names, 7):
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGKILL)
    waited = os.environ.get("WAIT_FOR", names_arg).split(",")
    try:
        results = {
            f"wf-{name}": DBOS.retrieve_workflow(f"wf-{name}").get_result() for name in waited
        }
        print(json.dumps(results), flush=True)
    finally:
        DBOS.destroy()


if __name__ == "__main__":
    main()

"""A test application for messages, events and durable sleep, run in subprocesses.

``python -m tests.apps.messaging_app start|recover NAME DB_URL WORKFLOW_ID [ARG]`` starts the named
workflow under that ID (or, with ``recover``, launches and waits for it) and prints its result as
JSON. ``KILL_AT=after-recv-N`` SIGKILLs the receiver right after its Nth recv returned; steps named
``wait_for_file`` block until ``GO_FILE`` exists.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import psycopg

from runtime import DBOS, SetWorkflowID

LEDGER_DDL = "CREATE TABLE IF NOT EXISTS msg_ledger (id bigserial, workflow_id text, item text)"


@DBOS.step()
def note(item: str) -> None:
    with psycopg.connect(DBOS.database_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO msg_ledger (workflow_id, item) VALUES (%s, %s)", (DBOS.workflow_id, item)
        )


@DBOS.step()
def wait_for_file() -> None:
    go = Path(os.environ["GO_FILE"])
    while not go.exists():
        time.sleep(0.02)


@DBOS.workflow()
def sleeper(seconds: float) -> float:
    started = time.time()
    DBOS.sleep(seconds)
    return time.time() - started


@DBOS.workflow()
def receiver(count: int) -> list[Any]:
    received = []
    for i in range(count):
        message = DBOS.recv("a" if i % 2 == 0 else "b", timeout_seconds=60)
        if os.environ.get("KILL_AT") == f"after-recv-{i + 1}":
            os.kill(os.getpid(), signal.SIGKILL)
        note(str(message))
        received.append(message)
    return received


@DBOS.workflow()
def recv_timeout(timeout: float) -> Any:
    message = DBOS.recv("t", timeout_seconds=timeout)
    note(f"received {message!r}")
    wait_for_file()
    return message


@DBOS.workflow()
def event_reader(target: str) -> Any:
    value = DBOS.get_event(target, "k", timeout_seconds=10)
    note(f"read {value!r}")
    wait_for_file()
    return value


@DBOS.workflow()
def event_setter() -> None:
    DBOS.set_event("k", "first")
    DBOS.recv("go", timeout_seconds=60)
    DBOS.set_event("k", "second")


WORKFLOWS = {
    "sleeper": sleeper,
    "receiver": receiver,
    "recv_timeout": recv_timeout,
    "event_reader": event_reader,
}


def main() -> None:
    action, name, db_url, workflow_id, *rest = sys.argv[1:]
    DBOS(config={"name": "msg", "database_url": db_url, "application_version": "msg-v1"})
    DBOS.launch()
    try:
        if action == "start":
            arg = json.loads(rest[0]) if rest else None
            with SetWorkflowID(workflow_id):
                handle = DBOS.start_workflow(WORKFLOWS[name], arg)
            print("STARTED", flush=True)
            result = handle.get_result()
        else:
            result = DBOS.retrieve_workflow(workflow_id).get_result()
        print(json.dumps(result), flush=True)
    finally:
        DBOS.destroy()


if __name__ == "__main__":
    main()

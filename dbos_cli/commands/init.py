"""`dbos init [NAME]`: a runnable starter app (a workflow, steps and a queue) and its dbos.toml."""

from __future__ import annotations

import re
import shlex
import shutil
import sys
from pathlib import Path
from typing import Annotated

import typer

from dbos_cli import render
from runtime.errors import DBOSConfigError

APP_PY = '''"""{name}: a starter app for durable workflows.

Run it with `dbos start`. Kill it at any moment (even with kill -9) and start it again: every
workflow resumes from its last completed step.
"""

import time

from runtime import DBOS, Queue, SetWorkflowID

queue = Queue("work", concurrency=2)


@DBOS.step()
def fetch(item: int) -> int:
    time.sleep(0.5)  # stands for a call to another service
    print(f"  fetched item {{item}}", flush=True)
    return item * 10


@DBOS.step()
def store(item: int, value: int) -> None:
    print(f"  stored item {{item}} = {{value}}", flush=True)


@DBOS.workflow()
def process(item: int) -> int:
    value = fetch(item)
    store(item, value)
    return value


@DBOS.workflow()
def batch(items: list[int]) -> int:
    handles = [queue.enqueue(process, item) for item in items]
    return sum(h.get_result() for h in handles)


def main() -> None:
    with SetWorkflowID("first-batch"):  # the ID makes this start idempotent across restarts
        total = DBOS.start_workflow(batch, [1, 2, 3, 4]).get_result()
    print(f"batch done: total {{total}}", flush=True)
'''

DBOS_TOML = """[app]
name = "{name}"
module = "app"          # what `dbos start` imports

[database]
# With no URL, `dbos start` uses an embedded Postgres with its data in .dbos/pgdata.
# url = "postgresql://user:${{DB_PASSWORD}}@localhost:5432/{name}"

[runtime]
executor_id = "local"
"""

GITIGNORE = ".dbos/\n__pycache__/\n"


def init(
    name: Annotated[
        str, typer.Argument(help="Name of the app and of the folder to create.")
    ] = "dbos-app",
) -> None:
    """Create a folder with a runnable starter app (a workflow, steps, a queue) and dbos.toml."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
        raise DBOSConfigError(
            f"invalid app name {name!r}: use letters, digits, '-', '_' or '.', "
            "starting with a letter or digit"
        )
    folder = Path(name)
    if folder.exists() and any(folder.iterdir()):
        raise DBOSConfigError(f"folder {name} exists and is not empty; choose another name")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "app.py").write_text(APP_PY.format(name=name))
    (folder / "dbos.toml").write_text(DBOS_TOML.format(name=name))
    (folder / ".gitignore").write_text(GITIGNORE)
    render.success(f"Created {name}/ with app.py and dbos.toml")
    render.info(f"Next: cd {shlex.quote(name)} && {_dbos_command()} start")


def _dbos_command() -> str:
    """How to run this `dbos` from anywhere: ``dbos`` when that is what the PATH finds (an
    activated venv, pipx, uv tool), else this executable's full path (e.g. .venv/bin/dbos run
    without activating), so that the printed next step works as printed."""
    me = Path(sys.argv[0])
    found = shutil.which("dbos")
    if me.name != "dbos" or not me.is_file():
        return "dbos"  # run some other way (python -m, a test): nothing better to say
    if found is not None and Path(found).resolve() == me.resolve():
        return "dbos"
    return shlex.quote(str(me.resolve()))


def register(app: typer.Typer) -> None:
    """Add the command to the root app."""
    app.command("init")(init)

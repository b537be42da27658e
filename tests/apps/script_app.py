"""The README's first example as a script: launch, run one workflow, and exit without calling
``DBOS.destroy()`` (the interpreter's exit stops the runtime). Configured from the environment.
With ``exit-in-step``, it exits while a workflow is inside a long step instead."""

from __future__ import annotations

import sys
import threading
import time

from runtime import DBOS

in_step = threading.Event()


@DBOS.step()
def long_step() -> None:
    in_step.set()
    time.sleep(30)


@DBOS.workflow()
def long_workflow() -> None:
    long_step()


@DBOS.step()
def greet(name: str) -> str:
    return f"hello {name}"


@DBOS.workflow()
def hello(name: str) -> str:
    return greet(name)


if __name__ == "__main__":
    DBOS.launch()
    if sys.argv[1:] == ["exit-in-step"]:
        DBOS.start_workflow(long_workflow)
        in_step.wait(10)
    else:
        print(DBOS.start_workflow(hello, "world").get_result(), flush=True)

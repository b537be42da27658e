"""The README's first example as a script: launch, run one workflow, and exit without calling
``DBOS.destroy()`` (the interpreter's exit stops the runtime). Configured from the environment."""

from __future__ import annotations

from runtime import DBOS


@DBOS.step()
def greet(name: str) -> str:
    return f"hello {name}"


@DBOS.workflow()
def hello(name: str) -> str:
    return greet(name)


if __name__ == "__main__":
    DBOS.launch()
    print(DBOS.start_workflow(hello, "world").get_result(), flush=True)

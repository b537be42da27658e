"""`dbos start [MODULE]`: import the app, launch the runtime, serve until SIGINT or SIGTERM."""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from types import FrameType, ModuleType
from typing import Annotated

import typer

from dbos_cli import render
from dbos_cli.options import DbUrl, settings
from runtime.embedded import EmbeddedPostgres
from runtime.errors import (
    DBOSAwaitedWorkflowCancelledError,
    DBOSConfigError,
    DBOSException,
    DBOSWorkflowCancelledError,
)

# The apps this process imported (``import_app``): the `dbos` script then ends with the
# interpreter's normal teardown, which an app may rely on (``dbos_cli.app.run``).
imported_apps: list[str] = []


def import_app(target: str) -> ModuleType:
    """Import a dotted module, or a .py file by path (its folder goes on sys.path, as `python
    file.py` would do)."""
    imported_apps.append(target)
    path = Path(target)
    try:
        if target.endswith(".py") or path.is_file():
            if not path.is_file():
                raise DBOSConfigError(f"app module file {target} does not exist")
            folder = str(path.resolve().parent)
            if folder not in sys.path:
                sys.path.insert(0, folder)
            spec = importlib.util.spec_from_file_location(path.stem, path.resolve())
            if spec is None or spec.loader is None:
                raise DBOSConfigError(f"cannot load {target} as a Python module")
            module = importlib.util.module_from_spec(spec)
            sys.modules[path.stem] = module
            spec.loader.exec_module(module)
            return module
        if str(Path.cwd()) not in sys.path:
            sys.path.insert(0, str(Path.cwd()))
        return importlib.import_module(target)
    except DBOSException:
        raise
    except ModuleNotFoundError as exc:
        if exc.name and target.startswith(exc.name):
            raise DBOSConfigError(f"no module named {target!r} (from {Path.cwd()})") from exc
        raise DBOSException(f"importing {target} failed: {exc!r}") from exc
    except Exception as exc:
        raise DBOSException(
            f"importing {target} failed: {exc!r} (use --debug for the traceback)"
        ) from exc


def _setup_logging() -> None:
    from rich.logging import RichHandler

    handler = RichHandler(show_path=False, rich_tracebacks=True, markup=False)
    handler.setFormatter(logging.Formatter("%(message)s", datefmt="[%X]"))
    log = logging.getLogger("dbos")
    log.handlers[:] = [handler]
    log.setLevel(logging.INFO)
    log.propagate = False


def start(
    module: Annotated[
        str | None,
        typer.Argument(
            help="The app: a dotted module or a path to a .py file (default: [app] module of the "
            "config file).",
            show_default=False,
        ),
    ] = None,
    db_url: DbUrl = None,
) -> None:
    """Import the app, launch the runtime (migrate, recover, run), and serve until stopped.

    In-flight workflows resume on the next start. A second Ctrl-C exits at once."""
    s = settings()
    target = module or s.module
    if not target:
        raise DBOSConfigError(
            "no app module: pass one (`dbos start app.py`) or set [app] module in dbos.toml"
        )
    if db_url:
        os.environ["DBOS_DATABASE_URL"] = db_url  # below an explicit config dict, as documented
    _setup_logging()

    stop = threading.Event()
    signals = {"count": 0}

    def on_signal(signum: int, frame: FrameType | None) -> None:
        signals["count"] += 1
        if signals["count"] > 1:
            render.warning("second interrupt: exiting now")
            os._exit(130)
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    from runtime import DBOS

    app = import_app(target)
    DBOS()  # the app may have configured it already; else from the environment and config file
    DBOS.launch()
    logging.getLogger("dbos").info("serving %s (Ctrl-C to stop)", target)
    embedded = _embedded_data(s.project_dir, DBOS.database_url)
    app_main = getattr(app, "main", None)
    failures: list[BaseException] = []

    def run_main() -> None:
        # In its own thread so that the first Ctrl-C stops the app even while main() is busy.
        try:
            if callable(app_main):
                app_main()
        except (DBOSAwaitedWorkflowCancelledError, DBOSWorkflowCancelledError) as exc:
            # An operator cancelled the workflow main() waits on: that is the operator's call,
            # not a crash of the app; the server goes on serving the other workflows.
            logging.getLogger("dbos").warning(
                "main() of %s ended: %s by an operator; still serving", target, exc
            )
        except BaseException as exc:
            failures.append(exc)
            logging.getLogger("dbos").exception("main() of %s failed", target)
            stop.set()

    threading.Thread(target=run_main, name="dbos-app-main", daemon=True).start()
    try:
        while not stop.wait(0.5):
            pass
    finally:
        logging.getLogger("dbos").info(
            "shutting down: running workflows stop after their current step (up to %.0f s) and "
            "resume in another executor or at the next start",
            STEP_GRACE_S,
        )
        DBOS.destroy(workflow_completion_timeout_sec=0, step_grace_sec=STEP_GRACE_S)
        if embedded is not None:
            logging.getLogger("dbos").info(
                "the embedded Postgres (data in %s) keeps running for the next start; "
                "`dbos postgres stop` stops it",
                embedded,
            )
    if failures:
        raise DBOSException(f"main() of {target} failed: {failures[0]!r}")


def _embedded_data(project_dir: Path, database_url: str) -> Path | None:
    """The data folder of the project's embedded Postgres when the app runs on it (no database
    configured), else None."""
    server = EmbeddedPostgres.for_project(project_dir)
    if server.status().port is None:
        return None
    return server.data_dir if database_url == server.url() else None


# On SIGTERM or Ctrl-C, how long the steps in progress get to end before the process exits: a step
# cut off mid-way runs again elsewhere, so ending it here is better, within the ~30 s that process
# managers (systemd, Kubernetes) give a stopping process.
STEP_GRACE_S = 10.0


def register(app: typer.Typer) -> None:
    """Add the command to the root app."""
    app.command("start")(start)

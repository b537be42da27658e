"""The root of the `dbos` command: global options, command groups, and the mapping of our errors to
one line on stderr and an exit code (1 for errors, 2 for usage errors)."""

from __future__ import annotations

import atexit
import copy
import inspect
import logging
import os
import sys
import threading
from typing import Annotated, Any, NoReturn

import typer
import typer.main

from dbos_cli import render
from dbos_cli.commands import check_replay as check_replay_cmd
from dbos_cli.commands import executors as executors_cmd
from dbos_cli.commands import gc as gc_cmd
from dbos_cli.commands import init as init_cmd
from dbos_cli.commands import migrate as migrate_cmd
from dbos_cli.commands import postgres as postgres_cmd
from dbos_cli.commands import schedule as schedule_cmd
from dbos_cli.commands import start as start_cmd
from dbos_cli.commands import stream as stream_cmd
from dbos_cli.commands import ui as ui_cmd
from dbos_cli.commands import versions as versions_cmd
from dbos_cli.commands import workflow as workflow_cmd
from runtime.errors import DBOSException

app = typer.Typer(
    name="dbos",
    help="Operate durable workflows on Postgres: migrate the system tables, run an app, and "
    "inspect, cancel, resume or fork its workflows.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode="rich",
)


def package_version() -> str:
    """The installed version of this distribution."""
    from importlib.metadata import PackageNotFoundError, version  # only --version needs it

    try:
        return version("dbos-runtime")
    except PackageNotFoundError:
        return "unknown"


def _version_callback(value: bool) -> None:
    if value:
        sys.stdout.write(f"dbos {package_version()}\n")
        raise typer.Exit()


@app.callback()
def root(
    version_: Annotated[
        bool,
        typer.Option(
            "--version",
            help="Show the version and exit.",
            callback=_version_callback,
            is_eager=True,
        ),
    ] = False,
    debug: Annotated[
        bool, typer.Option("--debug", help="Show tracebacks and debug logs on errors.")
    ] = False,
) -> None:
    """Operate durable workflows on Postgres."""
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING)
    if not debug:
        # The pool's retries log a warning block per attempt; the command's own error says it
        # once (see options.system_url).
        logging.getLogger("psycopg.pool").setLevel(logging.ERROR)


def _reflowed(text: str | None) -> str | None:
    """A docstring's paragraphs each on one line: Typer's Rich help keeps a docstring's line
    breaks, which then land mid-sentence at any terminal width."""
    if not text:
        return text
    paragraphs = inspect.cleandoc(text).split("\n\n")
    return "\n\n".join(" ".join(line.strip() for line in p.splitlines()) for p in paragraphs)


def _reflow_help(typer_app: typer.Typer) -> None:
    """``_reflowed`` help for every command and group below ``typer_app``."""
    for command in typer_app.registered_commands:
        command.help = _reflowed(command.help or inspect.getdoc(command.callback))
    for group in typer_app.registered_groups:
        sub = group.typer_instance
        if isinstance(group.help, str):  # else a Typer placeholder for "not given": kept
            group.help = _reflowed(group.help)
        if sub is not None:
            if isinstance(sub.info.help, str):
                sub.info.help = _reflowed(sub.info.help)
            _reflow_help(sub)


init_cmd.register(app)
start_cmd.register(app)
migrate_cmd.register(app)
postgres_cmd.register(app)
workflow_cmd.register(app)
stream_cmd.register(workflow_cmd.group)
check_replay_cmd.register(workflow_cmd.group)
gc_cmd.register(workflow_cmd.group)
executors_cmd.register(app)
schedule_cmd.register(app)
ui_cmd.register(app)
versions_cmd.register(app)
_reflow_help(app)


# Typer's click (its own copy in newer Typer, the click package in older ones): its exceptions.
_CLICK_ERRORS = {c.__name__: c for c in typer.BadParameter.__mro__}
_UsageError: type[Exception] = _CLICK_ERRORS["UsageError"]
_ClickException: type[Exception] = _CLICK_ERRORS["ClickException"]


def _command_path(args: list[str]) -> str:
    """``dbos`` and the command words at the start of ``args`` (``dbos workflow list``)."""
    command: Any = typer.main.get_command(app)
    path = ["dbos"]
    for word in args:
        command = getattr(command, "commands", {}).get(word)
        if command is None:
            break
        path.append(word)
    return " ".join(path)


def _usage_error(exc: Exception, args: list[str]) -> NoReturn:
    """One line for a command line that does not parse, naming the help to read: exit 2 for an
    unknown option or a missing argument, 1 for a value ``dbos_cli.checks`` refuses."""
    ctx = getattr(exc, "ctx", None)
    where = ctx.command_path if ctx is not None else _command_path(args)
    message = exc.format_message()  # type: ignore[attr-defined]
    if message:  # none: a group run bare, whose help is already shown (Click's no_args_is_help)
        render.error(f"{message} (see `{where} --help`)")
    sys.exit(getattr(exc, "exit_code", 2))


def _name(info: Any) -> str | None:
    """The command-line word of a registered command or group."""
    if getattr(info, "name", None):
        return str(info.name)
    sub = getattr(info, "typer_instance", None)
    if sub is not None and isinstance(sub.info.name, str):
        return sub.info.name
    callback = getattr(info, "callback", None)
    return None if callback is None else typer.main.get_command_name(callback.__name__)


def _narrowed(args: list[str]) -> typer.Typer:
    """``app`` with only the command or group that ``args`` names (its first word; the root's
    options take no value), or all of ``app`` when it names none (``dbos --help``, a typo):
    Typer builds the Click command of every registered command, with its signature and type
    hints, on each run; building one group's instead takes a third of that off every command
    (about 15 ms on this machine)."""
    word = next((a for a in args if not a.startswith("-")), None)
    if word is not None and "--help" in args[: args.index(word)]:
        return app  # `dbos --help workflow` is the root's help: every command in it
    commands = [c for c in app.registered_commands if _name(c) == word]
    groups = [g for g in app.registered_groups if _name(g) == word]
    if not commands and not groups:
        return app
    narrow = copy.copy(app)
    narrow.registered_commands = commands
    narrow.registered_groups = groups
    return narrow


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point. A usage error is one line on stderr and exit 2 (a refused
    value: exit 1, as other bad input); our errors
    are one line and exit 1, with the traceback only under --debug; a refused confirmation
    exits 1."""
    args = sys.argv[1:] if argv is None else argv
    try:
        code = _narrowed(args)(args=args, prog_name="dbos", standalone_mode=False)
    except _UsageError as exc:
        _usage_error(exc, args)
    except _ClickException as exc:
        render.error(exc.format_message())  # type: ignore[attr-defined]
        sys.exit(getattr(exc, "exit_code", 1))
    except typer.Abort:
        render.error("aborted; nothing changed")
        sys.exit(1)
    except DBOSException as exc:
        if "--debug" in args:
            raise
        render.error(str(exc))
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
    if isinstance(code, int) and not isinstance(code, bool) and code:
        sys.exit(code)


def _only_this_tool_loaded() -> bool:
    """True when no application code was loaded into this process: no command imported an app
    (`dbos start`, `check-replay`), and every module with a file is Python's own, this
    environment's installed packages or scripts (``__main__`` is the `dbos` script), or this
    tool's own packages. An app may rely on the interpreter's teardown (a module-level file it
    never closes, a temporary file deleted when collected), so a process that loaded one ends
    the normal way."""
    if start_cmd.imported_apps:
        return False
    import sysconfig

    paths = sysconfig.get_paths()
    roots = tuple(
        os.path.join(paths[key], "")
        for key in ("stdlib", "platstdlib", "purelib", "platlib", "scripts")  # scripts: `dbos`
        if key in paths
    )
    roots += tuple(
        os.path.join(os.path.dirname(str(sys.modules[name].__file__)), "")
        for name in ("runtime", "dbos_cli")
    )
    return all(
        not isinstance(file, str) or file.startswith(roots)
        for file in (getattr(module, "__file__", None) for module in list(sys.modules.values()))
    )


def _flush_std_streams() -> None:
    """Flush stdout and stderr (either may be None: a descriptor closed when the process
    started)."""
    for stream in (sys.stdout, sys.stderr):
        if stream is not None:
            stream.flush()


def run() -> None:
    """The `dbos` console script: ``main``, then, when only this tool's code ran and nothing is
    left running, the process ends without the interpreter's teardown of its ~450 modules (40-90
    ms on a 2-core machine, a tenth to a fifth of a whole `dbos workflow list`). What a normal
    exit does that matters still happens: stdout and stderr are flushed, then the atexit
    handlers run and what they wrote is flushed (a failure there exits 120, as Python's own
    final flush does). The normal exit runs instead when main ends with a message rather than
    a code, another non-daemon thread is alive (it is waited for), application code was loaded
    (``_only_this_tool_loaded``), or the first flush fails (a closed pipe: reported as before).
    ``main`` itself stays a plain function, for callers in the same process (tests)."""
    try:
        main()
        code: str | int | None = 0
    except SystemExit as exc:
        code = 0 if exc.code is None else exc.code
    if not isinstance(code, int) or not _only_this_tool_loaded():
        sys.exit(code)
    if any(t is not threading.main_thread() and not t.daemon for t in threading.enumerate()):
        sys.exit(code)
    try:
        _flush_std_streams()
    except (OSError, ValueError):
        sys.exit(code)  # before any atexit handler ran: the normal exit runs each once
    atexit._run_exitfuncs()
    try:
        _flush_std_streams()
    except (OSError, ValueError):
        code = 120
    os._exit(code)


if __name__ == "__main__":
    run()

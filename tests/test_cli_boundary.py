"""The CLI and the dashboard manage workflows through the public client API alone.

``DBOSClient`` is the one out-of-process management API: the `dbos` commands and the dashboard
import only public modules of the runtime (``runtime.client``, with the records it returns,
``runtime.errors`` and ``runtime.status``; the commands that are not management, such as `dbos
start`, `dbos init`, `dbos postgres` and `dbos migrate`, and the option resolution, also the package
root, ``runtime.config``, ``runtime.embedded`` and ``runtime.migrate``), no private name, and never
reach into the client's system database. Checked on the source, every import included: those
inside functions and under ``TYPE_CHECKING`` too."""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import runtime

CLI = Path(__file__).resolve().parent.parent / "dbos_cli"
RUNTIME = Path(runtime.__file__).resolve().parent

# What a management module (one that lists, inspects or steers workflows) may import.
MANAGEMENT_ALLOWED = {"runtime.client", "runtime.errors", "runtime.status"}
# What the other modules may import besides: running an app, scaffolding, the embedded server, the
# schema, and resolving the options that say which database a command works on.
OTHER_ALLOWED = MANAGEMENT_ALLOWED | {
    "runtime",
    "runtime.config",
    "runtime.embedded",
    "runtime.migrate",
    "runtime.replay_check",
}
MANAGEMENT_MODULES = {
    "commands/workflow.py",
    "commands/executors.py",
    "commands/gc.py",
    "render.py",
    "ui/app.py",
}
DYNAMIC_IMPORTS = {"import_module", "__import__"}


@dataclass(frozen=True)
class Violation:
    path: str
    line: int
    what: str

    def __str__(self) -> str:
        return f"dbos_cli/{self.path}:{self.line}: {self.what}"


def _private(name: str) -> bool:
    return any(
        part.startswith("_") and not (part.startswith("__") and part.endswith("__"))
        for part in name.split(".")
    )


def _is_runtime_submodule(name: str) -> bool:
    return (RUNTIME / f"{name}.py").exists() or (RUNTIME / name / "__init__.py").exists()


def _runtime_modules(node: ast.Import | ast.ImportFrom) -> list[str]:
    """The runtime modules an import statement loads (``from runtime import x`` loads
    ``runtime.x`` when x is a submodule, else it takes a name from the package root)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name == "runtime" or a.name.startswith("runtime.")]
    if node.level or node.module is None:
        return []
    if node.module == "runtime":
        return [
            f"runtime.{a.name}" if _is_runtime_submodule(a.name) else "runtime" for a in node.names
        ]
    if node.module.startswith("runtime."):
        return [node.module]
    return []


def violations(rel: str, source: str) -> list[Violation]:
    """What the module ``rel`` (its path under ``dbos_cli/``), whose text is ``source``, does
    that the boundary forbids."""
    allowed = MANAGEMENT_ALLOWED if rel in MANAGEMENT_MODULES else OTHER_ALLOWED
    found: list[Violation] = []
    for node in ast.walk(ast.parse(source, filename=rel)):
        line = getattr(node, "lineno", 0)
        if isinstance(node, ast.Import | ast.ImportFrom):
            for module in _runtime_modules(node):
                if module not in allowed:
                    found.append(Violation(rel, line, f"imports {module}"))
            names = [a.name for a in node.names]
            if isinstance(node, ast.ImportFrom) and node.module:
                names.append(node.module)
            found += [Violation(rel, line, f"imports private {n}") for n in names if _private(n)]
        elif isinstance(node, ast.Attribute) and node.attr == "sysdb":
            found.append(Violation(rel, line, "reaches into .sysdb"))
        elif isinstance(node, ast.Call):
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            texts = [
                a.value
                for a in node.args
                if isinstance(a, ast.Constant) and isinstance(a.value, str)
            ]
            if called in ("getattr", "setattr", "hasattr") and "sysdb" in texts:
                found.append(Violation(rel, line, "reaches into sysdb by name"))
            if called in DYNAMIC_IMPORTS:
                for text in texts:
                    if (text == "runtime" or text.startswith("runtime.")) and text not in allowed:
                        found.append(Violation(rel, line, f"imports {text} dynamically"))
    return found


def test_the_cli_and_the_dashboard_use_only_the_public_client_api() -> None:
    modules = {p.relative_to(CLI).as_posix(): p.read_text() for p in CLI.rglob("*.py")}
    assert set(modules) >= MANAGEMENT_MODULES
    problems = [
        str(v)
        for rel, source in sorted(modules.items())
        for v in sorted(violations(rel, source), key=lambda v: v.line)
    ]
    assert not problems, "\n".join(problems)


# Everything the check must refuse, in one management module.
FORBIDDEN = """
from typing import TYPE_CHECKING
import runtime.engine
from runtime import management, DBOS
from runtime.client import _private_helper
if TYPE_CHECKING:
    from runtime.system_db import SystemDatabase
def command(client):
    from runtime import dispatcher
    import importlib
    importlib.import_module("runtime.management")
    getattr(client, "sysdb")
    return client.sysdb.pool
"""


def test_the_check_refuses_what_it_is_meant_to() -> None:
    found = {v.what for v in violations("commands/workflow.py", FORBIDDEN)}
    assert found == {
        "imports runtime.engine",
        "imports runtime.management",
        "imports runtime",  # the package root is not for management modules
        "imports private _private_helper",
        "imports runtime.system_db",
        "imports runtime.dispatcher",
        "imports runtime.management dynamically",
        "reaches into sysdb by name",
        "reaches into .sysdb",
    }
    # A command that is not management may use the package root and the schema tools.
    allowed = "from runtime import DBOS, migrate\nfrom runtime.config import resolve\n"
    assert violations("commands/start.py", allowed) == []
    assert [v.what for v in violations("render.py", allowed)] == [
        "imports runtime",
        "imports runtime.migrate",
        "imports runtime.config",
    ]


def test_starting_the_cli_imports_no_database_driver() -> None:
    """`dbos --version` and `--help` load the command tree only: a module that imports the client
    (and with it psycopg, 0.2 s on a 2-core machine) at its top makes every command slower."""
    import subprocess
    import sys

    probe = (
        "import sys, dbos_cli.app; print(sorted(m for m in sys.modules if m.startswith('psycopg')))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=CLI.parent
    )
    assert done.stdout.strip() == "[]", done.stdout


# Counts the Click commands Typer builds (in ``built``), for a probe run in a fresh interpreter.
COUNT_BUILT = (
    "import typer.main\n"
    "built = []\n"
    "real = typer.main.get_command_from_info\n"
    "typer.main.get_command_from_info = lambda *a, **k: built.append(1) or real(*a, **k)\n"
)


def test_a_listing_loads_only_what_it_uses(db_url: str) -> None:
    """`dbos workflow list` (whole process under 0.5 s over a million rows is a target of the
    bench) does not load the modules of explanations or schedules, and builds the Click command
    of its own group only."""
    import subprocess
    import sys

    probe = (
        COUNT_BUILT + "import sys\n"
        "from dbos_cli import app\n"
        "try:\n"
        f"    app.main(['workflow', 'list', '--db-url', {db_url!r}])\n"
        "finally:\n"
        "    heavy = ('runtime.explain', 'runtime.schedules', 'runtime.scheduler')\n"
        "    print(sorted(m for m in heavy if m in sys.modules), len(built))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=CLI.parent
    )
    loaded, commands = done.stdout.strip().splitlines()[-1].rsplit(" ", 1)
    assert loaded == "[]", done.stdout
    # The workflow group's commands (list, get, steps, cancel, ...), not the other groups'.
    count_all = COUNT_BUILT + "import dbos_cli.app\ntyper.main.get_command(dbos_cli.app.app)\n"
    count_all += "print(len(built))\n"
    every = subprocess.run(
        [sys.executable, "-c", count_all],
        capture_output=True,
        text=True,
        check=True,
        cwd=CLI.parent,
    )
    assert 0 < int(commands) < int(every.stdout) - 5, (commands, every.stdout)


def test_root_help_lists_every_command_whatever_follows_it() -> None:
    """`dbos --help workflow` is the root's help (Click shows it before reaching the group): it
    lists every command, as `dbos --help` does, though the run builds one group's only."""
    import subprocess
    import sys

    def help_of(*args: str) -> str:
        probe = f"from dbos_cli import app; app.main({list(args)!r})"
        return subprocess.run(
            [sys.executable, "-c", probe],
            capture_output=True,
            text=True,
            check=True,
            cwd=CLI.parent,
            env={"COLUMNS": "120", "PATH": "/usr/bin:/bin"},
        ).stdout

    root = help_of("--help")
    assert "schedule" in root and "postgres" in root and "workflow" in root
    assert help_of("--help", "workflow") == root
    assert help_of("--debug", "--help", "queue", "list") == root


def test_a_bare_group_shows_its_help_and_no_empty_error() -> None:
    """`dbos`, `dbos workflow` and `dbos -- workflow` show the group's help and exit 2, without
    an "error:" line that has nothing to say."""
    import subprocess
    import sys

    for args in ([], ["workflow"], ["--", "workflow"], ["workflow", "queue"]):
        probe = f"from dbos_cli import app; app.main({args!r})"
        done = subprocess.run(
            [sys.executable, "-c", probe], capture_output=True, text=True, cwd=CLI.parent
        )
        assert done.returncode == 2, (args, done.stderr)
        assert "Usage:" in done.stdout and done.stderr == "", (args, done.stderr)

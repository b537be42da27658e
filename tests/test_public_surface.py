"""Invariants of the public surface: `__all__` is sorted and complete, every public name has a
docstring, and every CLI command and option has help text."""

from __future__ import annotations

import inspect

import pytest
import typer

import runtime
from dbos_cli.app import app


def test_all_is_sorted_and_complete() -> None:
    assert runtime.__all__ == sorted(runtime.__all__)
    # Every lazily exported name resolves, and nothing public is left out of __all__.
    for name in runtime.__all__:
        assert getattr(runtime, name) is not None
    public = {
        name
        for name in dir(runtime)
        if not name.startswith("_")
        and not inspect.ismodule(getattr(runtime, name))
        and name not in ("annotations", "importlib", "TYPE_CHECKING", "Any")
    }
    assert public == set(runtime.__all__)
    with pytest.raises(AttributeError):
        runtime.NoSuchName  # noqa: B018 - the lookup is the test


def test_every_public_name_has_a_docstring() -> None:
    for name in runtime.__all__:
        obj = getattr(runtime, name)
        assert inspect.getdoc(obj), f"{name} has no docstring"


def test_public_dbos_methods_have_docstrings() -> None:
    for name, member in vars(runtime.DBOS).items():
        if name.startswith("_"):
            continue
        target = getattr(member, "__func__", member)
        assert inspect.getdoc(target), f"DBOS.{name} has no docstring"


def _walk(command: object, path: str) -> list[tuple[str, object]]:
    found = [(path, command)]
    for name, sub in getattr(command, "commands", {}).items():
        found += _walk(sub, f"{path} {name}")
    return found


def test_every_command_and_option_has_help() -> None:
    root = typer.main.get_command(app)
    commands = _walk(root, "dbos")
    assert {"dbos migrate", "dbos start", "dbos postgres status"} <= {p for p, _ in commands}
    for path, command in commands:
        assert getattr(command, "help", None), f"`{path}` has no help"
        for param in getattr(command, "params", []):
            if getattr(param, "param_type_name", "") == "option":
                assert getattr(param, "help", None), f"`{path}` option {param.name} has no help"
            if getattr(param, "param_type_name", "") == "argument" and path != "dbos":
                assert getattr(param, "help", None), f"`{path}` argument {param.name} has no help"

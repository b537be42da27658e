"""Name → function map, filled by the decorators at import time and used by recovery, queues and the
scheduler to find the code of a recorded workflow."""

from __future__ import annotations

import functools
import hashlib
import inspect
import logging
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger("dbos")


@dataclass
class WorkflowInfo:
    """A registered workflow function."""

    name: str
    func: Callable[..., Any]  # the user's function, undecorated
    max_recovery_attempts: int
    # The class of a staticmethod/classmethod workflow, for display ("module:Qualname").
    class_name: str | None = None
    # An ``async def`` workflow: runs on an event loop.
    is_async: bool = False
    # For classmethods: the first argument is the class, not stored as an input but resolved from
    # class_name when the workflow is re-run.
    is_classmethod: bool = False

    @functools.cached_property
    def param_names(self) -> list[str]:
        """The names of the inputs as stored (a classmethod's class excluded), for error messages
        that name the argument; computed once, not on every start."""
        try:
            names = list(inspect.signature(self.func).parameters)
        except (TypeError, ValueError):
            return []
        return names[1:] if self.is_classmethod else names


_lock = threading.Lock()
_workflows: dict[str, WorkflowInfo] = {}


def register_workflow(info: WorkflowInfo) -> None:
    """Add (or replace: a re-imported module registers again) a workflow under its name."""
    with _lock:
        old = _workflows.get(info.name)
        if old is not None and old.func is not info.func:
            logger.debug("workflow %r registered again; the newest definition wins", info.name)
        _workflows[info.name] = info


def get_workflow(name: str) -> WorkflowInfo | None:
    """The workflow registered under ``name``."""
    return _workflows.get(name)


def workflow_names() -> list[str]:
    """Every registered workflow name, sorted."""
    return sorted(_workflows)


def application_version() -> str:
    """A hash of the source of every registered workflow: a code change gives a new version, so
    recovery never replays a workflow on code that differs from the code that started it."""
    digest = hashlib.sha256()
    for name in workflow_names():
        func = _workflows[name].func
        try:
            source = inspect.getsource(func)
        except (OSError, TypeError):
            source = func.__code__.co_code.hex()
        digest.update(name.encode())
        digest.update(b"\0")
        digest.update(source.encode())
        digest.update(b"\0")
    return digest.hexdigest()[:32]


def resolve_class(module: str, qualname: str) -> type[Any] | None:
    """The class named by a module and qualified name, if that module is loaded."""
    obj: Any = sys.modules.get(module)
    for part in qualname.split("."):
        if obj is None or part == "<locals>":
            return None
        obj = getattr(obj, part, None)
    return obj if isinstance(obj, type) else None

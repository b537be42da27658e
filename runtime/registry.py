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
from types import FunctionType
from typing import Any

from runtime.errors import DBOSException

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
    # For instance methods of a ``@DBOS.dbos_class``: the first argument is a configured instance,
    # not stored as an input but recorded as (class_name, config_name) and found again in the
    # instance registry when the workflow is re-run.
    is_instance_method: bool = False

    @functools.cached_property
    def param_names(self) -> list[str]:
        """The names of the inputs as stored (a classmethod's class excluded), for error messages
        that name the argument; computed once, not on every start."""
        try:
            names = list(inspect.signature(self.func).parameters)
        except (TypeError, ValueError):
            return []
        return names[1:] if self.is_classmethod or self.is_instance_method else names

    @functools.cached_property
    def takes_self(self) -> bool:
        """Whether the function's first parameter is named ``self``: a method of a class that was
        not registered with ``@DBOS.dbos_class`` (DBOS's own heuristic for that mistake)."""
        try:
            params = list(inspect.signature(self.func).parameters)
        except (TypeError, ValueError):
            return False
        return bool(params) and params[0] == "self"


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


# -- classes and configured instances ----------------------------------------------------------

# The attribute ``@DBOS.dbos_class`` sets on a class: the name its workflows record.
CLASS_NAME_ATTR = "dbos_class_registered_name"

_classes: dict[str, type[Any]] = {}
_instances: dict[tuple[str, str], object] = {}


def registered_class_name(cls: type[Any]) -> str:
    """The name recorded for an instance of ``cls``: the ``@DBOS.dbos_class`` name (inherited by
    an undecorated subclass, as in DBOS), else the class's qualified name."""
    name = getattr(cls, CLASS_NAME_ATTR, None)
    return name if isinstance(name, str) else cls.__qualname__


def class_name_for_class_arg(cls: type[Any]) -> str:
    """The name recorded for a classmethod's class: its ``@DBOS.dbos_class`` name when that class
    itself was decorated, else ``module:Qualname`` (found again by importing nothing new)."""
    name = cls.__dict__.get(CLASS_NAME_ATTR)
    return name if isinstance(name, str) else f"{cls.__module__}:{cls.__qualname__}"


def register_class(cls: type[Any], class_name: str | None = None) -> None:
    """Register a ``@DBOS.dbos_class``: record its name, and tell its workflows whether each is
    a static, class or instance method (the decorators under it ran before the class existed).

    Raises ``DBOSException`` when another class already holds the name (a class defined again by
    a reloaded module replaces itself)."""
    if class_name is not None and (not isinstance(class_name, str) or not class_name.strip()):
        raise DBOSException(f"class_name must be a non-empty string, not {class_name!r}")
    name = class_name if class_name is not None else cls.__qualname__
    with _lock:
        old = _classes.get(name)
        if old is not None and (old.__module__, old.__qualname__) != (
            cls.__module__,
            cls.__qualname__,
        ):
            raise DBOSException(
                f"Duplicate type registration for class {name!r}: "
                f"{old.__module__}.{old.__qualname__} already holds that name"
            )
        _classes[name] = cls
    setattr(cls, CLASS_NAME_ATTR, name)
    for attribute in list(cls.__dict__.values()):
        kind = "instance"
        if isinstance(attribute, staticmethod):
            attribute, kind = attribute.__func__, "static"
        elif isinstance(attribute, classmethod):
            attribute, kind = attribute.__func__, "class"
        elif not isinstance(attribute, FunctionType):
            continue
        # A workflow method, or the one-step workflow of a step or transaction method (what
        # ``DBOS.start_workflow(inst.step, ...)`` runs): both take the instance or class first.
        for info in _workflow_infos_of(attribute):
            info.class_name = name
            info.is_classmethod = kind == "class"
            info.is_instance_method = kind == "instance"
            info.__dict__.pop("param_names", None)  # computed again with the kind now known


def _workflow_infos_of(func: Any) -> list[WorkflowInfo]:
    # Other decorators may sit above @DBOS.workflow: walk down the functools.wraps chain.
    while func is not None:
        found = [
            info
            for attr in ("__dbos_workflow__", "__dbos_temp_workflow__")
            if isinstance(info := getattr(func, attr, None), WorkflowInfo)
        ]
        if found:
            return found
        func = getattr(func, "__wrapped__", None)
    return []


def get_class(class_name: str) -> type[Any] | None:
    """The ``@DBOS.dbos_class`` registered under ``class_name``."""
    return _classes.get(class_name)


def register_instance(inst: object, *, launched: bool = False) -> None:
    """Register a configured instance under (its class's registered name, its ``config_name``),
    where a re-run of its workflows (recovery, dequeue, resume, fork) finds it again.

    Raises ``DBOSException`` when ``config_name`` is missing, not a string, blank or holds a NUL,
    or when another object is already registered under the same class and config name."""
    config_name = getattr(inst, "config_name", None)
    # A blank name cannot be told apart or typed; Postgres text cannot hold NUL, so a workflow of
    # an instance named with one could never be recorded.
    if not isinstance(config_name, str) or not config_name.strip() or "\x00" in config_name:
        raise DBOSException(
            "a configured instance needs a config_name that is a string, neither blank nor "
            f"holding NUL characters; got {config_name!r}"
        )
    class_name = registered_class_name(type(inst))
    with _lock:
        old = _instances.get((class_name, config_name))
        if old is not None and old is not inst:
            raise DBOSException(
                f"Duplicate instance registration for class {class_name!r} instance "
                f"{config_name!r}: each configured instance of a class needs its own config_name"
            )
        _instances[(class_name, config_name)] = inst
    if launched:
        logger.warning(
            "configured instance %s of class %s was registered after DBOS was launched; "
            "workflows recovered at launch could not find it. Create configured instances "
            "before DBOS.launch()",
            config_name,
            class_name,
        )


def instance_key(inst: object) -> tuple[str, str]:
    """The (class_name, config_name) recorded for a workflow of ``inst``, which must be the
    object registered under them (else a re-run would find another object, or none).

    Raises ``DBOSException`` when ``inst`` has no ``config_name`` or is not the registered
    instance."""
    config_name = getattr(inst, "config_name", None)
    if not isinstance(config_name, str):
        raise DBOSException(
            "Function target appears to be a class instance, but does not have `config_name` "
            f"set: {type(inst).__qualname__} should subclass DBOSConfiguredInstance"
        )
    class_name = registered_class_name(type(inst))
    found = _instances.get((class_name, config_name))
    if found is not inst:
        what = "another object is" if found is not None else "no instance is"
        raise DBOSException(
            f"{what} registered as instance {config_name!r} of class {class_name!r}: a workflow "
            "of this object could not be recovered. Call DBOSConfiguredInstance.__init__ "
            "(or DBOS.register_instance) for it"
        )
    return class_name, config_name


def get_instance(class_name: str, config_name: str) -> object | None:
    """The configured instance registered under (``class_name``, ``config_name``)."""
    return _instances.get((class_name, config_name))


def forget_instances() -> None:
    """Forget every configured instance (``DBOS.destroy(destroy_registry=True)``): a test that
    creates its instances again after a destroy does not meet its previous ones."""
    with _lock:
        _instances.clear()

"""Spotting calls of clocks and random sources in a workflow's own code, during a replay check.

A workflow function is re-run from its recorded history on every recovery, so its own code (not
its steps) must take the same path each time: a value read from a clock or a random source
outside a step differs on each run. ``CallWatch`` watches one thread (``sys.setprofile``) while a
replay check runs the workflow function (whose steps never run then) and notes each such call
made by the application's own code: a frame outside this package, the standard library and the
installed packages (a library that reads the clock for its own use, such as ``logging``, is not
the workflow's choice).
"""

from __future__ import annotations

import datetime
import os
import random
import sys
import sysconfig
import time
import uuid
from pathlib import Path
from types import FrameType
from typing import Any

# Called from the C level (a profile "c_call" event names the function itself).
_BUILTINS: dict[Any, str] = {
    time.time: "time.time()",
    time.time_ns: "time.time_ns()",
    os.urandom: "os.urandom()",
    random.random: "random.random()",
    random.getrandbits: "random.getrandbits()",
    datetime.datetime.now: "datetime.now()",
    datetime.datetime.utcnow: "datetime.utcnow()",
    datetime.date.today: "date.today()",
}
# Written in Python (a "call" event carries the callee's code object).
_PYTHON: dict[Any, str] = {
    uuid.uuid1.__code__: "uuid.uuid1()",
    uuid.uuid4.__code__: "uuid.uuid4()",
    random.Random.randint.__code__: "random.randint()",
    random.Random.randrange.__code__: "random.randrange()",
    random.Random.choice.__code__: "random.choice()",
    random.Random.choices.__code__: "random.choices()",
    random.Random.uniform.__code__: "random.uniform()",
    random.Random.shuffle.__code__: "random.shuffle()",
    random.Random.sample.__code__: "random.sample()",
}

_NOT_USER = tuple(
    {
        str(Path(__file__).resolve().parent),
        *(
            str(Path(p).resolve())
            for key in ("stdlib", "platstdlib", "purelib", "platlib")
            if (p := sysconfig.get_paths().get(key))
        ),
    }
)


def user_frame(frame: FrameType) -> bool:
    """Whether ``frame`` runs the application's own code (not this runtime, the standard library
    or an installed package)."""
    filename = frame.f_code.co_filename
    if filename.startswith("<"):
        return False
    return not str(Path(filename).resolve()).startswith(_NOT_USER)


class CallWatch:
    """``with CallWatch():`` notes the clock and random calls of the application's code in this
    thread; ``found()`` lists them (``what at file:line in function``), each place once."""

    def __init__(self) -> None:
        self._found: dict[str, None] = {}
        self._previous: Any = None
        self._user: dict[str, bool] = {}

    def __enter__(self) -> CallWatch:
        self._previous = sys.getprofile()
        sys.setprofile(self._event)
        return self

    def __exit__(self, *exc: object) -> None:
        sys.setprofile(self._previous)

    def found(self) -> list[str]:
        """The calls noted, in order."""
        return list(self._found)

    def _is_user(self, frame: FrameType) -> bool:
        filename = frame.f_code.co_filename
        known = self._user.get(filename)
        if known is None:
            known = self._user[filename] = user_frame(frame)
        return known

    def _event(self, frame: FrameType, event: str, arg: Any) -> None:
        caller: FrameType | None = frame
        if event == "c_call":
            what = _BUILTINS.get(arg) if _hashable(arg) else None
        elif event == "call":
            what, caller = _PYTHON.get(frame.f_code), frame.f_back
        else:
            return
        if what is None or caller is None or not self._is_user(caller):
            return
        code = caller.f_code
        place = f"{Path(code.co_filename).name}:{caller.f_lineno} in {code.co_name}"
        self._found[f"{what} at {place}: outside a step, a recovery reads another value"] = None


def _hashable(value: Any) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True

"""What the port apps share that is not DBOS code: where a step records its side effect.

Every side-effecting step appends one JSON line to the file named by ``EFFECTS_FILE`` as its
last action, so a test can count how many times each step ran to completion, across processes.

While the file named by ``PAUSE_FILE`` exists, a step about to record its effect waits (as if the
service it calls hung). A test uses it to SIGKILL an app at a quiet moment: no step between
writing its effect and checkpointing its result, where DBOS legitimately runs a step again.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from typing import Any


def _paused() -> bool:
    pause = os.environ.get("PAUSE_FILE")
    return pause is not None and os.path.exists(pause)


def _append(app: str, what: str, key: str, extra: dict[str, Any]) -> None:
    line = json.dumps({"app": app, "what": what, "key": key, "pid": os.getpid(), **extra})
    # One write() of a whole line to an O_APPEND file: lines from concurrent threads and
    # successive processes never interleave, and a SIGKILL cannot lose a line already written.
    fd = os.open(os.environ["EFFECTS_FILE"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


def record_effect(app: str, what: str, key: str, **extra: Any) -> None:
    while _paused():
        time.sleep(0.02)
    _append(app, what, key, extra)


async def record_effect_async(app: str, what: str, key: str, **extra: Any) -> None:
    # Waits without blocking the event loop, so other workflows can still checkpoint.
    while _paused():
        await asyncio.sleep(0.02)
    _append(app, what, key, extra)

"""Steps running right now, visible from any process: the in-process registry a step enters and
leaves (a dict operation, no statement), and the read of what the executors' heartbeats
published (``dbos.executors.running_steps``, migration 13).

Visibility delay: a step is published by the first heartbeat after it has run for
``min(1 s, heartbeat interval)``; heartbeats come every quarter of ``executor_lease_seconds``
(2.5 s by default), so a step running longer than about 3.5 s is shown, and a step shown may have
ended up to one heartbeat ago (the reader drops steps whose outcome is already recorded). Short
steps are never published, so the hot path gains no statement.
"""

from __future__ import annotations

import json
import threading

from runtime import queries
from runtime.status import StepInfo
from runtime.system_db import SystemDatabase


class RunningSteps:
    """The steps this process's workflows are inside now (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._steps: dict[tuple[str, int], tuple[str, int]] = {}

    def enter(self, workflow_id: str, function_id: int, name: str, started_ms: int) -> None:
        """A step of ``workflow_id`` started (epoch ms)."""
        with self._lock:
            self._steps[(workflow_id, function_id)] = (name, started_ms)

    def leave(self, workflow_id: str, function_id: int) -> None:
        """The step ended (its outcome is being recorded), or was interrupted."""
        with self._lock:
            self._steps.pop((workflow_id, function_id), None)

    def published(self, now_ms: int, min_age_ms: int) -> str | None:
        """The JSON array the heartbeat stores: the steps running for at least ``min_age_ms``;
        None when there are none."""
        with self._lock:
            items = list(self._steps.items())
        found = [
            {"workflow_id": w, "function_id": f, "function_name": n, "started_at": t}
            for (w, f), (n, t) in items
            if now_ms - t >= min_age_ms
        ]
        return json.dumps(found) if found else None


def running_steps(sysdb: SystemDatabase, workflow_id: str) -> list[StepInfo]:
    """The steps of ``workflow_id`` that live processes published as running (see the module
    docstring for the delay): ``StepInfo`` with ``running`` True, ``started_at`` set and no
    ``completed_at``, output or error."""
    with sysdb.connection() as conn:
        rows = conn.execute(queries.SELECT_RUNNING_STEPS, {"workflow_uuid": workflow_id}).fetchall()
    # A runner fenced out by a takeover may still be inside the step its successor runs again:
    # one entry per step, the latest start.
    latest: dict[int, StepInfo] = {}
    for r in rows:
        step = StepInfo(int(r[0]), str(r[1]), started_at=int(r[2]), running=True)
        seen = latest.get(step.function_id)
        if seen is None or (seen.started_at or 0) < int(r[2]):
            latest[step.function_id] = step
    return [latest[k] for k in sorted(latest)]

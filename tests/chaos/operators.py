"""The chaos harness's operator: what people do to running work, through the real `dbos` CLI and
``DBOSClient``, at seeded random moments.

Actions: cancel, resume, cancel-then-resume (the "kick" of a stuck workflow), cancel-then-resume
of a parent together with its running children in one command each (the tree), restart and fork.
Targets are drawn from the live system tables by kind: running workflows, queued ones, parents
waiting on children, children whose parents wait, workflows sleeping or waiting in ``recv``, and
finished ones. The operator remembers what it did (which workflows it cancelled and resumed,
which it forked and from which step), so that the invariants can be checked afterwards.
(Rolling restarts are the harness's own fault, see ``harness.Executor.rolling_restart``.)
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from runtime import DBOSClient, DBOSException

DBOS_EXE = str(Path(sys.executable).with_name("dbos"))
ACTIONS = ["op_cancel", "op_resume", "op_kick", "op_tree", "op_restart", "op_fork"]

# The kinds of target, as SQL conditions on dbos.workflow_status (fixed text, no user input).
TARGETS = {
    "running": "status = 'PENDING'",
    "queued": "status = 'ENQUEUED'",
    "waiting_parent": (
        "status = 'PENDING' AND EXISTS (SELECT 1 FROM dbos.workflow_status c "
        "WHERE c.parent_workflow_id = workflow_status.workflow_uuid "
        "AND c.status IN ('PENDING', 'ENQUEUED'))"
    ),
    "awaited_child": "status = 'PENDING' AND parent_workflow_id IS NOT NULL",
    "in_recv_or_sleep": "status = 'PENDING' AND (name LIKE '%%receiver' OR name LIKE '%%family')",
    "cancelled": "status = 'CANCELLED'",
}
# Restart and fork re-run a workflow's own steps: only workflows whose inputs make a
# self-contained run (a forked receiver would wait for messages sent to its original).
REPLAYABLE = (
    "(name LIKE '%%order' OR name LIKE '%%family' OR name LIKE '%%rated' OR name LIKE '%%failing')"
)


@dataclass
class OperatorLog:
    """What the operator did."""

    actions: Counter[str] = field(default_factory=Counter)
    targets: Counter[str] = field(default_factory=Counter)
    via_cli: int = 0
    no_change: int = 0
    cancelled: dict[str, float] = field(default_factory=dict)  # workflow -> when (epoch s)
    resumed: dict[str, float] = field(default_factory=dict)
    forks: dict[str, tuple[str, int]] = field(default_factory=dict)  # new -> (original, step)
    errors: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {
            "actions": dict(self.actions),
            "targets": dict(self.targets),
            "via_cli": self.via_cli,
            "no_change": self.no_change,
            "workflows_cancelled": len(self.cancelled),
            "workflows_resumed": len(self.resumed),
            "forks_and_restarts": len(self.forks),
            "errors": self.errors[:10],
        }


class Operator:
    """Acts on the workflows of one database, half the time through the CLI."""

    def __init__(self, url: str, rng: random.Random) -> None:
        self.url = url
        self.rng = rng
        self.log = OperatorLog()

    # -- choosing ----------------------------------------------------------------------------------

    def _pick(self, condition: str) -> str | None:
        with psycopg.connect(self.url, autocommit=True, connect_timeout=5) as conn:
            row = conn.execute(
                "SELECT workflow_uuid FROM dbos.workflow_status WHERE "  # noqa: S608 (fixed text)
                + condition
                + " ORDER BY random() LIMIT 1"
            ).fetchone()
        return str(row[0]) if row else None

    def _pick_target(self, kinds: list[str]) -> tuple[str, str] | None:
        for kind in self.rng.sample(kinds, len(kinds)):
            wid = self._pick(TARGETS[kind])
            if wid is not None:
                return kind, wid
        return None

    # -- acting ------------------------------------------------------------------------------------

    def _cli(self, *args: str) -> dict[str, Any]:
        self.log.via_cli += 1
        done = subprocess.run(
            [DBOS_EXE, *args, "--db-url", self.url, "--json"],
            capture_output=True,
            text=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
        )
        if done.returncode != 0 or not done.stdout.strip():
            raise RuntimeError(f"dbos {' '.join(args)}: {done.returncode} {done.stderr.strip()}")
        found: dict[str, Any] = json.loads(done.stdout)
        return found

    def cancel(self, wid: str) -> bool:
        if self.rng.random() < 0.5:
            changed = wid in self._cli("workflow", "cancel", wid)["cancelled"]
        else:
            with DBOSClient(self.url) as client:
                changed = client.cancel_workflow(wid)
        if changed:
            self.log.cancelled[wid] = time.time()
        else:
            self.log.no_change += 1
        return changed

    def resume(self, wid: str) -> bool:
        if self.rng.random() < 0.5:
            changed = wid in self._cli("workflow", "resume", wid)["resumed"]
        else:
            try:
                with DBOSClient(self.url) as client:
                    client.resume_workflow(wid)
                changed = True
            except DBOSException as exc:
                if "not resumed" not in str(exc):
                    raise
                changed = False
        if changed:
            self.log.resumed[wid] = time.time()
        else:
            self.log.no_change += 1
        return changed

    def tree(self) -> bool:
        """Cancel a waiting parent and its running children in one command; once their runners
        have stopped (or after a moment), resume them all, parent first, back to back."""
        parent = self._pick(TARGETS["waiting_parent"])
        if parent is None:
            return False
        with psycopg.connect(self.url, autocommit=True) as conn:
            children = [
                str(w)
                for (w,) in conn.execute(
                    "SELECT workflow_uuid FROM dbos.workflow_status "
                    "WHERE parent_workflow_id = %s AND status IN ('PENDING', 'ENQUEUED')",
                    (parent,),
                ).fetchall()
            ]
            ids = [parent, *children]
            done = self._cli("workflow", "cancel", *ids)["cancelled"]
            now = time.time()
            for wid in done:
                self.log.cancelled[wid] = now
            deadline = time.monotonic() + self.rng.uniform(0.0, 3.0)
            while time.monotonic() < deadline:
                held = conn.execute(
                    "SELECT count(*) FROM dbos.workflow_status "
                    "WHERE workflow_uuid = ANY(%s) AND owner_process IS NOT NULL",
                    (done,),
                ).fetchone()
                if held == (0,):
                    break
                time.sleep(0.05)
        if done:
            with DBOSClient(self.url) as client:
                for wid in done:
                    client.resume_workflow(wid)
                    self.log.resumed[wid] = time.time()
        self.log.targets[f"tree_of_{len(ids)}"] += 1
        return True

    def fork(self, wid: str, step: int) -> str:
        if self.rng.random() < 0.5:
            if step == 1:
                new_id = str(self._cli("workflow", "restart", wid)["workflow_id"])
            else:
                new_id = str(self._cli("workflow", "fork", wid, "--step", str(step))["workflow_id"])
        else:
            with DBOSClient(self.url) as client:
                if step == 1:
                    new_id = client.restart_workflow(wid).workflow_id
                else:
                    new_id = client.fork_workflow(wid, step).workflow_id
        self.log.forks[new_id] = (wid, step)
        return new_id

    def act(self, action: str) -> bool:
        """One operator action of the given kind (one of ``ACTIONS``) on a target chosen at
        random; False when there was nothing to act on or the action failed."""
        try:
            if action == "op_cancel":
                found = self._pick_target(
                    ["running", "queued", "waiting_parent", "awaited_child", "in_recv_or_sleep"]
                )
                if found is None:
                    return False
                self.log.targets[found[0]] += 1
                self.cancel(found[1])
            elif action == "op_resume":
                # Mostly what an operator resumes (cancelled work); sometimes running or queued
                # work, which must change nothing (or start a queued one now).
                kinds = ["cancelled"] if self.rng.random() < 0.8 else ["running", "queued"]
                found = self._pick_target(kinds)
                if found is None:
                    return False
                self.log.targets[f"resume_{found[0]}"] += 1
                self.resume(found[1])
            elif action == "op_tree":
                if not self.tree():
                    return False
            elif action == "op_kick":
                found = self._pick_target(
                    ["running", "waiting_parent", "awaited_child", "in_recv_or_sleep"]
                )
                if found is None:
                    return False
                self.log.targets[found[0]] += 1
                if self.cancel(found[1]):
                    time.sleep(self.rng.uniform(0.0, 1.5))  # sometimes before the runner stops
                    self.resume(found[1])
            else:
                wid = self._pick(REPLAYABLE)
                if wid is None:
                    return False
                step = 1
                if action == "op_fork":
                    with psycopg.connect(self.url, autocommit=True) as conn:
                        row = conn.execute(
                            "SELECT coalesce(max(function_id), 0) FROM dbos.operation_outputs "
                            "WHERE workflow_uuid = %s",
                            (wid,),
                        ).fetchone()
                    step = self.rng.randint(1, int(row[0] if row else 0) + 1)
                self.log.targets["replayable"] += 1
                self.fork(wid, step)
        except Exception as exc:  # the database may be restarting: a failed action is no action
            self.log.errors.append(f"{action}: {exc}"[:300])
            return False
        self.log.actions[action] += 1
        return True

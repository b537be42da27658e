"""`dbos start` processes serving tests/apps/fleet_app.py, for the multi-executor tests (the
``fleet`` fixture in conftest)."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import psycopg

from runtime import DBOSClient
from tests.cli_helpers import DBOS as DBOS_EXE
from tests.cli_helpers import clean_env

ROOT = Path(__file__).resolve().parent.parent
LEASE = 2  # seconds: short, so that takeover is quick to observe


class Fleet:
    """`dbos start` processes serving tests/apps/fleet_app.py."""

    def __init__(self, db_url: str) -> None:
        self.db_url = db_url
        self.procs: dict[str, subprocess.Popen[str]] = {}
        self.output: dict[str, list[str]] = {}

    def start(self, name: str, vmid: str | None = None, lease: int = LEASE, **env: str) -> None:
        environment = clean_env(
            DBOS_DATABASE_URL=self.db_url,
            DBOS__VMID=vmid or name,
            DBOS_EXECUTOR_LEASE_SECONDS=str(lease),
            **env,
        )
        environment["PYTHONPATH"] = str(ROOT)
        proc = subprocess.Popen(
            [DBOS_EXE, "start", "tests/apps/fleet_app.py"],
            cwd=ROOT,
            env=environment,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert proc.stdout is not None
        lines: list[str] = []
        for line in proc.stdout:
            lines.append(line)
            if "serving" in line:
                break
        else:
            raise AssertionError("".join(lines))
        self.procs[name] = proc
        self.output[name] = lines

    def signal(self, name: str, sig: int) -> None:
        self.procs[name].send_signal(sig)

    def logs(self, name: str) -> str:
        """Everything the process printed (it must have exited)."""
        proc = self.procs[name]
        assert proc.stdout is not None
        return "".join(self.output[name]) + proc.stdout.read()

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGCONT)
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def enqueue(
        self, count: int, ops: int, seconds: float, version: str | None = None
    ) -> list[str]:
        options: dict[str, Any] = {"workflow_name": "job", "queue_name": "fleet"}
        if version:
            options["app_version"] = version
        with DBOSClient(self.db_url) as client:
            return [
                client.enqueue(options, ops, seconds).workflow_id  # type: ignore[arg-type]
                for _ in range(count)
            ]

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.db_url) as conn:
            return conn.execute(sql, params).fetchall()  # type: ignore[arg-type]

    def wait_until(self, predicate: Any, timeout: float, what: str) -> float:
        started = time.monotonic()
        while not predicate():
            if time.monotonic() - started >= timeout:
                for row in self.query(
                    "SELECT pid, state, wait_event_type, wait_event, left(query, 120) "
                    "FROM pg_stat_activity WHERE datname = current_database()"
                ):
                    print("ACTIVITY", row)
            assert time.monotonic() - started < timeout, f"timed out waiting for {what}"
            time.sleep(0.05)
        return time.monotonic() - started

    def statuses(self, ids: list[str]) -> dict[str, str]:
        rows = self.query(
            "SELECT workflow_uuid, status FROM dbos.workflow_status WHERE workflow_uuid = ANY(%s)",
            (ids,),
        )
        return {r[0]: r[1] for r in rows}

"""The ``dbos.executors`` table: each launched process's row, its heartbeat, and the list of
recent processes. Apart from ``SystemDatabase`` because its one client is executor liveness
(``runtime.executors``; ``management`` reads the list), and the heartbeat runs on a connection of
its own; like ``SystemDatabase`` it returns typed records only."""

from __future__ import annotations

from typing import Any

import psycopg

from runtime import db, queries
from runtime.records import ExecutorRecord, PeerProcess
from runtime.system_db import SystemDatabase


class ExecutorTable:
    """The executors table, through a system database's pool (or a dedicated connection)."""

    def __init__(self, sysdb: SystemDatabase) -> None:
        self.sysdb = sysdb

    def register(
        self,
        process_id: str,
        executor_id: str,
        hostname: str,
        pid: int,
        application_version: str,
        lease_ms: int,
        process_identity: str | None,
    ) -> None:
        """Record this process as a live executor (and forget long-gone ones)."""
        with self.sysdb.connection() as conn:
            conn.execute(queries.PRUNE_EXECUTORS)
            conn.execute(
                queries.REGISTER_EXECUTOR,
                {
                    "process_id": process_id,
                    "executor_id": executor_id,
                    "hostname": hostname,
                    "pid": pid,
                    "application_version": application_version,
                    "lease_ms": lease_ms,
                    "process_identity": process_identity,
                },
            )

    def dedicated_connection(self) -> psycopg.Connection[Any]:
        """A connection of its own, outside the pool: for the heartbeat, which must not wait
        behind workflows that hold every pooled connection (its lease would run out)."""
        return db.connect(self.sysdb.url, schema=self.sysdb.schema)

    def heartbeat(
        self,
        process_id: str,
        conn: psycopg.Connection[Any],
        running_steps: str | None = None,
    ) -> list[PeerProcess] | None:
        """Refresh this process's heartbeat over ``conn`` (see ``dedicated_connection``), with
        the JSON array of its long-running steps (``runtime.running_steps``); returns
        the other live processes that share its host or its executor ID, or None when this
        process's row is marked stopped (a stopped process stays stopped)."""
        with db.translated(self.sysdb.url):
            rows = conn.execute(
                queries.HEARTBEAT,
                {"process_id": process_id, "running_steps": running_steps},
            ).fetchall()
        if rows and rows[0][0] is None:
            return None
        return [PeerProcess(r[0], r[1], r[2], int(r[3]), r[4]) for r in rows if r[0] is not None]

    def mark_gone(self, process_ids: list[str], conn: psycopg.Connection[Any]) -> None:
        """Mark processes found dead (not running any more) stopped, and tell the executors."""
        if process_ids:
            with db.translated(self.sysdb.url):
                conn.execute(queries.MARK_EXECUTORS_GONE, {"process_ids": process_ids}).fetchall()

    def stop(self, process_id: str, conn: psycopg.Connection[Any]) -> None:
        """Mark this process stopped (its workflows are free to take over at once) and tell the
        other executors."""
        with db.translated(self.sysdb.url):
            conn.execute(queries.STOP_EXECUTOR, {"process_id": process_id}).fetchall()

    def list_recent(self, limit: int | None = 100) -> list[ExecutorRecord]:
        """Recent processes, newest first; ``limit`` None: every live process (no cap)."""
        return [
            ExecutorRecord(
                process_id=r[0],
                executor_id=r[1],
                hostname=r[2],
                pid=int(r[3]),
                application_version=r[4],
                lease_ms=int(r[5]),
                started_at=int(r[6]),
                last_heartbeat_at=int(r[7]),
                stopped_at=r[8],
                alive=bool(r[9]),
                pending_workflows=int(r[10]),
                found_gone=bool(r[11]),
                process_identity=r[12],
            )
            for r in self._rows(limit)
        ]

    def _rows(self, limit: int | None) -> list[tuple[Any, ...]]:
        sql = queries.LIST_LIVE_EXECUTORS if limit is None else queries.LIST_EXECUTORS
        with self.sysdb.connection() as conn:
            return conn.execute(sql, {"limit": limit}).fetchall()

"""The queue dispatcher's statements beyond the claim itself (``SystemDatabase.dequeue``): which
partitions of a partitioned queue have queued work, and turning DELAYED workflows whose delay has
passed ENQUEUED. Same pool as the system database; one statement each."""

from __future__ import annotations

from runtime import queries
from runtime.system_db import SystemDatabase


class QueueDatabase:
    """Statements of queue dispatch on the system database's pool."""

    def __init__(self, sysdb: SystemDatabase) -> None:
        self.sysdb = sysdb

    def ready_partitions(self, queue_name: str) -> list[str]:
        """The partition keys of a partitioned queue that have ENQUEUED workflows."""
        with self.sysdb.connection() as conn:
            rows = conn.execute(queries.READY_PARTITIONS, {"queue_name": queue_name}).fetchall()
        return sorted(str(r[0]) for r in rows)

    def promote_delayed(self, queue_names: list[str]) -> list[str]:
        """Make the DELAYED workflows of these queues whose delay has passed ENQUEUED (their
        place in the queue kept); returns the queues that got work."""
        if not queue_names:
            return []
        with self.sysdb.connection() as conn:
            rows = conn.execute(queries.PROMOTE_DELAYED, {"queue_names": queue_names}).fetchall()
        return [str(r[0]) for r in rows]

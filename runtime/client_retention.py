"""``DBOSClient.garbage_collect``: deleting old finished workflows from outside the application
(``dbos workflow gc`` and benchmarks use it). A part of ``DBOSClient`` of its own, so that the
client class stays within its size limit; the rules live in ``runtime.retention``."""

from __future__ import annotations

from collections.abc import Iterable

from runtime import retention
from runtime.asyncs import twin
from runtime.retention import DEFAULT_GC_BATCH_SIZE, GarbageCollection
from runtime.system_db import SystemDatabase


class ClientRetentionCalls:
    """Garbage collection through a client's system database (``self.sysdb``)."""

    sysdb: SystemDatabase

    def garbage_collect(
        self,
        cutoff_epoch_timestamp_ms: float | None,
        rows_threshold: int | None,
        *,
        batch_size: int | None = DEFAULT_GC_BATCH_SIZE,
        statuses: Iterable[str] | str | None = None,
        dry_run: bool = False,
    ) -> GarbageCollection:
        """Delete finished workflows (SUCCESS, ERROR, CANCELLED, MAX_RECOVERY_ATTEMPTS_EXCEEDED)
        created before the cutoff (epoch milliseconds; the stricter of
        ``cutoff_epoch_timestamp_ms`` and the newest ``rows_threshold`` kept) with all their
        rows, in transactions of ``batch_size`` workflows; exactly ``DBOS.garbage_collect``.
        Returns a ``GarbageCollection`` (deleted, batches, cutoff used, what was kept and why).
        Raises ``ValueError`` for bad arguments before deleting anything."""
        return retention.garbage_collect(
            self.sysdb,
            cutoff_epoch_timestamp_ms,
            rows_threshold,
            batch_size=batch_size,
            statuses=statuses,
            dry_run=dry_run,
        )

    garbage_collect_async = twin(garbage_collect)

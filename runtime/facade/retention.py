"""Garbage collection from the facade: ``DBOS.garbage_collect`` (DBOS's name and parameters),
delegating to ``runtime.retention``, the core ``DBOSClient.garbage_collect`` uses too."""

from __future__ import annotations

from collections.abc import Iterable

from runtime import retention
from runtime.asyncs import twin
from runtime.facade.base import FacadeBase
from runtime.retention import DEFAULT_GC_BATCH_SIZE, GarbageCollection


class RetentionCalls(FacadeBase):
    """Deleting old finished workflows."""

    @classmethod
    def garbage_collect(
        cls,
        cutoff_epoch_timestamp_ms: float | None,
        rows_threshold: int | None,
        *,
        batch_size: int | None = DEFAULT_GC_BATCH_SIZE,
        statuses: Iterable[str] | str | None = None,
        dry_run: bool = False,
    ) -> GarbageCollection:
        """Delete finished workflows (SUCCESS, ERROR, CANCELLED, MAX_RECOVERY_ATTEMPTS_EXCEEDED)
        created before a cutoff, with their steps, transaction outcomes, messages, events,
        idempotency keys and streams. The cutoff is the stricter of
        ``cutoff_epoch_timestamp_ms`` (epoch milliseconds) and the creation time of the
        ``rows_threshold``-th newest workflow (keep the newest N); both None: nothing happens.
        Never deletes a PENDING, ENQUEUED or DELAYED workflow, a parent while a child is
        unfinished, a child while anything still refers to it (its parent's record, or a step
        of a fork), or a cancelled workflow whose runner is still in a step: parents go first,
        their children in later batches. Deletes in transactions of ``batch_size`` workflows
        (None: one). ``statuses`` narrows to some
        finished statuses; ``dry_run`` only counts. Returns a ``GarbageCollection`` (DBOS
        returns None). Raises ``ValueError`` for bad arguments, before deleting anything::

            week_ago = int(time.time() * 1000) - 7 * 86_400_000
            DBOS.garbage_collect(week_ago, None)
        """
        return retention.garbage_collect(
            cls._rt().sysdb,
            cutoff_epoch_timestamp_ms,
            rows_threshold,
            batch_size=batch_size,
            statuses=statuses,
            dry_run=dry_run,
        )


class AsyncRetentionCalls(RetentionCalls):
    """The ``*_async`` twin of ``garbage_collect``, run in a worker thread."""

    garbage_collect_async = staticmethod(twin(RetentionCalls.garbage_collect))

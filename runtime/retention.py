"""Garbage collection of finished workflows: ``DBOS.garbage_collect`` and
``DBOSClient.garbage_collect`` (DBOS's names and parameters), and ``dbos workflow gc``.

The rules, checked in SQL on every row at the moment it is deleted (``runtime.retention_db``):

- only finished workflows go: SUCCESS, ERROR, CANCELLED, MAX_RECOVERY_ATTEMPTS_EXCEEDED, never
  PENDING, ENQUEUED, DELAYED or any status added later;
- only those created before the cutoff, the stricter (later) of ``cutoff_epoch_timestamp_ms``
  and the creation time of the ``rows_threshold``-th newest workflow;
- never a parent while one of its children is unfinished (it goes in a later collection);
- never a child while anything still refers to it: its parent's record (whatever its status), or
  a step of another workflow naming it as the child it started (a fork of its parent). Parents
  go first and their children in a later batch of the same collection, so a parent that is
  resumed, replayed or forked never looks for a child that is gone;
- never a cancelled workflow whose runner is alive and still in a step (it goes once the runner
  stopped);
- with the workflow go all its rows: steps, transaction outcomes, messages to it, idempotency
  keys, events, streams. (``dbos.executors`` is pruned by the executors themselves, at launch:
  see ``queries.PRUNE_EXECUTORS``.)

Deletion runs in batches of ``batch_size`` workflows, each its own short transaction, so a
collection never holds locks for long and a checkpoint written meanwhile waits at most one batch.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass

from runtime.retention_db import FINISHED_STATUSES, RetentionDatabase
from runtime.system_db import SystemDatabase

__all__ = [
    "DEFAULT_GC_BATCH_SIZE",
    "FINISHED_STATUSES",
    "GarbageCollection",
    "check_statuses",
    "garbage_collect",
]

#: Workflows deleted per batch (transaction) unless told otherwise. DBOS's default is 10_000;
#: ours is smaller because, measured here (200,000 finished workflows of 3 steps each, local
#: Postgres 15), a batch of 10,000 held its transaction for about 0.45 s and deleted about 11,700
#: workflows/s, while batches of 1,000 took 0.03 to 0.05 s each and deleted up to 26,600/s: the
#: cascading deletes' per-row work grows with the batch. Shorter transactions also hold their row
#: locks and WAL burst for less time beside a running workload.
DEFAULT_GC_BATCH_SIZE = 1_000


@dataclass(frozen=True)
class GarbageCollection:
    """What a garbage collection did (or, with ``dry_run``, would do).

    ``cutoff_epoch_timestamp_ms``: the cutoff used (epoch milliseconds; workflows created before
    it were eligible), None when there was nothing to collect (no cutoff, or fewer workflows than
    ``rows_threshold``). ``deleted``: workflows deleted (a dry run: that it would delete now).
    ``batches``: transactions that deleted them (0 for a dry run). Old finished workflows kept,
    by reason: ``kept_for_children`` (a child is unfinished), ``kept_for_parent`` (still
    referred to: its parent is kept, or a fork of its parent exists), ``kept_for_runner``
    (cancelled, the runner still in a step).
    ``duration_s``: wall time in seconds."""

    cutoff_epoch_timestamp_ms: int | None
    deleted: int
    batches: int
    kept_for_children: int
    kept_for_parent: int
    kept_for_runner: int
    duration_s: float
    dry_run: bool = False


def check_statuses(statuses: Iterable[str] | str | None) -> list[str]:
    """The statuses a collection may delete, from ``statuses`` (None: every finished one).
    Raises ``ValueError`` naming the status for one that is not finished (PENDING, ENQUEUED,
    DELAYED: never deleted) or unknown, and for an empty list."""
    if statuses is None:
        return list(FINISHED_STATUSES)
    wanted = [statuses] if isinstance(statuses, str) else list(statuses)
    if not wanted:
        raise ValueError("statuses is empty: give at least one finished status, or None for all")
    for status in wanted:
        if status not in FINISHED_STATUSES:
            raise ValueError(
                f"garbage collection never deletes {status!r} workflows: only finished ones "
                f"({', '.join(FINISHED_STATUSES)})"
            )
    return list(dict.fromkeys(wanted))


# Postgres's bigint: a count beyond it cannot be a LIMIT or an OFFSET.
_MAX_COUNT = 2**63 - 1


def _check_count(value: object, name: str) -> None:
    if value is not None and (
        isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= _MAX_COUNT
    ):
        raise ValueError(
            f"{name} must be a positive integer (at most {_MAX_COUNT}) or None, got {value!r}"
        )


def garbage_collect(
    sysdb: SystemDatabase,
    cutoff_epoch_timestamp_ms: float | None,
    rows_threshold: int | None,
    *,
    batch_size: int | None = DEFAULT_GC_BATCH_SIZE,
    statuses: Iterable[str] | str | None = None,
    dry_run: bool = False,
    stop: threading.Event | None = None,
    pace: float = 0.0,
) -> GarbageCollection:
    """Delete the finished workflows created before the cutoff (see the module docstring), in
    batches of ``batch_size`` (None: one transaction). Every argument is checked before anything
    is deleted: ``ValueError`` for a cutoff that is not a finite number of epoch milliseconds
    (a float is rounded up, as DBOS compares it), a ``rows_threshold`` or ``batch_size`` that is
    not a positive integer, or a status that is not a finished one.
    ``stop``: once set, no further batch starts (a shutdown ends a collection after the batch
    under way). ``pace``: after each batch, rest ``pace`` times as long as the batch took (the
    automatic collector's 1.0 halves its share of the server's WAL bandwidth)."""
    started = time.monotonic()
    cutoff = cutoff_epoch_timestamp_ms
    if cutoff is not None:
        # A float, as DBOS accepts (say, time.time() * 1000 - age): created_at < 1.5 is
        # created_at < 2 for integer milliseconds.
        if (
            isinstance(cutoff, bool)
            or not isinstance(cutoff, int | float)
            or not math.isfinite(cutoff)
            or not -_MAX_COUNT <= cutoff <= _MAX_COUNT
        ):
            raise ValueError(
                "cutoff_epoch_timestamp_ms must be a number of epoch milliseconds or None, got "
                f"{cutoff_epoch_timestamp_ms!r}"
            )
        cutoff = math.ceil(cutoff)
    _check_count(rows_threshold, "rows_threshold")
    _check_count(batch_size, "batch_size")
    wanted = check_statuses(statuses)
    store = RetentionDatabase(sysdb)
    if rows_threshold is not None:
        by_rows = store.rows_cutoff(rows_threshold)
        if by_rows is not None and (cutoff is None or by_rows > cutoff):
            cutoff = by_rows  # the stricter of the two: the later cutoff deletes more
    if cutoff is None:
        return GarbageCollection(None, 0, 0, 0, 0, 0, time.monotonic() - started, dry_run)
    deleted = batches = 0
    if not dry_run:
        while True:
            batch_started = time.monotonic()
            n = store.delete_batch(cutoff, wanted, batch_size)
            if n:
                deleted, batches = deleted + n, batches + 1
            # Until a batch finds nothing: deleting parents makes their children deletable (rows
            # another transaction held were skipped: they go next time).
            if n == 0 or (stop is not None and stop.is_set()):
                break
            if pace > 0:
                rest = pace * (time.monotonic() - batch_started)
                if stop is not None:
                    stop.wait(rest)
                else:
                    time.sleep(rest)
    census = store.census(cutoff, wanted)
    return GarbageCollection(
        cutoff,
        census.deletable if dry_run else deleted,
        batches,
        census.kept_for_children,
        census.kept_for_parent,
        census.kept_for_runner,
        time.monotonic() - started,
        dry_run,
    )

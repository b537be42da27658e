"""Group commit of checkpoints: when many workflows checkpoint at the same moment, one round trip
and one commit carry several of their step outcomes.

A checkpoint is written at once whenever fewer than ``max_in_flight`` writes are in flight, with
the single-row statement: a lone workflow pays nothing for batching. Only a write that finds every
slot busy waits, in a queue; when a write in flight ends, its slot passes to the oldest waiter,
which writes everything queued meanwhile (up to ``max_batch``) in one multi-row statement
(``runtime.checkpoint_db.RECORD_STEPS``) that keeps each row's fencing condition, and hands every
caller its own answer. Nothing is acknowledged before its commit: a caller returns only once the
statement carrying its row has committed (autocommit), so a crash loses only unacknowledged writes,
which their steps redo on recovery exactly as without batching.

A batch that the database refuses for its data (one row's text, say) is written again row by row,
so that only the row at fault gets the error; a batch that fails for a passing reason (a lost
connection, a timeout) gives every caller that error, which each one's checkpoint loop retries.
"""

from __future__ import annotations

import threading

from runtime.checkpoint_db import CheckpointWriter, StepWrite
from runtime.db import is_transient
from runtime.errors import DBOSDatabaseError
from runtime.records import RecordResult

# Writes in flight before later ones queue up to be batched. Below the pool's size (16 or more) so
# that batching never starves the other statements (starts, completions) of connections.
MAX_IN_FLIGHT = 4
# Rows in one statement at most: bounds its locks and the parameters' size.
MAX_BATCH = 64


class _Waiter:
    """A queued checkpoint: woken with its answer, or with a batch to write (then it leads)."""

    __slots__ = ("write", "woken", "batch", "result", "error")

    def __init__(self, write: StepWrite) -> None:
        self.write = write
        # Held until the waiter is woken: a bare lock is the cheapest hand-off between threads
        # (an Event builds a Condition and a fresh lock on every wait).
        self.woken = threading.Lock()
        self.woken.acquire()
        self.batch: list[_Waiter] | None = None
        self.result: RecordResult | None = None
        self.error: BaseException | None = None


class GroupCommit:
    """Checkpoint writes of one runtime, batched while others are in flight (module docstring)."""

    def __init__(
        self,
        writer: CheckpointWriter,
        *,
        max_in_flight: int = MAX_IN_FLIGHT,
        max_batch: int = MAX_BATCH,
    ) -> None:
        self.writer = writer
        self.max_in_flight = max_in_flight
        self.max_batch = max_batch
        self._lock = threading.Lock()
        self._queue: list[_Waiter] = []
        self._in_flight = 0
        # How many statements carried how many rows (batch size -> count): for tests and benches.
        self.batch_sizes: dict[int, int] = {}

    def record(self, write: StepWrite) -> RecordResult:
        """Record one outcome (``SystemDatabase.record_step``'s result); raises what its
        statement raised (``DBOSDatabaseError`` and kin)."""
        with self._lock:
            if self._in_flight < self.max_in_flight:
                self._in_flight += 1
                self.batch_sizes[1] = self.batch_sizes.get(1, 0) + 1
                waiter = None
            else:
                waiter = _Waiter(write)
                self._queue.append(waiter)
        if waiter is None:
            try:
                return self.writer.write_one(write)
            finally:
                self._pass_slot()
        waiter.woken.acquire()
        if waiter.batch is not None:  # this thread holds the slot now: it writes the batch
            try:
                self._write_batch(waiter.batch)
            finally:
                self._pass_slot()
        if waiter.error is not None:
            raise waiter.error
        assert waiter.result is not None
        return waiter.result

    def waiting(self) -> int:
        """How many writes are queued for the next batch now."""
        with self._lock:
            return len(self._queue)

    def _write_alone(self, write: StepWrite) -> RecordResult:
        self._count(1)
        return self.writer.write_one(write)

    def _pass_slot(self) -> None:
        """A write ended: its slot goes to the oldest waiter, with everything queued as its batch,
        or is freed."""
        with self._lock:
            if not self._queue:
                self._in_flight -= 1
                return
            batch = self._queue[: self.max_batch]
            del self._queue[: self.max_batch]
        leader = batch[0]
        leader.batch = batch
        leader.woken.release()

    def _write_batch(self, batch: list[_Waiter]) -> None:
        """Write ``batch`` and give each waiter its answer; never leaves one waiting."""
        try:
            if len(batch) == 1:
                self._answer_alone(batch[0])
                return
            self._count(len(batch))
            try:
                results = self.writer.write_many([w.write for w in batch])
            except DBOSDatabaseError as exc:
                if is_transient(exc):
                    for w in batch:
                        w.error = exc
                    return
                # One row's data was refused: write each alone, so only that one gets the error.
                for w in batch:
                    self._answer_alone(w)
                return
            for w, result in zip(batch, results, strict=True):
                w.result = result
        except BaseException as exc:  # whatever stopped the leader stops its batch too
            for w in batch:
                if w.result is None and w.error is None:
                    w.error = exc
            raise
        finally:
            for w in batch[1:]:
                w.woken.release()

    def _answer_alone(self, waiter: _Waiter) -> None:
        try:
            waiter.result = self._write_alone(waiter.write)
        except DBOSDatabaseError as exc:
            waiter.error = exc

    def _count(self, size: int) -> None:
        with self._lock:
            self.batch_sizes[size] = self.batch_sizes.get(size, 0) + 1

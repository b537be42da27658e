"""The SQL of garbage collection (``runtime.retention``): finding the cutoff that keeps the newest
N workflows, deleting finished workflows in short batches, and counting what a collection would
delete or keep. Apart from ``SystemDatabase`` because its one job is removing old rows, through
the same pool.

Every row of a workflow lives in a table whose foreign key to ``workflow_status`` cascades on
delete: its steps and transaction outcomes (``operation_outputs``: a transaction records its
outcome there, in the same database, never in an application-database table), the messages sent
to it (``notifications``), the idempotency keys of sends to it (``idempotent_sends``), its events
(``workflow_events``) and its streams (``streams``); attributes and debounce state are columns of
its row. So deleting the ``workflow_status`` row deletes exactly that workflow's data and nothing
of another's.
"""

from __future__ import annotations

from dataclasses import dataclass

from runtime import queries
from runtime.system_db import SystemDatabase

#: The statuses of a workflow that is done: the only ones garbage collection ever deletes. An
#: explicit list, not "anything but PENDING": a status added later (as DELAYED was) stays safe.
FINISHED_STATUSES = ("SUCCESS", "ERROR", "CANCELLED", "MAX_RECOVERY_ATTEMPTS_EXCEEDED")
_FINISHED_SQL = "('SUCCESS', 'ERROR', 'CANCELLED', 'MAX_RECOVERY_ATTEMPTS_EXCEEDED')"

# An old finished workflow of the asked statuses (alias w).
_OLD_FINISHED = f"""w.created_at < %(cutoff)s AND w.status IN {_FINISHED_SQL}
  AND w.status = ANY(%(statuses)s)"""
# A cancelled workflow whose runner is alive and still in a step (queries.SLOT_HELD_AFTER_RUN):
# that runner will still write the step's outcome, so its row must outlive it.
_HELD_BY_RUNNER = f"(w.status = 'CANCELLED' AND NOT {queries.OWNER_ABSENT})"
# A child (any workflow naming it as parent) that is not finished: the parent stays until its
# children are done, so a child's run never looks for a parent that is gone.
_HAS_LIVE_CHILD = f"""EXISTS (SELECT 1 FROM dbos.workflow_status c
    WHERE c.parent_workflow_id = w.workflow_uuid AND c.status NOT IN {_FINISHED_SQL})"""  # noqa: S608 (constant SQL text; the values are parameters)
# Still referred to as a child: its parent's record exists (whatever its status), or a step of
# another workflow names it as the child it started (the parent's step, and the copy of that step
# in every fork of the parent). A workflow goes only once nothing refers to it: a parent is
# deleted before its children (a later batch of the same collection takes them), so a replay, a
# resume or a fork of a workflow that still exists never looks for a child that is gone. Race
# free without locking relatives: a parent can only stop existing by a committed DELETE that
# re-checked its own status, so a parent resumed at any moment keeps itself, and so its children.
_REFERENCED = """(EXISTS (SELECT 1 FROM dbos.workflow_status p
        WHERE p.workflow_uuid = w.parent_workflow_id)
    OR EXISTS (SELECT 1 FROM dbos.operation_outputs o
        WHERE o.child_workflow_id = w.workflow_uuid AND o.workflow_uuid <> w.workflow_uuid))"""
_DELETABLE = (
    f"{_OLD_FINISHED} AND NOT {_HELD_BY_RUNNER} AND NOT {_HAS_LIVE_CHILD} AND NOT {_REFERENCED}"
)

# The created_at of the rows_threshold-th newest workflow (of any status, as in DBOS): what is
# older goes.
ROWS_CUTOFF = """
SELECT created_at FROM dbos.workflow_status ORDER BY created_at DESC LIMIT 1 OFFSET %(skip)s
"""

# One batch, in its own transaction. The rows are picked and locked in a MATERIALIZED CTE (FOR
# UPDATE re-reads a row changed since the statement began and re-checks the conditions; SKIP
# LOCKED leaves a row an operator is changing right now to the next collection), and the DELETE
# checks every condition again in its own WHERE: were the pick ever to return a row whose status
# changed after it was read (a resume turning CANCELLED into ENQUEUED), READ COMMITTED re-evaluates
# the DELETE's WHERE on the row's newest version, which is ENQUEUED, and the row stays. A LIMITed
# sub-select alone would delete by ID whatever the status became. Oldest first, through the
# created_at index: a scan of the table would read again, every batch, the rows earlier batches
# deleted (dead until vacuumed), while the index scan marks their entries dead on its first visit
# and skips them after (measured: 200,000 rows went about 1.3 times faster, and a batch no longer
# slowed down as the collection went on). LIMIT NULL: no limit. The DELETE finds the picked rows
# by primary key (``= ANY(ARRAY(...))``, an array computed once): joined to the CTE instead,
# Postgres may hash-join it against a scan of the whole table, every batch.
# _HAS_LIVE_CHILD reads the children as of the statement's start: a finished parent whose
# cancelled child is resumed in that same instant may go while the child runs again (a child's run
# never reads its parent's record; only `dbos workflow get` shows the parent ID it no longer
# finds). _REFERENCED needs no such caveat (see above).
DELETE_BATCH = f"""
WITH picked AS MATERIALIZED (
    SELECT w.workflow_uuid FROM dbos.workflow_status w
    WHERE {_DELETABLE}
    ORDER BY w.created_at
    LIMIT %(batch_size)s
    FOR UPDATE OF w SKIP LOCKED
)
DELETE FROM dbos.workflow_status w
WHERE w.workflow_uuid = ANY(ARRAY(SELECT workflow_uuid FROM picked)) AND {_DELETABLE}
"""  # noqa: S608 (constant SQL text; the values are parameters)

# What a collection with this cutoff would do: how many it deletes, and how many old finished ones
# it keeps, each counted under its first reason: a child still runs, a cancelled runner is still
# in a step, something still refers to it. The deletions cascade down parent links (a parent goes
# first, then its children, which then nothing refers to), so the count follows them
# recursively. A child a fork also refers to is counted as kept even when this collection
# deletes that fork too (the real run then takes it in a later batch): the one case where the
# count is lower than what goes.
COUNT = f"""
WITH RECURSIVE old AS MATERIALIZED (
    SELECT w.workflow_uuid, w.parent_workflow_id,
           {_HELD_BY_RUNNER} AS held, {_HAS_LIVE_CHILD} AS has_child,
           EXISTS (SELECT 1 FROM dbos.operation_outputs o
                   WHERE o.child_workflow_id = w.workflow_uuid
                     AND o.workflow_uuid <> w.workflow_uuid
                     AND o.workflow_uuid IS DISTINCT FROM w.parent_workflow_id) AS forked_ref
    FROM dbos.workflow_status w WHERE {_OLD_FINISHED}
), goes(workflow_uuid) AS (
    SELECT o.workflow_uuid FROM old o
    WHERE NOT o.held AND NOT o.has_child AND NOT o.forked_ref
      AND NOT EXISTS (SELECT 1 FROM dbos.workflow_status p
                      WHERE p.workflow_uuid = o.parent_workflow_id)
      AND NOT EXISTS (SELECT 1 FROM dbos.operation_outputs s
                      WHERE s.child_workflow_id = o.workflow_uuid
                        AND s.workflow_uuid <> o.workflow_uuid)
    UNION
    SELECT o.workflow_uuid FROM old o JOIN goes g ON o.parent_workflow_id = g.workflow_uuid
    WHERE NOT o.held AND NOT o.has_child AND NOT o.forked_ref
)
SELECT (SELECT count(*) FROM goes),
       count(*) FILTER (WHERE has_child),
       count(*) FILTER (WHERE NOT has_child AND NOT held
                        AND workflow_uuid NOT IN (SELECT workflow_uuid FROM goes)),
       count(*) FILTER (WHERE held AND NOT has_child)
FROM old
"""  # noqa: S608 (constant SQL text; the values are parameters)


# The records of executor processes that ended before the cutoff (stopped, found gone, or silent
# past their lease since before it) and own no unfinished workflow: one row per process ever
# launched would otherwise grow the table forever. A row still named as the owner of a PENDING,
# ENQUEUED or CANCELLED workflow stays: takeover and queue slots read it (both treat a missing
# row as an absent owner, so even then nothing would be claimed wrongly, but `why` could not say
# whose it was). A process that comes back after its row went finds its heartbeat refused and
# behaves as a stopped process; fencing keeps it from recording anything.
PRUNE_EXECUTORS = """
DELETE FROM dbos.executors e
WHERE (e.stopped_at < %(cutoff)s OR e.last_heartbeat_at + e.lease_ms < %(cutoff)s)
  AND e.last_heartbeat_at < %(cutoff)s
  AND NOT EXISTS (SELECT 1 FROM dbos.workflow_status w
                  WHERE w.owner_process = e.process_id
                    AND w.status IN ('PENDING', 'ENQUEUED', 'CANCELLED'))
"""
COUNT_PRUNABLE_EXECUTORS = PRUNE_EXECUTORS.replace(
    "DELETE FROM dbos.executors e", "SELECT count(*) FROM dbos.executors e", 1
)


@dataclass(frozen=True)
class Census:
    """Old finished workflows of the asked statuses: those a collection deletes, and those it
    keeps (a child unfinished; the parent unfinished; cancelled, with the runner still in a
    step)."""

    deletable: int
    kept_for_children: int
    kept_for_parent: int  # still referred to: its parent's record exists, or a fork's step
    kept_for_runner: int


class RetentionDatabase:
    """Garbage collection's statements, through a system database's pool."""

    def __init__(self, sysdb: SystemDatabase) -> None:
        self.sysdb = sysdb

    def rows_cutoff(self, rows_threshold: int) -> int | None:
        """The created_at (epoch ms) of the ``rows_threshold``-th newest workflow; None when
        there are not that many."""
        with self.sysdb.connection() as conn:
            row = conn.execute(ROWS_CUTOFF, {"skip": rows_threshold - 1}).fetchone()
        return None if row is None else int(row[0])

    def delete_batch(self, cutoff_ms: int, statuses: list[str], batch_size: int | None) -> int:
        """Delete up to ``batch_size`` (None: every) deletable workflow created before
        ``cutoff_ms`` in one short transaction; returns how many went."""
        params = {"cutoff": cutoff_ms, "statuses": statuses, "batch_size": batch_size}
        with self.sysdb.connection() as conn, conn.transaction():
            return conn.execute(DELETE_BATCH, params).rowcount

    def prune_executors(self, cutoff_ms: int, *, dry_run: bool = False) -> int:
        """Delete (``dry_run``: count) the records of executor processes that ended before
        ``cutoff_ms`` and own no unfinished workflow; returns how many."""
        params = {"cutoff": cutoff_ms}
        with self.sysdb.connection() as conn:
            if dry_run:
                row = conn.execute(COUNT_PRUNABLE_EXECUTORS, params).fetchone()
                return int(row[0]) if row else 0
            return conn.execute(PRUNE_EXECUTORS, params).rowcount

    def census(self, cutoff_ms: int, statuses: list[str]) -> Census:
        """Count what a collection with this cutoff deletes and keeps, now."""
        with self.sysdb.connection() as conn:
            row = conn.execute(COUNT, {"cutoff": cutoff_ms, "statuses": statuses}).fetchone()
        assert row is not None  # an aggregate always returns one row
        return Census(int(row[0]), int(row[1]), int(row[2]), int(row[3]))

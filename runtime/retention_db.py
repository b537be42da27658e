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
# in a step, something kept still refers to it. The deletions cascade along references (a parent
# goes first, then its children; a workflow that awaited another's result goes, then that one),
# so the count follows them: from the roots (nothing refers to them) along every reference
# (``edges``: a parent link, or a step naming a child) to workflows all of whose referrers are
# deletable themselves. The count can exceed what goes only when a referrer is deletable by
# these rules yet kept because of a referrer of its own; it never falls short, so a prompt built
# on it never understates a deletion.
COUNT = f"""
WITH RECURSIVE old AS MATERIALIZED (
    SELECT w.workflow_uuid, w.parent_workflow_id,
           {_HELD_BY_RUNNER} AS held, {_HAS_LIVE_CHILD} AS has_child
    FROM dbos.workflow_status w WHERE {_OLD_FINISHED}
), ok AS MATERIALIZED (
    SELECT workflow_uuid, parent_workflow_id FROM old WHERE NOT held AND NOT has_child
), edges AS MATERIALIZED (
    SELECT k.parent_workflow_id AS src, k.workflow_uuid AS dst
    FROM ok k WHERE k.parent_workflow_id IS NOT NULL
    UNION
    SELECT s.workflow_uuid, k.workflow_uuid
    FROM ok k JOIN dbos.operation_outputs s
      ON s.child_workflow_id = k.workflow_uuid AND s.workflow_uuid <> k.workflow_uuid
), followable AS MATERIALIZED (
    SELECT k.workflow_uuid FROM ok k
    WHERE NOT EXISTS (SELECT 1 FROM edges e WHERE e.dst = k.workflow_uuid
                        AND e.src NOT IN (SELECT workflow_uuid FROM ok)
                        AND EXISTS (SELECT 1 FROM dbos.workflow_status r
                                    WHERE r.workflow_uuid = e.src))
), goes(workflow_uuid) AS (
    SELECT k.workflow_uuid FROM ok k
    WHERE NOT EXISTS (SELECT 1 FROM edges e WHERE e.dst = k.workflow_uuid
                        AND EXISTS (SELECT 1 FROM dbos.workflow_status r
                                    WHERE r.workflow_uuid = e.src))
    UNION
    SELECT e.dst FROM edges e JOIN goes g ON e.src = g.workflow_uuid
    WHERE e.dst IN (SELECT workflow_uuid FROM followable)
)
SELECT (SELECT count(*) FROM goes),
       count(*) FILTER (WHERE has_child),
       count(*) FILTER (WHERE NOT has_child AND NOT held
                        AND workflow_uuid NOT IN (SELECT workflow_uuid FROM goes)),
       count(*) FILTER (WHERE held AND NOT has_child)
FROM old
"""  # noqa: S608 (constant SQL text; the values are parameters)


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

    def census(self, cutoff_ms: int, statuses: list[str]) -> Census:
        """Count what a collection with this cutoff deletes and keeps, now."""
        with self.sysdb.connection() as conn:
            row = conn.execute(COUNT, {"cutoff": cutoff_ms, "statuses": statuses}).fetchone()
        assert row is not None  # an aggregate always returns one row
        return Census(int(row[0]), int(row[1]), int(row[2]), int(row[3]))

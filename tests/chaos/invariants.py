"""The invariants of a chaos run, checked against ledgers the runtime does not write (see
``chaos_app``) and against what the operator did (see ``operators``).

1. Every workflow ends as its code says: SUCCESS, or ERROR only for ``failing`` with its own
   ValueError (never an error that was only a cancellation), or CANCELLED only when a deadline
   cancelled it (the operator's cancellations are resumed at the end of the run, and must then
   finish); nothing is left PENDING or ENQUEUED. Before that final resume, every workflow the
   operator cancelled (and did not resume) was still CANCELLED.
2. No step body started after its outcome was recorded: a completed step never runs again,
   across crashes, takeovers, cancel and resume. A fork never runs the steps it copied.
3. Every step recorded ran (except the steps a fork copied); every recorded transaction's write
   exists exactly once, and no write exists without a record.
4. Every message was received exactly once, in order; every event reader saw its event.
5. No step outcome is recorded twice.
6. Queue limits held: at no moment did more than ``ORDERS_CONCURRENCY`` unfinished workflows of
   ``chaos_orders`` have a step body running (a body that a paused runner resumes after its
   workflow was taken over and finished holds no slot), and no ``RATE_PERIOD_S`` window held
   more than ``RATE_LIMIT`` first dispatches of ``chaos_rate``.
7. Every executor is alive and heartbeating at the end, and no thread died silently.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import TYPE_CHECKING, Any

import psycopg

from runtime.queues import INTERNAL_QUEUE
from tests.chaos.chaos_app import ORDERS_CONCURRENCY, RATE_LIMIT, RATE_PERIOD_S

if TYPE_CHECKING:
    from tests.chaos.harness import Chaos

# An attempt cut short by a kill left no span: it ran at most this long (the step's own sleep
# and ledger writes). Overestimating it cannot flag a false violation: until its workflow is
# recovered and finishes, it holds its queue slot anyway.
KILLED_ATTEMPT_MS = 300

# Every workflow under a timeout (enqueued with one, or a fork or restart of one) and its
# descendants, which inherit the deadline: these may end CANCELLED.
DEADLINE_BOUND = """
WITH RECURSIVE bound(id) AS (
    SELECT workflow_uuid FROM dbos.workflow_status WHERE workflow_timeout_ms IS NOT NULL
    UNION
    SELECT w.workflow_uuid FROM dbos.workflow_status w JOIN bound b ON w.parent_workflow_id = b.id
)
SELECT id FROM bound
"""


def max_running(spans: dict[str, list[tuple[int, int]]]) -> int:
    """The largest number of workflows with a step body running at one moment."""
    events = sorted(
        (t, delta, wid)
        for wid, intervals in spans.items()
        for start, end in intervals
        for t, delta in ((start, 1), (end, -1))
    )
    open_per_wid: Counter[str] = Counter()
    peak = 0
    for _, delta, wid in events:
        open_per_wid[wid] += delta
        peak = max(peak, sum(1 for n in open_per_wid.values() if n > 0))
    return peak


def max_starts_per_period(starts: list[int], period_ms: int) -> int:
    """The largest number of starts within any window [s, s + period)."""
    starts = sorted(starts)
    peak, first = 0, 0
    for last, t in enumerate(starts):
        while starts[first] <= t - period_ms:
            first += 1
        peak = max(peak, last - first + 1)
    return peak


def check_cancelled_stayed(chaos: Chaos) -> None:
    """Before the final resume: what the operator cancelled and did not resume is CANCELLED."""
    log = chaos.operator.log
    kept = [w for w, at in log.cancelled.items() if log.resumed.get(w, 0) < at]
    with psycopg.connect(chaos.url) as conn:
        rows = conn.execute(
            "SELECT workflow_uuid, status FROM dbos.workflow_status WHERE workflow_uuid = ANY(%s)",
            (kept,),
        ).fetchall()
    moved = [(w, s) for w, s in rows if s != "CANCELLED"]
    if moved:
        chaos.report.violations.append(
            f"{len(moved)} workflows the operator cancelled left CANCELLED by themselves: "
            f"{moved[:3]}"
        )


def check(chaos: Chaos) -> None:
    """Every invariant; violations are appended to the report."""
    r = chaos.report
    v = r.violations
    forks = chaos.operator.log.forks
    with psycopg.connect(chaos.url) as conn:

        def q(sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
            return conn.execute(sql, params).fetchall()  # type: ignore[arg-type]

        # 1. final states
        statuses = dict(q("SELECT status, count(*) FROM dbos.workflow_status GROUP BY status"))
        r.workflows = sum(int(n) for n in statuses.values())
        r.final_statuses = {str(s): int(n) for s, n in statuses.items()}
        bound = {w for (w,) in q(DEADLINE_BOUND)}
        r.deadline_bound = len(bound)
        for state in ("PENDING", "ENQUEUED", "MAX_RECOVERY_ATTEMPTS_EXCEEDED"):
            if statuses.get(state):
                v.append(f"{statuses[state]} workflows left {state}")
        for wid, name, error in q(
            "SELECT workflow_uuid, name, error FROM dbos.workflow_status WHERE status = 'ERROR'"
        ):
            kind = json.loads(error).get("type") if error else None
            if not (str(name).endswith("failing") and kind == "ValueError"):
                v.append(f"workflow {name} {wid} ended ERROR: {str(error)[:200]}")
        cancelled = [
            w
            for (w,) in q(
                "SELECT workflow_uuid FROM dbos.workflow_status WHERE status = 'CANCELLED'"
            )
        ]
        r.deadline_cancelled = len(cancelled)
        stray = [w for w in cancelled if w not in bound]
        if stray:
            v.append(f"{len(stray)} workflows CANCELLED without a deadline: {stray[:3]}")

        # 2. no step body after its record; forks never run what they copied
        r.steps_recorded = int(q("SELECT count(*) FROM dbos.operation_outputs")[0][0])
        r.step_attempts = int(q("SELECT count(*) FROM chaos_attempts")[0][0])
        r.stale_attempts_refused = int(q("SELECT count(*) FROM chaos_fenced")[0][0])
        late = q(
            """
            SELECT a.workflow_id, a.function_id, count(*)
            FROM chaos_attempts a
            JOIN dbos.operation_outputs o
              ON o.workflow_uuid = a.workflow_id AND o.function_id = a.function_id
            WHERE a.attempt_at_ms > o.completed_at_epoch_ms
            GROUP BY 1, 2
            """
        )
        if late:
            v.append(
                f"{len(late)} step attempts started after the step's outcome was recorded, "
                f"e.g. {late[:3]}"
            )

        def copied(wid: str, fid: int) -> bool:
            return wid in forks and fid < forks[wid][1]

        ran_copies = [
            (w, f)
            for w, f in q("SELECT workflow_id, function_id FROM chaos_attempts")
            if copied(w, int(f))
        ]
        if ran_copies:
            v.append(f"{len(ran_copies)} forks ran a step they had copied: {ran_copies[:3]}")

        # 3. steps recorded ran; transactions exactly once
        phantom = [
            (w, f)
            for w, f in q(
                """
                SELECT o.workflow_uuid, o.function_id FROM dbos.operation_outputs o
                WHERE o.function_name LIKE '%%step_op'
                  AND NOT EXISTS (SELECT 1 FROM chaos_attempts a
                                  WHERE a.workflow_id = o.workflow_uuid
                                    AND a.function_id = o.function_id)
                """
            )
            if not copied(w, int(f))
        ]
        if phantom:
            v.append(f"{len(phantom)} steps recorded without ever running, e.g. {phantom[:3]}")
        tx_recorded = {
            (w, f)
            for w, f in q(
                "SELECT workflow_uuid, function_id FROM dbos.operation_outputs "
                "WHERE function_name LIKE '%%tx_op'"
            )
            if not copied(w, int(f))
        }
        tx_rows = Counter((w, f) for w, f in q("SELECT workflow_id, function_id FROM chaos_tx"))
        r.transactions = len(tx_recorded)
        dupes = [k for k, n in tx_rows.items() if n > 1]
        orphans = [k for k in tx_rows if k not in tx_recorded]
        missing = [k for k in tx_recorded if k not in tx_rows]
        if dupes:
            v.append(f"{len(dupes)} transactions committed more than once, e.g. {dupes[:3]}")
        if orphans:
            v.append(f"{len(orphans)} transaction writes without a recorded outcome: {orphans[:3]}")
        if missing:
            v.append(
                f"{len(missing)} recorded transactions whose writes are missing: {missing[:3]}"
            )

        # 4. messages and events
        results = dict(
            q(
                "SELECT workflow_uuid, output FROM dbos.workflow_status "
                "WHERE name LIKE '%%receiver' OR name LIKE '%%event_reader'"
            )
        )
        for wid, count in chaos.receivers.items():
            got = json.loads(results[wid]) if results.get(wid) else None
            expected = [f"{wid}:{k}" for k in range(count)]
            r.messages += count
            if got != expected:
                v.append(f"receiver {wid} got {got}, expected {expected}")
        left = q("SELECT count(*) FROM dbos.notifications")[0][0]
        if left:
            v.append(f"{left} messages never received")
        for wid in chaos.event_readers:
            if results.get(wid) and json.loads(results[wid]) != "half":
                v.append(f"event reader {wid} saw {results[wid]}")

        # 5. no outcome twice
        twice = q(
            "SELECT workflow_uuid, function_id FROM dbos.operation_outputs "
            "GROUP BY 1, 2 HAVING count(*) > 1"
        )
        if twice:
            v.append(f"step outcomes recorded twice: {twice[:3]}")

        # 6. queue limits, from the ledgers
        spans: dict[str, list[tuple[int, int]]] = {}
        for wid, start, end, completed in q(
            """
            SELECT a.workflow_id, a.attempt_at_ms, s.ended_ms, w.completed_at_epoch_ms
            FROM chaos_attempts a
            JOIN dbos.workflow_status w ON w.workflow_uuid = a.workflow_id
            LEFT JOIN chaos_spans s
              ON s.workflow_id = a.workflow_id AND s.function_id = a.function_id
             AND s.started_ms = a.attempt_at_ms
            WHERE w.queue_name = 'chaos_orders'
            """
        ):
            end_ms = int(end) if end is not None else int(start) + KILLED_ATTEMPT_MS
            if completed is not None:
                # A body still running after its workflow finished is a stale runner's (paused,
                # then fenced: another runner took over and finished): it holds no slot.
                end_ms = min(end_ms, int(completed))
            if end_ms > int(start):
                spans.setdefault(str(wid), []).append((int(start), end_ms))
        r.orders_max_running = max_running(spans)
        if r.orders_max_running > ORDERS_CONCURRENCY:
            v.append(
                f"chaos_orders ran {r.orders_max_running} workflows at once "
                f"(concurrency {ORDERS_CONCURRENCY})"
            )
        moved = int(
            q(
                "SELECT count(*) FROM dbos.workflow_status WHERE queue_name = %s "
                "AND name LIKE '%%order' AND forked_from IS NULL",
                (INTERNAL_QUEUE,),
            )[0][0]
        )
        r.orders_moved_off_queue = moved  # resumed while ENQUEUED: started at once, by contract
        starts = [int(s) for (s,) in q("SELECT started_ms FROM chaos_dispatches")]
        r.rate_dispatches = len(starts)
        r.rate_max_starts = max_starts_per_period(starts, int(RATE_PERIOD_S * 1000))
        if r.rate_max_starts > RATE_LIMIT:
            v.append(
                f"chaos_rate started {r.rate_max_starts} workflows within {RATE_PERIOD_S} s "
                f"(limit {RATE_LIMIT})"
            )

        # 7. executors healthy
        alive = q(
            "SELECT executor_id FROM dbos.executors WHERE stopped_at IS NULL "
            "AND last_heartbeat_at > (extract(epoch FROM clock_timestamp()) * 1000) - lease_ms"
        )
        live_ids = {a for (a,) in alive}
        for executor in chaos.executors:
            if not executor.alive() or executor.name not in live_ids:
                v.append(f"executor {executor.name} is not alive and heartbeating at the end")

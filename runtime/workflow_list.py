"""The statement behind ``list_workflows``: its SELECT, the fixed filter fragments its WHERE clause
is composed from, and the builder that composes them. Kept apart from ``runtime.queries`` (the
other statements) so that each stays small; ``SystemDatabase.list_workflow_statuses`` runs it."""

from __future__ import annotations

from typing import Any

from runtime import queries
from runtime.queues import INTERNAL_QUEUE

# A workflow on the internal queue (resumed, restarted, forked, scheduled) is listed as on no queue
# (a constant, not user text).
_ON_A_QUEUE = f"queue_name IS NOT NULL AND queue_name <> '{INTERNAL_QUEUE}'"

# list_workflows composes its WHERE clause from these fixed fragments (never from user text); each
# filter is served by an index of the form (column, created_at).
# Fixed fragments only (the one interpolation is a constant SQL expression); values are parameters.
LIST_WORKFLOWS_SELECT = (
    "SELECT workflow_uuid, status, name, class_name, "  # noqa: S608
    "CASE WHEN %(load_input)s THEN inputs END, "
    "CASE WHEN %(load_output)s THEN output END, "
    "CASE WHEN %(load_output)s THEN error END, "
    "executor_id, application_version, queue_name, recovery_attempts, created_at, updated_at, "
    "parent_workflow_id, forked_from, priority, deduplication_id, workflow_timeout_ms, "
    "workflow_deadline_epoch_ms, started_at_epoch_ms, completed_at_epoch_ms, config_name, "
    "queue_partition_key, delay_until_epoch_ms, "
    + queries.WAS_FORKED_FROM
    + ", attributes, schedule_name FROM dbos.workflow_status"
)
LIST_FILTERS = {
    "workflow_ids": "workflow_uuid = ANY(%(workflow_ids)s)",
    "status": "status = ANY(%(status)s)",
    "name": "name = %(name)s",
    "app_version": "application_version = %(app_version)s",
    "queue_name": "queue_name = %(queue_name)s",
    "start_time": "created_at >= %(start_time)s",
    "end_time": "created_at <= %(end_time)s",
    "queued_only": _ON_A_QUEUE + " AND status IN ('DELAYED', 'ENQUEUED', 'PENDING')",
    # DBOS 2.x's filters. A key ending in ``_any`` takes a list; a single value uses the plain key,
    # whose equality the (column, created_at) index serves with the listing's order.
    "name_any": "name = ANY(%(name_any)s)",
    "app_version_any": "application_version = ANY(%(app_version_any)s)",
    "queue_name_any": "queue_name = ANY(%(queue_name_any)s)",
    "in_queue": _ON_A_QUEUE,
    "executor_id": "executor_id = %(executor_id)s",
    "executor_id_any": "executor_id = ANY(%(executor_id_any)s)",
    "forked_from": "forked_from = %(forked_from)s",
    "forked_from_any": "forked_from = ANY(%(forked_from_any)s)",
    "parent_workflow_id": "parent_workflow_id = %(parent_workflow_id)s",
    "parent_workflow_id_any": "parent_workflow_id = ANY(%(parent_workflow_id_any)s)",
    # A LIKE pattern (its own % and _ escaped by the caller), served by a text_pattern_ops index.
    "workflow_id_prefix": "workflow_uuid LIKE %(workflow_id_prefix)s",
    # LIKE ANY(patterns) is answered from no index; each prefix is instead the range of IDs
    # [lo, hi) in byte order (``id_prefix_ranges``), one range scan of the text_pattern_ops index
    # per prefix. The IDs found are gathered first (an ARRAY sub-select runs once) and the rows
    # then fetched by primary key: as a join, the planner may instead walk the whole table in
    # created_at order probing the ranges for each row.
    "workflow_id_prefix_any": (
        "workflow_uuid = ANY(ARRAY(SELECT s.workflow_uuid FROM unnest(%(id_prefix_lo)s::text[], "
        "%(id_prefix_hi)s::text[]) AS r(lo, hi) JOIN dbos.workflow_status s "
        "ON s.workflow_uuid ~>=~ r.lo AND s.workflow_uuid ~<~ r.hi))"
    ),
    "has_parent": "parent_workflow_id IS NOT NULL",
    "has_no_parent": "parent_workflow_id IS NULL",
    "is_fork": "forked_from IS NOT NULL",
    "schedule_name": "schedule_name = %(schedule_name)s",
    "schedule_name_any": "schedule_name = ANY(%(schedule_name_any)s)",
    "is_not_fork": "forked_from IS NULL",
    # Driven from the index of forks (few rows) rather than checked row by row: with another
    # filter (a status) that matches many workflows and none forked, a per-row check reads them all.
    "was_forked_from": (
        "workflow_uuid IN (SELECT f.forked_from FROM dbos.workflow_status f "
        "WHERE f.forked_from IS NOT NULL)"
    ),
    "was_not_forked_from": "NOT " + queries.WAS_FORKED_FROM,
    # No workflow records an authenticated user, an application name or a shard here (the runtime
    # has none of them), so such a filter matches nothing, as DBOS's does for workflows started
    # without one.
    "user": "false",
    "completed_after": "completed_at_epoch_ms >= %(completed_after)s",
    "completed_before": "completed_at_epoch_ms <= %(completed_before)s",
    "dequeued_after": "started_at_epoch_ms >= %(dequeued_after)s",
    "dequeued_before": "started_at_epoch_ms <= %(dequeued_before)s",
    # Containment of a JSON object (its text a parameter), answered from the GIN index.
    "attributes": "attributes @> %(attributes)s::jsonb",
    # Keyset pagination (newest first): rows older than the last one shown.
    "before": "(created_at, workflow_uuid) < (%(before_ts)s, %(before_id)s)",
    # The dashboard's page back (oldest first from the first row shown) and its name search.
    "after": "(created_at, workflow_uuid) > (%(after_ts)s, %(after_id)s)",
    "name_prefix": "name LIKE %(name_prefix)s",
}
COUNT_WORKFLOWS = "SELECT count(*) FROM dbos.workflow_status"
# A count that stops at %(at_most)s rows: its cost is that many rows, not the whole table's.
COUNT_AT_MOST = "SELECT count(*) FROM (SELECT 1 FROM dbos.workflow_status"
COUNT_AT_MOST_END = " LIMIT %(at_most)s) AS counted"
ORDER_ASC = " ORDER BY created_at ASC, workflow_uuid ASC"
ORDER_DESC = " ORDER BY created_at DESC, workflow_uuid DESC"
LIMIT_OFFSET = " LIMIT %(limit)s OFFSET %(offset)s"


# The greatest code point: no character sorts after it in UTF-8 byte order.
_MAX_CHAR = "\U0010ffff"
_SURROGATES = range(0xD800, 0xE000)


def id_prefix_ranges(prefixes: list[str]) -> dict[str, list[str]] | None:
    """The ``workflow_id_prefix_any`` filter for ``prefixes``: per prefix the half-open range
    [lo, hi) of IDs in byte order (which UTF-8 gives code point order) that start with it, as the
    parameters ``id_prefix_lo`` and ``id_prefix_hi``. ``None`` when a prefix is empty (every ID
    starts with it: no filter). hi is the prefix with its last character raised by one; a prefix
    ending in the greatest character is followed by enough of them to pass any ID
    (``serialization.MAX_IDENTIFIER_BYTES``, 1,000 bytes, at 4 bytes each)."""
    if any(p == "" for p in prefixes):
        return None
    highs = []
    for prefix in prefixes:
        last = ord(prefix[-1]) + 1
        if last in _SURROGATES:
            last = _SURROGATES.stop
        if last > ord(_MAX_CHAR):
            highs.append(prefix + _MAX_CHAR * 251)
        else:
            highs.append(prefix[:-1] + chr(last))
    return {"id_prefix_lo": list(prefixes), "id_prefix_hi": highs}


def _where(filters: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The WHERE clause (or nothing) for ``filters``, and its parameters."""
    unknown = set(filters) - set(LIST_FILTERS)
    if unknown:
        raise ValueError(f"unknown filters {sorted(unknown)}")
    where = [LIST_FILTERS[key] for key in sorted(filters)]
    params: dict[str, Any] = {}
    for key, value in filters.items():
        if isinstance(value, dict):  # a fragment with several parameters (keyset pagination)
            params.update(value)
        elif value is not True:
            params[key] = value
    return (" WHERE " + " AND ".join(where) if where else ""), params


def count_workflows_query(
    filters: dict[str, Any], at_most: int | None = None
) -> tuple[str, dict[str, Any]]:
    """``SELECT count(*)`` over the workflows ``list_workflows_query`` lists for ``filters``:
    the same WHERE clause, without order or page; with ``at_most``, a count that stops there
    (reads at most that many rows)."""
    where, params = _where(filters)
    if at_most is None:
        return COUNT_WORKFLOWS + where, params
    params["at_most"] = at_most
    return COUNT_AT_MOST + where + COUNT_AT_MOST_END, params


def list_workflows_query(
    filters: dict[str, Any],
    *,
    sort_desc: bool,
    limit: int | None,
    offset: int | None,
    load_input: bool,
    load_output: bool,
) -> tuple[str, dict[str, Any]]:
    """The statement ``list_workflow_statuses`` runs, built only from the fixed fragments of
    this module (tests EXPLAIN it to check that every filter is answered from an index)."""
    where, params = _where(filters)
    query = LIST_WORKFLOWS_SELECT + where
    query += ORDER_DESC if sort_desc else ORDER_ASC
    params.update(load_input=load_input, load_output=load_output)
    if limit is not None or offset is not None:
        query += LIMIT_OFFSET
        params.update(limit=limit, offset=offset or 0)
    return query, params

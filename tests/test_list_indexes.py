"""`dbos workflow list` over 100,000 workflows is answered from an index for every filter, and
the dispatch and recovery statements use the partial indexes made for them (issue 22 trimmed the
index set: these plans are what it had to keep)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from runtime import queries
from runtime.workflow_list import LIST_FILTERS, id_prefix_ranges, list_workflows_query
from tests.cli_helpers import dbos
from tests.conftest import TEMPLATE, _fresh_database

N = 100_000


@pytest.fixture(scope="module")
def big_db(pg_server_url: str, template_url: str) -> Iterator[str]:
    """One database of 100,000 workflows shared by this module's tests (they only read)."""
    for db_url in _fresh_database(pg_server_url, TEMPLATE):
        _fill(db_url)
        yield db_url


def _fill(db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            """
            INSERT INTO dbos.workflow_status (
                workflow_uuid, status, name, inputs, executor_id, application_version,
                queue_name, created_at, updated_at)
            SELECT 'wf-' || i,
                   (ARRAY['SUCCESS','SUCCESS','SUCCESS','ERROR','PENDING','ENQUEUED'])[1 + i %% 6],
                   'job_' || (i %% 50), '{"args":[],"kwargs":{}}', 'local', 'v' || (i %% 3),
                   CASE WHEN i %% 10 = 0 THEN 'q' || (i %% 7) END,
                   1700000000000 + i * 1000, 1700000000000 + i * 1000
            FROM generate_series(1, %s) AS i
            """,
            (N,),
        )
        # A few rows each of the rarer kinds the filters look for: forks, children, a schedule's
        # runs, attributes, a rare executor and version, a rate-limited queue's starts.
        conn.execute(
            """
            INSERT INTO dbos.workflow_status (
                workflow_uuid, status, name, inputs, executor_id, application_version,
                queue_name, created_at, updated_at, started_at_epoch_ms, completed_at_epoch_ms,
                forked_from, parent_workflow_id, schedule_name, attributes)
            SELECT 'rare-' || i, 'SUCCESS', 'rare_job', '{"args":[],"kwargs":{}}', 'rare-exec',
                   'v-rare', 'q-rare', 1600000000000 + i, 1600000000000 + i,
                   1600000000000 + i, 1600000000000 + i,
                   CASE WHEN i %% 2 = 0 THEN 'wf-5' END, CASE WHEN i %% 2 = 1 THEN 'wf-7' END,
                   'nightly', '{"team": "x"}'::jsonb
            FROM generate_series(1, %s) AS i
            """,
            (20,),
        )
        conn.execute("ANALYZE dbos.workflow_status")


CASES: list[dict[str, Any]] = [
    {},
    {"status": ["ERROR"]},
    {"workflow_ids": ["wf-5", "rare-3"]},
    {"status": ["PENDING", "ENQUEUED"]},
    {"name": "job_7"},
    {"name": "rare_job"},
    {"app_version": "v1"},
    {"app_version": "v-rare"},
    {"queue_name": "q3"},
    {"queue_name": "q-rare"},
    {"start_time": 1700000000000 + 50_000_000},
    {"end_time": 1700000000000 + 1_000_000},
    {"queued_only": True},
    {"before": {"before_ts": 1700000000000 + 50_000_000, "before_id": "wf-50000"}},
    {"after": {"after_ts": 1700000000000 + 50_000_000, "after_id": "wf-50000"}},
    # DBOS 2.x's filters (runtime.management turns workflow_id_prefix into this LIKE pattern).
    {"workflow_id_prefix": "wf-4321%"},
    {"workflow_id_prefix_any": id_prefix_ranges(["wf-4321", "rare-1"])},
    {"forked_from": "wf-5"},
    {"forked_from_any": ["wf-5", "wf-6"]},
    {"parent_workflow_id": "wf-7"},
    {"parent_workflow_id_any": ["wf-7", "wf-8"]},
    {"executor_id": "local"},
    {"executor_id": "elsewhere"},
    {"executor_id_any": ["rare-exec", "elsewhere"]},
    {"name_any": ["rare_job", "job_none"]},
    {"app_version_any": ["v-rare", "v-none"]},
    {"queue_name_any": ["q-rare", "q-none"]},
    {"in_queue": True},
    {"was_forked_from": True, "status": ["ERROR"]},
    {"was_not_forked_from": True},
    {"has_parent": True},
    {"has_no_parent": True},
    {"is_fork": True},
    {"is_not_fork": True},
    {"schedule_name": "nightly"},
    {"schedule_name_any": ["nightly", "hourly"]},
    {"attributes": '{"team": "x"}'},
    {"user": True},
]

# Filters with no index of their own, by design: each would cost every workflow one more index
# entry on the hot path (issue 22). Range filters on completion or dequeue time; a listing with
# them is best bounded by start_time/end_time as well, which the created_at index serves.
# The dashboard's name search (name_prefix, a LIKE) is answered from the (name, created_at) index
# only under the C collation; elsewhere, and whenever the planner expects many matches, rows are
# read in created_at order until the page is full, or the table is scanned.
UNINDEXED = {
    "completed_after",
    "completed_before",
    "dequeued_after",
    "dequeued_before",
    "name_prefix",
}


def test_every_listing_filter_has_a_case() -> None:
    """A filter added to runtime.workflow_list without a case here fails this test."""
    assert set(LIST_FILTERS) - UNINDEXED == {key for case in CASES for key in case}


def _plan_nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    return [plan] + [n for child in plan.get("Plans", []) for n in _plan_nodes(child)]


# What answering one page from an index may read: a few index pages and the page's rows. A scan
# that filters its way through the table reads thousands (100,000 rows fill about 2,500 pages).
MAX_BUFFERS = 300


@pytest.mark.parametrize("filters", CASES, ids=[",".join(c) or "none" for c in CASES])
@pytest.mark.parametrize("sort_desc", [False, True], ids=["asc", "desc"])
def test_list_uses_an_index(big_db: str, filters: dict[str, Any], sort_desc: bool) -> None:
    query, params = list_workflows_query(
        filters, sort_desc=sort_desc, limit=10, offset=0, load_input=False, load_output=False
    )
    with psycopg.connect(big_db) as conn:
        row = conn.execute("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + query, params).fetchone()  # type: ignore[arg-type]
    assert row is not None
    plan = row[0][0]["Plan"]
    nodes = _plan_nodes(plan)
    scans = [n for n in nodes if n.get("Relation Name") == "workflow_status"]
    shown = json.dumps(row[0], indent=1)
    assert all(n["Node Type"] != "Seq Scan" for n in scans), shown
    assert scans or filters == {"user": True}, shown  # "user" is a constant false
    read = plan.get("Shared Hit Blocks", 0) + plan.get("Shared Read Blocks", 0)
    assert read <= MAX_BUFFERS, f"{read} buffers\n{shown}"


def test_cli_list_over_100k_workflows(big_db: str) -> None:
    started = time.monotonic()
    result = dbos("workflow", "list", "--db-url", big_db, "-d", "-S", "ERROR", "--json")
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert len(rows) == 10 and all(r["status"] == "ERROR" for r in rows)
    print(f"dbos workflow list -d -S ERROR over {N} workflows: {elapsed:.2f}s (incl. startup)")


# The statements of dispatch and recovery whose indexes migration 0016 replaced, with the index
# each must be answered from.
PLANS = [
    (
        "SELECT_PENDING_FOR_EXECUTOR",
        {"executor_id": "local", "application_version": "v1"},
        "workflow_status_live_idx",
    ),
    # The oldest first: PENDING rows in creation order, stopped at the limit.
    (
        "TAKEOVER_CANDIDATES",
        {"application_version": "v1", "process_id": "p", "limit": 100},
        "workflow_status_status_created_idx",
    ),
    ("VERSION_WORK", {}, "workflow_status_live_idx"),
    (
        "COUNT_QUEUE_STARTS",
        {"queue_name": "q3", "since_ms": 1700000000000 + 99_000_000},
        "workflow_status_queue_started_at_idx",
    ),
]


@pytest.mark.parametrize("name,params,index", PLANS, ids=[p[0] for p in PLANS])
def test_dispatch_and_recovery_use_their_index(
    big_db: str, name: str, params: dict[str, Any], index: str
) -> None:
    with psycopg.connect(big_db) as conn:
        rows = conn.execute("EXPLAIN " + getattr(queries, name), params).fetchall()
    plan = "\n".join(r[0] for r in rows)
    assert index in plan, plan
    assert "Seq Scan on workflow_status" not in plan, plan


IDS = ["a", "ab", "abc", "ab\U0010ffff", "ab\U0010ffffz", "b", "é", "éa", "\ud7ff", "\ue000x",
       "x%y", "x_y", "xzy", "\U0010ffff", "\U0010ffff\U0010ffff"]  # fmt: skip


@pytest.mark.parametrize(
    "prefixes",
    [
        ["ab", "é"],
        ["ab\U0010ffff", "x%"],
        ["\U0010ffff", "x_"],
        ["\ud7ff", "b"],
        ["", "zz"],  # an empty prefix: every ID starts with it
        ["nothing", "none"],
    ],
)
def test_prefix_ranges_select_exactly_the_ids_with_a_prefix(
    db_url: str, prefixes: list[str]
) -> None:
    ranges = id_prefix_ranges(prefixes)
    filters = {} if ranges is None else {"workflow_id_prefix_any": ranges}
    query, params = list_workflows_query(
        filters, sort_desc=False, limit=None, offset=None, load_input=False, load_output=False
    )
    with psycopg.connect(db_url) as conn:
        conn.execute(
            "INSERT INTO dbos.workflow_status (workflow_uuid, status, name, inputs) "
            "SELECT id, 'SUCCESS', 'w', '{}' FROM unnest(%s::text[]) AS id",
            (IDS,),
        )
        found = {r[0] for r in conn.execute(query, params).fetchall()}  # type: ignore[arg-type]
    assert found == {i for i in IDS if any(i.startswith(p) for p in prefixes)}

"""`dbos workflow list` over 100,000 workflows is answered from an index for every filter."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from runtime.workflow_list import list_workflows_query
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
        conn.execute("ANALYZE dbos.workflow_status")


CASES: list[dict[str, Any]] = [
    {},
    {"status": ["ERROR"]},
    {"status": ["PENDING", "ENQUEUED"]},
    {"name": "job_7"},
    {"app_version": "v1"},
    {"queue_name": "q3"},
    {"start_time": 1700000000000 + 50_000_000},
    {"end_time": 1700000000000 + 1_000_000},
    {"queued_only": True},
    {"before": {"before_ts": 1700000000000 + 50_000_000, "before_id": "wf-50000"}},
    # DBOS 2.x's filters (runtime.management turns workflow_id_prefix into this LIKE pattern).
    {"workflow_id_prefix": "wf-4321%"},
    {"forked_from": "wf-5"},
    {"forked_from_any": ["wf-5", "wf-6"]},
    {"parent_workflow_id": "wf-7"},
    {"executor_id": "local"},
    {"executor_id": "elsewhere"},
    {"was_forked_from": True, "status": ["ERROR"]},
    {"has_parent": True},
    {"schedule_name": "nightly"},
]


def _plan_nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    return [plan] + [n for child in plan.get("Plans", []) for n in _plan_nodes(child)]


@pytest.mark.parametrize("filters", CASES, ids=[",".join(c) or "none" for c in CASES])
@pytest.mark.parametrize("sort_desc", [False, True], ids=["asc", "desc"])
def test_list_uses_an_index(big_db: str, filters: dict[str, Any], sort_desc: bool) -> None:
    query, params = list_workflows_query(
        filters, sort_desc=sort_desc, limit=10, offset=0, load_input=False, load_output=False
    )
    with psycopg.connect(big_db) as conn:
        row = conn.execute("EXPLAIN (FORMAT JSON) " + query, params).fetchone()  # type: ignore[arg-type]
    assert row is not None
    nodes = _plan_nodes(row[0][0]["Plan"])
    scans = [n for n in nodes if n.get("Relation Name") == "workflow_status"]
    assert scans and all(n["Node Type"] != "Seq Scan" for n in scans), json.dumps(row[0], indent=1)


def test_cli_list_over_100k_workflows(big_db: str) -> None:
    started = time.monotonic()
    result = dbos("workflow", "list", "--db-url", big_db, "-d", "-S", "ERROR", "--json")
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert len(rows) == 10 and all(r["status"] == "ERROR" for r in rows)
    print(f"dbos workflow list -d -S ERROR over {N} workflows: {elapsed:.2f}s (incl. startup)")

"""``DBOSClient.count_workflows(at_most=N)``: a count that stops at N rows (the CLI footer's),
exact below N, N at or above it, and refused for values that are not a row count."""

from __future__ import annotations

import pytest

from runtime.client import DBOSClient
from runtime.errors import DBOSException
from tests.rows import insert_workflows


def test_count_stops_at_at_most_and_keeps_the_filters(db_url: str) -> None:
    insert_workflows(db_url, 50, "c-", ("ERROR", "SUCCESS"))
    with DBOSClient(db_url) as client:
        assert client.count_workflows() == 50
        assert client.count_workflows(at_most=10) == 10
        assert client.count_workflows(at_most=50) == 50
        assert client.count_workflows(at_most=1000) == 50
        assert client.count_workflows(at_most=0) == 0
        assert client.count_workflows(status="ERROR", at_most=1000) == 25
        assert client.count_workflows(status="ERROR", at_most=7) == 7
        assert client.count_workflows(workflow_id_prefix="c-00001", at_most=1000) == 10


@pytest.mark.parametrize("bad", [-1, True, 1.5, "10", 2**63])
def test_a_bad_at_most_is_refused_before_any_query(db_url: str, bad: object) -> None:
    with DBOSClient(db_url) as client, pytest.raises(DBOSException, match="at_most"):
        client.count_workflows(at_most=bad)

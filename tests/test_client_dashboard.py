"""DBOSClient's calls behind the dashboard, on real Postgres: keyset pages in both directions, the
name-prefix search, counts per status, pending messages, and bad input refused before any query."""

from __future__ import annotations

import pytest

from runtime import DBOSClient
from runtime.errors import DBOSException


def test_pages_counts_and_messages(db_url: str) -> None:
    with DBOSClient(db_url) as client:
        for i in range(5):
            name = "ship_order" if i % 2 == 0 else "bill"
            client.enqueue(
                {"workflow_name": name, "queue_name": "nowhere", "workflow_id": f"p-{i}"}, i
            )
        client.cancel_workflow("p-4")
        newest = client.list_workflow_page(workflow_id_prefix="p-", limit=2)
        assert [w.workflow_id for w in newest] == ["p-4", "p-3"]
        key = (newest[-1].created_at or 0, newest[-1].workflow_id)
        older = client.list_workflow_page(workflow_id_prefix="p-", limit=2, before=key)
        assert [w.workflow_id for w in older] == ["p-2", "p-1"]
        back = (older[0].created_at or 0, older[0].workflow_id)
        newer = client.list_workflow_page(workflow_id_prefix="p-", limit=2, after=back)
        assert [w.workflow_id for w in newer] == ["p-4", "p-3"]
        shipped = client.list_workflow_page(name_prefix="ship_", limit=10)
        assert [w.workflow_id for w in shipped] == ["p-4", "p-2", "p-0"]
        assert client.list_workflow_page(name_prefix="ship%", limit=10) == []  # no wildcards
        counts = client.count_workflows_by_status(workflow_id_prefix="p-", status="CANCELLED")
        assert counts == {"ENQUEUED": 4, "CANCELLED": 1}
        assert client.count_workflows_by_status(name_prefix="bill") == {"ENQUEUED": 2}
        client.send("p-1", {"n": 1}, topic="t")
        client.send("p-1", "two")
        messages = client.list_pending_messages("p-1")
        assert [(m.topic, m.value) for m in messages] == [("t", {"n": 1}), (None, "two")]
        assert client.list_pending_messages("p-1", limit=1)[0].value == {"n": 1}
        assert client.get_all_events("p-1") == {}


BAD_CALLS: list[dict[str, object]] = [
    {"limit": 0},
    {"limit": True},
    {"before": (2**63, "x")},
    {"before": ("1", "x")},
    {"after": (1, "a\x00b")},
    {"before": (1, "x"), "after": (2, "y")},
    {"start_time": "yesterday"},
    {"status": "NOPE"},
    {"name_prefix": 3},
    {"workflow_id_prefix": "a\x00"},
]


def test_bad_input_is_refused(db_url: str) -> None:
    with DBOSClient(db_url) as client:
        for call in BAD_CALLS:
            with pytest.raises(DBOSException):
                client.list_workflow_page(**call)  # type: ignore[arg-type]
        with pytest.raises(DBOSException):
            client.list_pending_messages("p", limit=0)
        with pytest.raises(DBOSException):
            client.get_all_events("")

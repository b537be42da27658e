"""The dashboard's safety rules and actions, through Starlette's test client."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from dbos_cli.ui.app import create_app
from dbos_cli.ui.security import CSRF_COOKIE
from runtime import DBOSClient
from tests.cli_helpers import dbos


@pytest.fixture
def seeded(db_url: str) -> Iterator[tuple[str, str]]:
    with DBOSClient(db_url) as client:
        handle = client.enqueue(
            {"workflow_name": "parked", "queue_name": "nowhere", "workflow_id": "w<1>"},
            "<script>alert('x')</script>",
        )
    yield db_url, handle.workflow_id


def test_token_is_required_when_configured(seeded: tuple[str, str]) -> None:
    db_url, _ = seeded
    with TestClient(create_app(db_url, token="s3cret"), follow_redirects=False) as http:
        assert http.get("/workflows").status_code == 401
        assert http.get("/workflows", headers={"Authorization": "Bearer wrong"}).status_code == 401
        ok = http.get("/workflows", headers={"Authorization": "Bearer s3cret"})
        assert ok.status_code == 200
        login = http.get("/?token=s3cret")
        assert login.status_code == 303 and "token" not in login.headers["location"]
        assert http.get("/workflows").status_code == 200  # the cookie now carries it
        assert http.post("/workflows/x/cancel", data={}).status_code in (401, 403)


def test_user_data_is_escaped_and_headers_are_strict(seeded: tuple[str, str]) -> None:
    db_url, wid = seeded
    with TestClient(create_app(db_url)) as http:
        page = http.get(f"/workflows/{wid}")
        assert page.status_code == 200
        assert "<script>alert" not in page.text
        assert "&lt;script&gt;alert" in page.text
        assert "w&lt;1&gt;" in page.text
        assert page.headers["x-frame-options"] == "DENY"
        assert "script-src 'self'" in page.headers["content-security-policy"]
        listing = http.get("/workflows")
        assert "w&lt;1&gt;" in listing.text and "<1>" not in listing.text


def test_actions_need_csrf_and_confirmation(seeded: tuple[str, str]) -> None:
    db_url, wid = seeded
    with TestClient(create_app(db_url), follow_redirects=False) as http:
        page = http.get(f"/workflows/{wid}")  # receives the session cookie and the form's token
        assert http.cookies.get(CSRF_COOKIE)
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
        assert http.post(f"/workflows/{wid}/cancel", data={}).status_code == 403
        assert http.post(f"/workflows/{wid}/cancel", data={"csrf": "forged"}).status_code == 403
        asked = http.post(f"/workflows/{wid}/cancel", data={"csrf": csrf})
        assert asked.status_code == 200 and "Yes, cancel" in asked.text
        with DBOSClient(db_url) as client:
            assert client.retrieve_workflow(wid).get_status().status == "ENQUEUED"
        done = http.post(f"/workflows/{wid}/cancel", data={"csrf": csrf, "confirmed": "yes"})
        assert done.status_code == 303 and "cancelled" in http.get(done.headers["location"]).text
        with DBOSClient(db_url) as client:
            assert client.retrieve_workflow(wid).get_status().status == "CANCELLED"
        again = http.post(f"/workflows/{wid}/cancel", data={"csrf": csrf, "confirmed": "yes"})
        assert "not cancelled" in http.get(again.headers["location"]).text


def test_unknown_workflow_and_bad_filters(seeded: tuple[str, str]) -> None:
    db_url, _ = seeded
    with TestClient(create_app(db_url)) as http:
        missing = http.get("/workflows/nope")
        assert missing.status_code == 404 and "does not exist" in missing.text
        bad = http.get("/workflows?start=yesterday")
        assert bad.status_code == 400 and "invalid start time" in bad.text
        assert http.get("/queues").status_code == 200
        assert http.get("/queues/nowhere").status_code == 200
        assert http.get("/executors").status_code == 200


def test_listening_beyond_loopback_needs_a_token() -> None:
    refused = dbos("ui", "--host", "0.0.0.0", "--port", "1")
    assert refused.returncode == 1
    assert "token" in refused.stderr and "Traceback" not in refused.stderr

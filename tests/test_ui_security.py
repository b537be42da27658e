"""The dashboard against hostile requests: forged Host and Origin, forged CSRF pairs and flash
messages, control characters in database text, bad input of every kind, and the token's rules.
Through HTTP: Starlette's test client, and one real `dbos ui` process."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from starlette.testclient import TestClient

from dbos_cli.ui.app import create_app
from dbos_cli.ui.security import (
    CSRF_COOKIE,
    FLASH_COOKIE,
    SECURITY_HEADERS,
    HostRule,
    check_token,
)
from runtime import DBOSClient
from runtime.errors import DBOSConfigError
from tests.cli_helpers import clean_env, dashboard, dbos

BASE = "http://127.0.0.1:8080"
TOKEN = "a-long-enough-token-1234"


@pytest.fixture
def seeded(db_url: str) -> Iterator[tuple[str, str]]:
    with DBOSClient(db_url) as client:
        handle = client.enqueue(
            {"workflow_name": "parked", "queue_name": "nowhere", "workflow_id": "w-1"}, 1
        )
    yield db_url, handle.workflow_id


def _app(db_url: str, **kwargs: object) -> TestClient:
    hosts = HostRule.for_bind("127.0.0.1", 8080, ["dash.example"])
    return TestClient(
        create_app(db_url, hosts=hosts, **kwargs),  # type: ignore[arg-type]
        base_url=BASE,
        follow_redirects=False,
        raise_server_exceptions=False,
    )


def _csrf(http: TestClient, path: str) -> str:
    page = http.get(path)
    found = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert found, page.text[:300]
    return found.group(1)


def _forks(db_url: str) -> int:
    with DBOSClient(db_url) as client:
        return len(client.list_workflows(name="parked"))


def test_host_header_must_name_the_dashboard(seeded: tuple[str, str]) -> None:
    db_url, wid = seeded
    with _app(db_url) as http:
        csrf = _csrf(http, f"/workflows/{wid}")
        for host in ("evil.example:8080", "evil.example", "127.0.0.1:9999", "", "a:b:c"):
            page = http.get("/workflows", headers={"host": host})
            assert page.status_code == 400 and "--allowed-host" in page.text, host
        # A rebinding page's fork (its Host is its own name) is refused before anything happens.
        forged = http.post(
            f"/workflows/{wid}/fork",
            data={"csrf": csrf, "confirmed": "yes", "step": "1"},
            headers={"host": "evil.example:8080", "origin": "http://evil.example:8080"},
        )
        assert forged.status_code == 400 and _forks(db_url) == 1
        for host in (
            "localhost:8080",
            "[::1]:8080",
            "LOCALHOST:8080",
            "dash.example",
            "dash.example:443",
        ):
            assert http.get("/workflows", headers={"host": host}).status_code == 200, host
    wildcard = HostRule.for_bind("0.0.0.0", 9000)
    assert wildcard.allows("10.1.2.3:9000") and wildcard.allows("localhost:9000")
    assert not wildcard.allows("10.1.2.3:9001") and not wildcard.allows("rebound.example:9000")
    assert HostRule.for_bind("::1", 80).allows("localhost")
    pinned = HostRule.for_bind("127.0.0.1", 8080, ["proxy.example:8443"])
    assert pinned.allows("proxy.example:8443") and not pinned.allows("proxy.example:80")


def test_posts_must_come_from_this_origin(seeded: tuple[str, str]) -> None:
    db_url, wid = seeded
    with _app(db_url) as http:
        csrf = _csrf(http, f"/workflows/{wid}")
        form = {"csrf": csrf}
        for headers in (
            {"origin": "http://evil.example"},
            {"origin": "null"},
            {"referer": "http://evil.example/page"},
            {"sec-fetch-site": "cross-site"},
        ):
            refused = http.post(f"/workflows/{wid}/cancel", data=form, headers=headers)
            assert refused.status_code == 403 and "cross-origin" in refused.text, headers
        for headers in ({"origin": BASE}, {"referer": f"{BASE}/workflows/{wid}"}, {}):
            asked = http.post(f"/workflows/{wid}/cancel", data=form, headers=headers)
            assert asked.status_code == 200 and "Yes, cancel" in asked.text, headers


def test_csrf_token_is_signed_and_bound_to_the_session(seeded: tuple[str, str]) -> None:
    db_url, wid = seeded
    with _app(db_url) as http, _app(db_url) as other:
        mine = _csrf(http, f"/workflows/{wid}")
        theirs = _csrf(other, f"/workflows/{wid}")
        session = http.cookies.get(CSRF_COOKIE)
        assert session and mine != session  # the token is derived, not the cookie echoed
        url = f"/workflows/{wid}/cancel"
        # The old double submit passed any equal cookie/field pair; a made-up pair must not.
        http.cookies.set(CSRF_COOKIE, "x" * 43)
        assert http.post(url, data={"csrf": "x" * 43}).status_code == 403
        http.cookies.set(CSRF_COOKIE, session)
        assert http.post(url, data={"csrf": session}).status_code == 403
        assert http.post(url, data={"csrf": theirs}).status_code == 403  # another session's
        assert http.post(url, data={"csrf": "é"}).status_code == 403
        assert http.post(url, data={"csrf": mine}).status_code == 200


def test_messages_come_only_from_actions(seeded: tuple[str, str]) -> None:
    db_url, wid = seeded
    with _app(db_url) as http:
        fake = "Security notice: your session expired, log in at evil.example"
        page = http.get(f"/workflows/{wid}", params={"msg": fake})
        assert page.status_code == 200 and "evil.example" not in page.text
        http.cookies.set(FLASH_COOKIE, "U2VjdXJpdHk.9999999999.00")  # unsigned: ignored
        assert 'id="flash"' not in http.get(f"/workflows/{wid}").text
        http.cookies.clear()
        csrf = _csrf(http, f"/workflows/{wid}")
        done = http.post(f"/workflows/{wid}/cancel", data={"csrf": csrf, "confirmed": "yes"})
        assert done.status_code == 303 and "?" not in done.headers["location"]
        shown = http.get(done.headers["location"])
        assert re.search(r'id="flash">cancelled<', shown.text)
        assert 'id="flash"' not in http.get(f"/workflows/{wid}").text  # shown once


def test_control_and_bidi_characters_are_shown_not_obeyed(db_url: str) -> None:
    wid = "invoice-\u202egpj.exe\u2066-\x1b[2J"
    with DBOSClient(db_url) as client:
        client.enqueue(
            {"workflow_name": "parked\u200f", "queue_name": "q\u202d", "workflow_id": wid},
            "rtl\u202eevil\u2069",
        )
    with _app(db_url) as http:
        for path in (f"/workflows/{quote(wid)}", "/workflows", "/queues/q%E2%80%AD"):
            page = http.get(path)
            assert page.status_code == 200, path
            hidden = [ch for ch in page.text if ch in "\u202e\u2066\u2069\u200f\u202d\x1b"]
            assert hidden == [], (path, hidden)
        page = http.get(f"/workflows/{quote(wid)}").text
        assert "<span class=ctl>\\u202e</span>gpj.exe" in page
        assert "<span class=ctl>\\x1b</span>[2J" in page


def test_every_response_carries_the_strict_headers(seeded: tuple[str, str], db_url: str) -> None:
    _, wid = seeded
    with _app(db_url, token=TOKEN) as http:
        responses = {
            "401": http.get("/workflows"),
            "400 host": http.get("/workflows", headers={"host": "evil.example"}),
            "303 login": http.get(f"/?token={TOKEN}"),
            "200": http.get(f"/workflows/{wid}"),
            "404 route": http.get("/nothing-here"),
            "404 workflow": http.get("/workflows/nope"),
            "static": http.get("/static/style.css"),
            "403": http.post(f"/workflows/{wid}/cancel", data={"csrf": "forged"}),
            "400 nul": http.get("/workflows/%00"),
        }
    # Not entered: no lifespan, so no database client, and every page fails unexpectedly.
    broken = _app(db_url).get("/workflows")
    assert broken.status_code == 500 and "internal error" in broken.text
    assert "KeyError" not in broken.text and "Traceback" not in broken.text
    responses["500"] = broken
    for what, response in responses.items():
        for name, value in SECURITY_HEADERS.items():
            assert response.headers.get(name) == value, (what, name)
    assert "script-src 'self'" in SECURITY_HEADERS["Content-Security-Policy"]


def test_bad_input_gets_a_4xx_never_a_500(seeded: tuple[str, str]) -> None:
    db_url, wid = seeded
    with _app(db_url, token=TOKEN) as http:
        assert http.get("/?token=tökén").status_code == 401
        for raw in (b"authorization: Bearer t\xc3\xb6k\xc3\xa9n", b"cookie: dbos_ui_token=t\xf6k"):
            name, _, value = raw.partition(b": ")
            assert http.get("/workflows", headers={name: value}).status_code == 401, raw
        http.cookies.set("dbos_ui_token", TOKEN)
        hostile_session = {
            b"cookie": f"dbos_ui_token={TOKEN}; {CSRF_COOKIE}=s\xe9".encode("latin-1")
        }
        assert http.get("/workflows", headers=hostile_session).status_code == 200
        http.cookies.set(FLASH_COOKIE, "eA." + "9" * 5000 + ".00")
        assert http.get("/workflows").status_code == 200
        http.cookies.delete(FLASH_COOKIE)
        for path in (
            "/workflows/%00",
            "/queues/%00",
            "/workflows/%00/cancel",
            "/workflows?before=²:x",
            "/workflows?before=" + "9" * 5000 + ":x",
            "/workflows?start=0001-01-01",
            "/workflows?name=%E2%80%AE%00",
            "/workflows?status=%ff%fe",
            "/queues/%ff",
        ):
            status = http.get(path).status_code
            assert 200 <= status < 500, (path, status)
        csrf = _csrf(http, f"/workflows/{wid}")
        for step in ("²", "9" * 5000, "-1"):
            fork = http.post(
                f"/workflows/{wid}/fork", data={"csrf": csrf, "confirmed": "yes", "step": step}
            )
            assert 200 <= fork.status_code < 500, (step, fork.status_code)


def test_database_errors_name_no_user_host_or_database(
    empty_db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    dbname = empty_db_url.rsplit("/", 1)[1]
    with _app(empty_db_url) as http:  # no system schema: every query fails
        for path in ("/workflows", "/queues", "/executors", "/workflows/x"):
            page = http.get(path)
            assert page.status_code == 503 and "database unavailable" in page.text, path
            assert dbname not in page.text and "postgres" not in page.text
    logged = [r.getMessage() for r in caplog.records if r.name == "dbos_cli.ui"]
    assert len(logged) == 4 and all("/" in line for line in logged)  # the detail, for the operator


def test_token_rules_at_startup(db_url: str) -> None:
    remote = ["ui", "--host", "0.0.0.0", "--db-url", "postgresql://u@127.0.0.1:1/d"]
    short = dbos(*remote, env=clean_env(DBOS_UI_TOKEN="short"))  # read from the environment
    assert short.returncode == 1 and "at least 16" in short.stderr
    assert "Traceback" not in short.stderr and len(short.stderr.strip().splitlines()) == 1
    for odd in ("tökén-with-accents-123", "with space in it 12345", ""):
        with pytest.raises(DBOSConfigError, match="printable ASCII"):
            create_app(db_url, token=odd)
    with pytest.raises(DBOSConfigError, match="at least 16"):
        check_token("fifteen-chars-x", remote=True)
    check_token("fifteen-chars-x", remote=False)  # loopback: any length


def test_a_real_dashboard_process(seeded: tuple[str, str], tmp_path: Path) -> None:
    """The real `dbos ui`: token from a file (absent from its command line), Host checked."""
    db_url, wid = seeded
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    args = ("--token-file", str(token_file), "--allowed-host", "dash.test")
    with dashboard(db_url, *args) as (url, proc):
        port = url.rsplit(":", 1)[1]
        first = httpx.get(f"{url}/workflows", timeout=2)
        assert first.status_code == 401
        cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes()
        assert TOKEN.encode() not in cmdline
        auth = {"authorization": f"Bearer {TOKEN}"}
        assert httpx.get(f"{url}/workflows/{wid}", headers=auth).status_code == 200
        for host, status in ((f"localhost:{port}", 200), ("dash.test", 200), ("evil.test", 400)):
            got = httpx.get(f"{url}/workflows", headers={**auth, "host": host})
            assert got.status_code == status, host
            assert got.headers["cache-control"] == "no-store"

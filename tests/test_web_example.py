"""The web example over real HTTP: a checkout survives the server being killed between the
checkout and the payment webhook, and completes exactly once; an unpaid checkout times out and
releases its reservation."""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from tests.cli_helpers import DBOS as DBOS_EXE
from tests.cli_helpers import clean_env

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """`dbos start examples/web_checkout/app.py`, restartable."""

    def __init__(self, db_url: str, **env: str) -> None:
        self.port = _free_port()
        self.env = clean_env(DBOS_DATABASE_URL=db_url, PORT=str(self.port), **env)
        self.env["PYTHONPATH"] = str(ROOT)
        self.proc: subprocess.Popen[str] | None = None
        self.base = f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [DBOS_EXE, "start", "examples/web_checkout/app.py"],
            cwd=ROOT,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert self.proc.stdout is not None
        seen = []
        for line in self.proc.stdout:
            seen.append(line)
            if "Application startup complete" in line:
                return
        raise AssertionError("".join(seen))

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    def wait_order(self, order_id: str, timeout: float = 30) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            body: dict[str, Any] = httpx.get(f"{self.base}/orders/{order_id}").json()
            if body["status"] != "PENDING":
                return body
            assert time.monotonic() < deadline, body
            time.sleep(0.1)


def _scalar(url: str, sql: str) -> Any:
    with psycopg.connect(url) as conn:
        row = conn.execute(sql).fetchone()  # type: ignore[arg-type]
    return row[0] if row else None


@pytest.fixture
def server(db_url: str) -> Iterator[Server]:
    running = Server(db_url, PAYMENT_TIMEOUT_S="3")
    try:
        yield running
    finally:
        running.stop()


def test_checkout_survives_a_kill_between_checkout_and_webhook(server: Server, db_url: str) -> None:
    server.start()
    created = httpx.post(f"{server.base}/checkout/o1", timeout=30)
    assert created.status_code == 200, created.text
    body = created.json()
    assert body["payment_url"].endswith(body["workflow_id"])
    assert _scalar(db_url, "SELECT remaining FROM web_tickets") == 99

    server.kill()  # between the checkout and the payment webhook
    server.start()  # recovers the checkout, still waiting (durably) for its payment

    notice = {"workflow_id": body["workflow_id"], "status": "paid", "event_id": "pay-evt-1"}
    for _ in range(2):  # the provider retries its webhook: delivered once
        sent = httpx.post(f"{server.base}/payment_webhook", json=notice, timeout=30)
        assert sent.status_code == 200, sent.text
    assert server.wait_order("o1") == {"status": "SUCCESS", "outcome": "purchased"}
    assert _scalar(db_url, "SELECT count(*) FROM web_purchases WHERE order_id = 'o1'") == 1
    assert _scalar(db_url, "SELECT remaining FROM web_tickets") == 99  # reserved exactly once
    again = httpx.post(f"{server.base}/checkout/o1", timeout=30)  # same order: same checkout
    assert again.json()["workflow_id"] == body["workflow_id"]


def test_unpaid_checkout_times_out_and_releases_the_ticket(server: Server, db_url: str) -> None:
    server.start()
    created = httpx.post(f"{server.base}/checkout/o2", timeout=30)
    assert created.status_code == 200, created.text
    assert _scalar(db_url, "SELECT remaining FROM web_tickets") == 99
    assert server.wait_order("o2") == {"status": "SUCCESS", "outcome": "payment timed out"}
    assert _scalar(db_url, "SELECT remaining FROM web_tickets") == 100
    missing = httpx.post(
        f"{server.base}/payment_webhook",
        json={"workflow_id": "nope", "status": "paid", "event_id": "x"},
    )
    assert missing.status_code == 404

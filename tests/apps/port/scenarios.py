"""The port check's workloads: run a DBOS app in a real process, SIGKILL it mid-workload, launch
it again, and check that every workflow finished exactly once.

A ``Target`` says which DBOS runs the app: this runtime through the alias module (the tests,
tests/test_port.py) or the real DBOS package (``validate_on_dbos.py``, which shows the apps are
genuine DBOS code). The apps themselves are the same files either way.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent.parent
ALIAS = HERE / "alias"


@dataclass
class Target:
    """Where and how the apps run."""

    python: str
    pythonpath: list[str]
    #: ``DBOS_SYSTEM_DATABASE_URL``: what the apps give DBOS as ``system_database_url``.
    system_url: str
    #: ``DBOS_DATABASE_URL``: the application database (Postgres), where the store's tables live.
    #: Only the widget store configures it (``application_database_url``); the other apps set
    #: ``system_database_url`` alone, as DBOS documents, but this runtime reads the variable as
    #: its ``database_url`` and would otherwise start its embedded server for them.
    app_url: str
    workdir: Path
    env: dict[str, str] = field(default_factory=dict)

    @property
    def effects_file(self) -> Path:
        return self.workdir / "effects.jsonl"

    @property
    def pause_file(self) -> Path:
        return self.workdir / "pause"

    def environment(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DBOS", "PYTHONPATH"))}
        env.update(
            PYTHONPATH=os.pathsep.join(self.pythonpath),
            DBOS_SYSTEM_DATABASE_URL=self.system_url,
            DBOS_DATABASE_URL=self.app_url,
            EFFECTS_FILE=str(self.effects_file),
            PAUSE_FILE=str(self.pause_file),
        )
        env.update(self.env)
        return env

    def popen(self, app: str, *args: str, log: Path | None = None) -> subprocess.Popen[str]:
        """Start the app; its stderr goes to ``log`` if given (a server's), else to a pipe."""
        with open(log, "w") if log else open(os.devnull) as sink:
            return subprocess.Popen(
                [self.python, str(HERE / app), *args],
                env=self.environment(),
                cwd=self.workdir,
                stdout=subprocess.PIPE if log is None else subprocess.DEVNULL,
                stderr=subprocess.PIPE if log is None else sink,
                text=True,
            )

    def run(self, app: str, *args: str, timeout: float = 60) -> dict[str, Any]:
        """Run the app to completion; its summary (the last JSON line it printed)."""
        proc = self.popen(app, *args)
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            raise AssertionError(f"{app} {args} timed out\n{out}\n{err[-4000:]}") from None
        assert proc.returncode == 0, f"{app} {args} exited {proc.returncode}\n{err[-4000:]}"
        lines = [line for line in out.splitlines() if line.startswith("{")]
        assert lines, f"{app} printed no summary\n{out}\n{err[-4000:]}"
        summary: dict[str, Any] = json.loads(lines[-1])
        return summary

    def effects(self) -> list[dict[str, Any]]:
        if not self.effects_file.exists():
            return []
        return [json.loads(line) for line in self.effects_file.read_text().splitlines()]


def _wait(predicate: Any, timeout: float, what: str, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc.poll() is not None:
            _, err = proc.communicate()
            err = err or ""
            raise AssertionError(f"the app exited ({proc.returncode}) before {what}\n{err[-4000:]}")
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def kill_when_quiet(target: Target, proc: subprocess.Popen[str]) -> int:
    """Pause every step before its side effect, wait until no effect has been written for a
    while (so each step that wrote one has had time to checkpoint it), then SIGKILL the app.
    Returns the killed process's pid."""
    target.pause_file.touch()
    seen, quiet_since = -1, time.monotonic()
    while time.monotonic() - quiet_since < 0.8:
        count = len(target.effects())
        if count != seen:
            seen, quiet_since = count, time.monotonic()
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    target.pause_file.unlink()
    return proc.pid


def _kill_after(target: Target, proc: subprocess.Popen[str], what: str, at_least: int) -> int:
    try:
        _wait(
            lambda: sum(e["what"] == what for e in target.effects()) >= at_least,
            60,
            f"{at_least} {what!r} effects",
            proc,
        )
        return kill_when_quiet(target, proc)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def _once_each(effects: list[dict[str, Any]], expected: set[tuple[str, str]]) -> None:
    counts = Counter((e["what"], e["key"]) for e in effects)
    twice = {k: n for k, n in counts.items() if n != 1}
    assert not twice, f"steps re-executed after completing: {twice}"
    assert set(counts) == expected, (
        f"missing: {expected - set(counts)}; unexpected: {set(counts) - expected}"
    )


def check_killed_mid_workload(effects: list[dict[str, Any]], first_pid: int) -> None:
    pids = [e["pid"] for e in effects]
    assert first_pid in pids, "the killed process had not started the workload"
    assert set(pids) - {first_pid}, "the killed process had finished the workload already"


# --- 1. the widget store -------------------------------------------------------------------

ORDERS = 8


def widget_store(target: Target) -> None:
    first = _kill_after(target, target.popen("widget_store.py", "place", str(ORDERS)), "ship", 2)
    summary = target.run("widget_store.py", "recover", str(ORDERS))

    order_ids = [f"order-{i}" for i in range(ORDERS)]
    assert summary["results"] == {o: f"track-{o}" for o in order_ids}
    assert summary["events"] == {o: "shipped" for o in order_ids}
    assert summary["checkouts_succeeded"] == ORDERS
    assert summary["fulfilments_succeeded"] == ORDERS
    assert summary["confirmations_succeeded"] == ORDERS
    assert summary["again"] == "track-order-0"  # the same order ID: the recorded result

    effects = target.effects()
    check_killed_mid_workload(effects, first)
    _once_each(effects, {(what, o) for o in order_ids for what in ("charge", "ship", "email")})

    with psycopg.connect(target.app_url) as conn:
        rows = conn.execute("SELECT order_id, quantity, status FROM orders").fetchall()
        shipments = conn.execute("SELECT order_id FROM shipments ORDER BY order_id").fetchall()
        (inventory,) = conn.execute(
            "SELECT inventory FROM products WHERE product_id = 1"
        ).fetchone() or (None,)
    quantities = {f"order-{i}": 1 + i % 3 for i in range(ORDERS)}
    assert sorted(rows) == sorted((o, q, "shipped") for o, q in quantities.items())
    assert [s for (s,) in shipments] == sorted(order_ids)  # one shipment per order
    assert inventory == 1000 - sum(quantities.values())  # each reservation committed once


# --- 2. the warehouses (instance-method workflows) -----------------------------------------

SKUS = 4


def warehouses(target: Target) -> None:
    first = _kill_after(target, target.popen("warehouses.py", "start", str(SKUS)), "audit", 2)
    summary = target.run("warehouses.py", "recover", str(SKUS))

    supplier = {"east": "acme", "west": "globex"}
    expected_effects = {("order", "west/sku-direct"), ("audit", "west/sku-direct")}
    expected_effects.add(("weigh", "west/sku-direct"))
    expected_effects.add(("receive", "west/globex:sku-direct:1"))
    for i in range(SKUS):
        for site in ("east", "west"):
            sku, units = f"sku-{i}", 10 + i
            po = f"{supplier[site]}:{sku}:{units}"
            result = summary["results"][f"restock-{site}-{sku}"]
            # The recovered workflow ran on its own instance: its config and its config_name.
            assert result["site"] == site and result["po"] == po, result
            assert result["label"] == f"{site}-bin{result['bin']}-{po}"
            assert result["audit"] == f"Warehouse:{site}:{sku}:{units}"
            assert result["kilos"] == units * 0.25
            expected_effects |= {
                ("weigh", f"{site}/{sku}"),
                ("order", f"{site}/{sku}"),
                ("receive", f"{site}/{po}"),
                ("audit", f"{site}/{sku}"),
            }
    assert len(summary["results"]) == 2 * SKUS
    assert summary["direct"]["po"] == "globex:sku-direct:1"
    assert summary["first_done"] in summary["results"]

    effects = target.effects()
    check_killed_mid_workload(effects, first)
    _once_each(effects, expected_effects)


# --- 3. the async FastAPI payments service -------------------------------------------------

CHECKOUTS = 6


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Server:
    """A running payments_api.py and a client for it."""

    def __init__(self, target: Target, name: str) -> None:
        self.log = target.workdir / f"{name}.log"
        port = _free_port()
        self.proc = target.popen("payments_api.py", str(port), log=self.log)
        self.client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60)

        def up() -> bool:
            try:
                return self.client.get("/openapi.json").status_code == 200
            except httpx.TransportError:
                return False

        try:
            _wait(up, 60, "the server to answer", self.proc)
        except BaseException as exc:
            self.stop()
            raise AssertionError(f"{exc}\n{self.log.read_text()[-4000:]}") from None

    def ok(self, method: str, path: str, **params: Any) -> Any:
        response = self.client.request(method, path, params=params)
        if response.status_code != 200:
            time.sleep(0.5)  # the server logs the exception after it has answered 500
            raise AssertionError(
                f"{method} {path}: {response.status_code} {response.text}\n"
                f"{self.log.read_text()[-4000:]}"
            )
        return response.json()

    def stop(self) -> None:
        self.client.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.communicate(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.communicate()


def payments_api(target: Target) -> None:
    keys = [f"k{i}" for i in range(CHECKOUTS)]
    outcome = {k: "paid" for k in keys[:4]} | {keys[4]: "declined", keys[5]: "paid"}
    first_server = Server(target, "first")
    try:
        links = {k: first_server.ok("POST", f"/checkout/{k}") for k in keys}
        for k in keys[:5]:
            first_server.ok("POST", f"/webhook/checkout-{k}/{outcome[k]}")
        # Messages delivered, workflows mid-flight (their next steps are paused): kill.
        first = kill_when_quiet(target, first_server.proc)
    finally:
        first_server.stop()

    server = Server(target, "second")
    try:
        again = server.ok("POST", f"/checkout/{keys[0]}")  # a retried request joins the first
        assert again == links[keys[0]]
        server.ok("POST", f"/webhook/checkout-{keys[5]}/{outcome[keys[5]]}")
        orders = {k: server.ok("GET", f"/orders/checkout-{k}", wait=True) for k in keys}
        stats = server.ok("GET", "/stats")
    finally:
        server.stop()

    assert stats == {"succeeded": CHECKOUTS, "pending": 0}
    for k in keys:
        assert links[k] == {"workflow_id": f"checkout-{k}", "link": f"https://pay.example/{k}"}
        paid = outcome[k] == "paid"
        assert orders[k]["status"] == "SUCCESS", orders[k]
        assert orders[k]["result"] == f"receipt-{k}-{outcome[k]}"
        assert orders[k]["order_status"] == outcome[k]
        assert orders[k]["picked"] == (f"picked-{k}" if paid else None)
        events = {"payment_link": f"https://pay.example/{k}", "order_status": outcome[k]}
        if paid:
            events["picked"] = f"picked-{k}"
        assert orders[k]["events"] == events

    effects = target.effects()
    check_killed_mid_workload(effects, first)
    expected = {("session", k) for k in keys} | {("receipt", k) for k in keys}
    expected |= {("warehouse", k) for k in keys if outcome[k] == "paid"}
    _once_each(effects, expected)

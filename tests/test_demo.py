"""The README's demo: the checkout app run by `dbos start`, SIGKILLed mid-checkout, restarted."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.cli_helpers import clean_env

ROOT = Path(__file__).resolve().parent.parent


def test_checkout_demo_survives_a_kill(db_url: str) -> None:
    result = subprocess.run(
        [sys.executable, "examples/run_demo.py"],
        cwd=ROOT,
        env=clean_env(DBOS_DATABASE_URL=db_url),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "killed the app (SIGKILL" in out
    assert "recovered 3 of 3 pending workflows" in out
    assert "card charges per customer: {'alice': 1, 'bob': 1, 'carol': 1}" in out
    assert "tickets issued: ['alice', 'carol']" in out
    # Reservations made before the kill were replayed, not repeated: three in all.
    assert out.count("reserved a ticket") == 3

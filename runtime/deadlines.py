"""Enforcing workflow deadlines: a sweep cancels every workflow past its deadline, even when the
process running it is stuck in a long step or gone, so a timeout holds whatever happens to its
runner (a runner also checks its own deadline before each operation)."""

from __future__ import annotations

import logging
import threading

from runtime.errors import DBOSException
from runtime.system_db import SystemDatabase

logger = logging.getLogger("dbos")

DEADLINE_SWEEP_INTERVAL_S = 1.0


class DeadlineSweep:
    """A daemon thread that cancels expired workflows every ``interval_s`` seconds."""

    def __init__(
        self, sysdb: SystemDatabase, interval_s: float = DEADLINE_SWEEP_INTERVAL_S
    ) -> None:
        self.sysdb = sysdb
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="dbos-deadlines", daemon=True)

    def start(self) -> None:
        """Start the loop."""
        self._thread.start()

    def stop(self) -> None:
        """Stop the loop and wait for it."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                expired = self.sysdb.cancel_expired()
                if expired:
                    logger.info("cancelled %d workflows past their deadline", len(expired))
            except DBOSException as exc:
                logger.warning("deadline sweep failed (will retry): %s", exc)
            except Exception:
                logger.exception("deadline sweep failed (will retry)")

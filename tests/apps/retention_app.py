"""An executor with automatic retention on, for tests/test_retention.py: the database, executor ID,
retention and interval come from the environment; its log (INFO) goes to stdout."""

from __future__ import annotations

import logging
import os
import sys
import time

from runtime import DBOS

logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(message)s")
DBOS(
    config={
        "name": "retention-app",
        "database_url": os.environ["DBOS_DATABASE_URL"],
        "executor_id": os.environ["RETENTION_EXECUTOR"],
        "application_version": "v1",
        "workflow_retention": os.environ["RETENTION"],
        "workflow_retention_interval_sec": float(os.environ["RETENTION_INTERVAL"]),
    }
)
DBOS.launch()
print("serving", flush=True)
while True:
    time.sleep(1)

"""Run the port apps' workloads (scenarios.py: SIGKILL mid-workload, relaunch, exactly-once
checks) on the REAL DBOS package, to show the apps are genuine DBOS code.

    python -m tests.apps.port.validate_on_dbos [--pg-system] PYTHON SITE_DIRS PG_URL [APP ...]

``PYTHON`` is an interpreter that can ``import dbos`` (with ``SITE_DIRS``, colon-separated, on
its path: e.g. DBOS 2.x and FastAPI/uvicorn installed with ``pip install --target``).
``PG_URL`` is an admin URL of a Postgres server: each app gets a fresh database there as
its application database. The system database is a SQLite file, which DBOS supports, or with
``--pg-system`` that same Postgres database (DBOS 2.x needs the ``uuid-ossp`` extension there,
which the project's embedded Postgres lacks; DBOS 3.x does not). Prints one line per app:
``ok`` or the failure.
"""

from __future__ import annotations

import sys
import tempfile
import traceback
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg

from tests.apps.port import scenarios

APPS = {
    "widget_store": scenarios.widget_store,
    "warehouses": scenarios.warehouses,
    "payments_api": scenarios.payments_api,
}


def main() -> int:
    args = sys.argv[1:]
    pg_system = "--pg-system" in args
    python, site_dirs, server_url, *names = [a for a in args if a != "--pg-system"]
    failed = 0
    for name in names or list(APPS):
        dbname = f"port_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{dbname}"')
        parts = urlsplit(server_url)
        app_url = urlunsplit((parts.scheme, parts.netloc, "/" + dbname, parts.query, ""))
        try:
            with tempfile.TemporaryDirectory(prefix=f"port-{name}-") as workdir:
                target = scenarios.Target(
                    python=python,
                    pythonpath=[d for d in site_dirs.split(":") if d],
                    system_url=app_url if pg_system else f"sqlite:///{workdir}/system.sqlite",
                    app_url=app_url,
                    workdir=Path(workdir),
                )
                APPS[name](target)
            print(f"{name}: ok", flush=True)
        except Exception:
            failed += 1
            print(f"{name}: FAILED\n{traceback.format_exc()}", flush=True)
        finally:
            with psycopg.connect(server_url, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

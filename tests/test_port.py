"""The port check: DBOS applications written exactly as DBOS documents them run on this runtime
with one change, an alias module making ``import dbos`` mean ``import runtime``.

The apps (tests/apps/port/) import ``from dbos import DBOS, ...`` and nothing of ours; the tests
run each in a real process against the session's Postgres, SIGKILL it mid-workload, launch it
again and check that every workflow completed exactly once (in the app's own tables, its events
and messages, and a file where each step records its side effect). The same scenarios pass on
the real DBOS package (tests/apps/port/validate_on_dbos.py), which is what makes these apps a
fair measure of the port.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

from tests.apps.port import scenarios

APPS = ["widget_store.py", "warehouses.py", "payments_api.py"]


@pytest.fixture
def target(db_url: str, tmp_path: Path) -> scenarios.Target:
    """Apps on this runtime: the alias folder first on the path, both of DBOS's database URLs
    pointing at the test's database."""
    return scenarios.Target(
        python=sys.executable,
        pythonpath=[str(scenarios.ALIAS), str(scenarios.ROOT)],
        system_url=db_url,
        app_url=db_url,
        workdir=tmp_path,
    )


def test_the_port_is_one_alias_line_and_the_apps_are_untouched_dbos_code() -> None:
    alias = (scenarios.ALIAS / "dbos.py").read_text().strip().splitlines()
    assert len(alias) == 1 and "runtime" in alias[0]
    for app in APPS:
        tree = ast.parse((scenarios.HERE / app).read_text())
        imported = {
            node.module
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.module
        } | {a.name for node in ast.walk(tree) if isinstance(node, ast.Import) for a in node.names}
        assert "dbos" in imported, app
        assert not any(m.split(".")[0] in ("runtime", "tests") for m in imported), app


def test_widget_store_survives_sigkill_with_every_order_once(target: scenarios.Target) -> None:
    """SQLAlchemy transactions (``DBOS.sql_session``, ``sa.text`` with bound parameters,
    ``sa.insert``/``sa.update`` on a Table and an ORM model), a ``Queue`` with concurrency 2 for
    fulfilment, ``DBOS.set_event``/``get_event`` for order status, ``SetWorkflowID`` as the
    idempotency key, ``list_workflows(name=, status=)``. Killed after two orders shipped: each
    order reserved, charged, shipped and recorded exactly once, stock decremented once each."""
    scenarios.widget_store(target)


def test_instance_method_workflows_survive_sigkill_on_their_own_instance(
    target: scenarios.Target,
) -> None:
    """``@DBOS.dbos_class()`` on a ``DBOSConfiguredInstance`` subclass, two instances with
    different ``config_name`` s, workflows and steps as instance methods, a classmethod and a
    staticmethod step. Killed mid-workload: each recovered workflow runs on its own instance
    (its config shows in the result) and no completed step runs again."""
    scenarios.warehouses(target)


def test_async_fastapi_app_survives_sigkill_with_messages_and_events_delivered(
    target: scenarios.Target,
) -> None:
    """Async workflows and steps behind FastAPI: ``start_workflow_async`` with ``SetWorkflowID``,
    ``set_event_async``/``get_event_async``/``get_all_events_async``, ``send_async`` from a
    webhook and ``recv_async`` in the workflow, ``retrieve_workflow_async`` handles. Killed after
    five webhooks were delivered, mid-flight: after the relaunch every checkout ends with the
    outcome its webhook carried, a retried checkout joins the original, no step ran twice."""
    scenarios.payments_api(target)

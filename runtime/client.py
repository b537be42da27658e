"""``DBOSClient``: the management and messaging API for programs that are not the app (scripts,
web handlers in another service, the `dbos` CLI). It reads and writes the system tables directly
and never imports or launches the application."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from runtime import messaging
from runtime.config import resolve
from runtime.embedded import resolve_system_url
from runtime.errors import DBOSNonExistentWorkflowError
from runtime.handles import WorkflowHandle, poll_result
from runtime.listener import NotificationListener
from runtime.status import StepInfo, WorkflowStatus
from runtime.system_db import SystemDatabase, status_from_row, step_from_row


class DBOSClient:
    """A connection to an application's system tables from outside the application.

    With no URL, it finds the database as the CLI does: ``DBOS_SYSTEM_DATABASE_URL`` or
    ``DBOS_DATABASE_URL``, the config file of the current folder, else the project's embedded
    Postgres."""

    def __init__(
        self, database_url: str | None = None, *, system_database_url: str | None = None
    ) -> None:
        explicit = system_database_url or database_url
        if explicit:
            url = explicit
        else:
            s = resolve(None, cwd=Path.cwd())
            url = resolve_system_url(None, s.system_database_url or s.database_url, s.project_dir)
        self.sysdb = SystemDatabase(url, pool_size=4)
        self._notifications = messaging.Notifications()
        self._listener: NotificationListener | None = None
        self._lock = threading.Lock()

    def destroy(self) -> None:
        """Close the client's connections."""
        if self._listener is not None:
            self._listener.stop()
        self.sysdb.close()

    def __enter__(self) -> DBOSClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.destroy()

    def _listen(self) -> messaging.Notifications:
        # The listener costs a connection, so it starts only when the client first waits.
        with self._lock:
            if self._listener is None:
                listener = NotificationListener(self.sysdb.url, self._notifications.callbacks())
                listener.on_reconnect.append(self._notifications.wake_all)
                self._notifications.is_listening = lambda: listener.listening
                listener.start()
                self._listener = listener
        return self._notifications

    # -- messaging --------------------------------------------------------------------------------

    def send(
        self,
        destination_id: str,
        message: Any,
        topic: str | None = None,
        idempotency_key: str | None = None,
    ) -> None:
        """Send a message to a workflow; with an idempotency key, a retried send delivers once."""
        messaging.send_outside(self.sysdb, destination_id, message, topic, idempotency_key)

    def get_event(self, workflow_id: str, key: str, timeout_seconds: float = 60) -> Any:
        """Wait up to the timeout for a workflow's event; None when it is not set in time."""
        return messaging.get_event_outside(
            self.sysdb, self._listen(), workflow_id, key, timeout_seconds
        )

    # -- workflows --------------------------------------------------------------------------------

    def retrieve_workflow(self, workflow_id: str) -> WorkflowHandle[Any]:
        """A handle to a workflow by ID."""
        if self.sysdb.get_status_result(workflow_id) is None:
            raise DBOSNonExistentWorkflowError(workflow_id)
        return WorkflowHandle(self, workflow_id)

    def get_workflow_status(self, workflow_id: str) -> WorkflowStatus | None:
        """A workflow's record, or None when no workflow has that ID."""
        row = self.sysdb.get_workflow_row(workflow_id)
        return status_from_row(row) if row else None

    def list_workflow_steps(self, workflow_id: str) -> list[StepInfo]:
        """The recorded steps of a workflow, in order."""
        if self.sysdb.get_status_result(workflow_id) is None:
            raise DBOSNonExistentWorkflowError(workflow_id)
        return [step_from_row(r) for r in self.sysdb.get_step_rows(workflow_id)]

    def cancel_workflow(self, workflow_id: str) -> bool:
        """Cancel a PENDING or ENQUEUED workflow; its runner stops before its next step. False
        when the workflow was in another status (nothing changed)."""
        changed = self.sysdb.cancel_workflow(workflow_id)
        if not changed and self.sysdb.get_status_result(workflow_id) is None:
            raise DBOSNonExistentWorkflowError(workflow_id)
        return changed

    # -- handle backend ---------------------------------------------------------------------------

    def handle_result(self, workflow_id: str) -> Any:
        """Wait for a workflow's outcome by reading its record."""
        return poll_result(self.sysdb, workflow_id)

    def handle_status(self, workflow_id: str) -> WorkflowStatus | None:
        """A workflow's record."""
        return self.get_workflow_status(workflow_id)

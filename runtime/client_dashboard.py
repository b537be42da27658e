"""The ``DBOSClient`` calls behind the dashboard's pages (and any operator tool): a page of the
workflow listing in either direction with a name-prefix search, the counts per status for the same
filters, a workflow's events, and the messages waiting for it. A part of ``DBOSClient`` of its
own, so that the client class stays within its size limit."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from psycopg.conninfo import conninfo_to_dict

from runtime.asyncs import twin
from runtime.context import validate_workflow_id
from runtime.dashboard_db import DashboardReads, PendingMessage, name_prefix_pattern
from runtime.errors import DBOSException
from runtime.management import MAX_BIGINT, TimeArg, workflow_filters
from runtime.status import WorkflowStatus
from runtime.system_db import SystemDatabase

PageKey = tuple[int, str]


def _filters(arguments: dict[str, Any]) -> dict[str, Any]:
    """The listing filters for the shared keywords of the calls below (checked)."""
    try:
        found = workflow_filters(
            status=arguments["status"],
            workflow_id_prefix=arguments["workflow_id_prefix"],
            queue_name=arguments["queue_name"],
            app_version=arguments["app_version"],
            start_time=arguments["start_time"],
            end_time=arguments["end_time"],
        )
    except (ValueError, OverflowError) as exc:  # a date no epoch millisecond can hold
        raise DBOSException(f"invalid time: {exc}") from None
    prefix = arguments["name_prefix"]
    if prefix is not None:
        if not isinstance(prefix, str):
            raise DBOSException(f"invalid name_prefix {prefix!r}: expected a string")
        found["name_prefix"] = name_prefix_pattern(prefix)
    return found


def _key(name: str, key: object) -> PageKey | None:
    """A paging key, checked: ``(created_at epoch ms, workflow ID)`` from a listed workflow."""
    if key is None:
        return None
    if not (
        isinstance(key, tuple)
        and len(key) == 2
        and isinstance(key[0], int)
        and not isinstance(key[0], bool)
        and 0 <= key[0] <= MAX_BIGINT
        and isinstance(key[1], str)
        and "\x00" not in key[1]
    ):
        raise DBOSException(
            f"invalid {name} {key!r}: expected (created_at epoch ms, workflow ID) of a listed "
            "workflow"
        )
    return key


def _check_seconds(seconds: object) -> None:
    if (
        isinstance(seconds, bool)
        or not isinstance(seconds, int | float)
        or not 0 < seconds < 86_400
    ):
        raise DBOSException(f"invalid seconds {seconds!r}: expected a number from 0 to 86400")


class ClientDashboardCalls:
    """Listing pages, counts, events and messages through a client's system database."""

    sysdb: SystemDatabase

    def set_connection_wait(self, seconds: float) -> None:
        """Wait at most ``seconds`` (a number > 0) for one of the client's pooled connections:
        past that, a call raises a transient ``DBOSDatabaseError`` (default 15 s). A dashboard
        sets a few seconds, so that a database outage answers quickly instead of hanging."""
        _check_seconds(seconds)
        self.sysdb.pool.timeout = float(seconds)

    def set_statement_timeout(self, seconds: float) -> None:
        """End any statement of this client's that runs longer than ``seconds`` (a number > 0;
        the server's ``statement_timeout``; by default none): the call raises a transient
        ``DBOSDatabaseError`` and its connection is free again. A dashboard sets a few seconds,
        so that a table locked by a migration or a long transaction costs the page that reads it
        a 503, not every page's connection. Connections already open are replaced."""
        _check_seconds(seconds)
        pool = self.sysdb.pool
        if not isinstance(pool.kwargs, dict):  # pragma: no cover - our pools are made so
            raise DBOSException("this client's pool takes no connection options")
        given = conninfo_to_dict(self.sysdb.url).get("options") or ""
        pool.kwargs["options"] = f"{given} -c statement_timeout={int(seconds * 1000)}".strip()
        pool.drain()  # reconnect the open ones with the new option

    def list_workflow_page(
        self,
        *,
        status: str | Iterable[str] | None = None,
        workflow_id_prefix: str | None = None,
        name_prefix: str | None = None,
        queue_name: str | None = None,
        app_version: str | None = None,
        start_time: TimeArg = None,
        end_time: TimeArg = None,
        limit: int = 50,
        before: PageKey | None = None,
        after: PageKey | None = None,
        load_output: bool = True,
    ) -> list[WorkflowStatus]:
        """Up to ``limit`` workflows matching the filters (those of ``list_workflows``, plus
        ``name_prefix``: names starting with it), newest first, outputs and errors loaded
        (unless not ``load_output``), inputs not. ``before``: only those older than that key;
        ``after``: the ``limit`` just newer than it (a page back), still newest first. A key is
        ``(created_at epoch ms, workflow_id)`` of a listed workflow.

        Raises:
            DBOSException: a bad filter, limit or key (before any query runs).
        """
        filters = _filters(locals())
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_BIGINT:
            raise DBOSException(f"invalid limit {limit!r}: expected an integer from 1")
        newer, older = _key("after", after), _key("before", before)
        if newer is not None and older is not None:
            raise DBOSException("give before or after, not both")
        if not isinstance(load_output, bool):
            raise DBOSException(f"invalid load_output {load_output!r}: expected True or False")
        return DashboardReads(self.sysdb).page(
            filters, limit=limit, before=older, after=newer, load_output=load_output
        )

    def count_workflows_by_status(
        self,
        *,
        status: str | Iterable[str] | None = None,
        workflow_id_prefix: str | None = None,
        name_prefix: str | None = None,
        queue_name: str | None = None,
        app_version: str | None = None,
        start_time: TimeArg = None,
        end_time: TimeArg = None,
    ) -> dict[str, int]:
        """How many workflows match the filters of ``list_workflow_page``, by status (a status
        with none is absent). A ``status`` filter is checked but not applied: the counts show
        every status, to choose from.

        Raises:
            DBOSException: a bad filter.
        """
        return DashboardReads(self.sysdb).count_by_status(_filters(locals()))

    def get_all_events(self, workflow_id: str) -> dict[str, Any]:
        """Every event the workflow has set (``set_event``), key to value, by key; empty for
        an unknown ID.

        Raises:
            DBOSException: ``workflow_id`` is not a valid workflow ID.
        """
        validate_workflow_id(workflow_id)
        return DashboardReads(self.sysdb).events(workflow_id)

    def list_pending_messages(self, workflow_id: str, *, limit: int = 100) -> list[PendingMessage]:
        """The oldest ``limit`` messages sent to the workflow that no ``recv`` has taken yet, in
        arrival order: each with ``topic`` (None for none), ``value`` and ``created_at`` (epoch
        ms). Empty for an unknown ID.

        Raises:
            DBOSException: ``workflow_id`` is not a valid workflow ID, or a bad ``limit``.
        """
        validate_workflow_id(workflow_id)
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_BIGINT:
            raise DBOSException(f"invalid limit {limit!r}: expected an integer from 1")
        return DashboardReads(self.sysdb).pending_messages(workflow_id, limit)

    list_workflow_page_async = twin(list_workflow_page)
    count_workflows_by_status_async = twin(count_workflows_by_status)
    get_all_events_async = twin(get_all_events)
    list_pending_messages_async = twin(list_pending_messages)

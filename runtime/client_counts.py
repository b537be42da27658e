"""``DBOSClient.count_workflows``: how many workflows a listing's filters match, for a "N more"
footer or a count per status. A part of ``DBOSClient`` of its own, so that the client class stays
within its size limit."""

from __future__ import annotations

from typing import Any

from runtime import management
from runtime.asyncs import twin
from runtime.system_db import SystemDatabase


class ClientCountCalls:
    """Counting workflows through a client's system database (``self.sysdb``)."""

    sysdb: SystemDatabase

    def count_workflows(self, *, at_most: int | None = None, **filters: Any) -> int:
        """How many workflows match every given filter: the filter keywords of
        ``list_workflows`` (``status``, ``name``, ``queue_name``, ``start_time``, ...; not
        ``limit``, ``offset``, ``sort_desc`` or ``load_*``; ``queues_only`` counts what
        ``list_queued_workflows`` lists), checked the same way, counted with the listing's own
        WHERE clause. ``at_most`` (a non-negative integer) bounds the count and its cost: the
        answer is then ``min(matching, at_most)``. An unknown keyword or a bad value raises
        ``DBOSException``."""
        return management.count_workflows(
            self.sysdb, at_most=at_most, **management.list_arguments(filters)
        )

    count_workflows_async = twin(count_workflows)

"""Application versions: the ``dbos.application_versions`` table (DBOS's), and which versions the
live executors run.

Launch registers the process's version; the newest ``version_timestamp`` is the latest version,
and ``set_latest_application_version`` makes a version the latest by moving its timestamp to
now. Kept out of ``SystemDatabase`` (which is at its size limit); it shares that object's pool.

A workflow runs only on executors of its own application version (recovery and the queues pick
it up there). So a workflow resumed, restarted or forked onto a version that no live executor
runs waits until one is launched; ``unserved_warnings`` says so, instead of letting it wait
silently.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TypedDict

from runtime.checkpoint_db import LOCK_IN_KEY_ORDER
from runtime.errors import DBOSException
from runtime.management import executors
from runtime.queries import RESUMABLE
from runtime.serialization import check_text
from runtime.system_db import SystemDatabase

logger = logging.getLogger("dbos")

# The attribute of the log record of a workflow no live executor runs (its ID): a program that
# shows these warnings its own way (the `dbos` CLI) can tell them apart.
UNSERVED_LOG_KEY = "dbos_unserved_workflow"

# A version registered again keeps its timestamp: a relaunch of an old deployment must not make
# it the latest again (DBOS's rule); only set_latest_application_version moves it.
# Times are the database's clock, in epoch milliseconds (one clock for every process).
_REGISTER = """
INSERT INTO dbos.application_versions (version_id, version_name, version_timestamp, created_at)
SELECT %(version_id)s, %(version_name)s, now_ms, now_ms
FROM (SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint AS now_ms) AS t
ON CONFLICT (version_name) DO NOTHING
"""
_LIST = """
SELECT version_id, version_name, version_timestamp, created_at
FROM dbos.application_versions ORDER BY version_timestamp DESC
"""
_LATEST = _LIST + " LIMIT 1"
# The greatest of now and just past the current latest: two promotions in one millisecond (or a
# clock behind the latest) still leave the one promoted last as the latest.
_SET_LATEST = """
UPDATE dbos.application_versions
SET version_timestamp = greatest((extract(epoch FROM clock_timestamp()) * 1000)::bigint,
    (SELECT max(version_timestamp) + 1 FROM dbos.application_versions))
WHERE version_name = %(version_name)s
RETURNING version_id
"""
_VERSIONS_OF = """
SELECT workflow_uuid, application_version FROM dbos.workflow_status
WHERE workflow_uuid = ANY(%(ids)s)
"""
# Resume onto another version: exactly the workflows a resume will take (queries.RESUMABLE: not
# a finished one, nor one still running in a live process, which keeps the version of its code).
_RETARGET = f"""
UPDATE dbos.workflow_status w SET application_version = %(version)s
WHERE w.workflow_uuid = ANY(%(ids)s) AND {RESUMABLE}
"""  # noqa: S608 (constant SQL text; the values are parameters)


class VersionInfo(TypedDict):
    """One registered application version, as DBOS returns it: ``version_id`` (a unique ID),
    ``version_name`` (the version string workflows record), ``version_timestamp`` (epoch
    milliseconds; the newest is the latest version) and ``created_at`` (epoch milliseconds of its
    first registration)."""

    version_id: str
    version_name: str
    version_timestamp: int
    created_at: int


def _info(row: tuple[object, ...]) -> VersionInfo:
    return VersionInfo(
        version_id=str(row[0]),
        version_name=str(row[1]),
        version_timestamp=int(str(row[2])),
        created_at=int(str(row[3])),
    )


def check_version_name(version_name: object) -> str:
    """``version_name`` if it can name a version (a non-empty string); else ``DBOSException``."""
    if not isinstance(version_name, str) or not version_name.strip():
        raise DBOSException(
            f"invalid application version {version_name!r}: expected a non-empty string"
        )
    check_text(version_name, "application version")
    return version_name


class ApplicationVersions:
    """The application versions table, through a system database's pool."""

    def __init__(self, sysdb: SystemDatabase) -> None:
        self.sysdb = sysdb

    def register(self, version_name: str) -> None:
        """Record a version (a known one keeps its timestamp)."""
        with self.sysdb.connection() as conn:
            conn.execute(
                _REGISTER,
                {"version_id": str(uuid.uuid4()), "version_name": check_version_name(version_name)},
            )

    def all_versions(self) -> list[VersionInfo]:
        """Every version, latest first."""
        with self.sysdb.connection() as conn:
            return [_info(r) for r in conn.execute(_LIST).fetchall()]

    def latest(self) -> VersionInfo:
        """The latest version; ``DBOSException`` when none is registered (as in DBOS)."""
        with self.sysdb.connection() as conn:
            row = conn.execute(_LATEST).fetchone()
        if row is None:
            raise DBOSException("No application versions found")
        return _info(row)

    def set_latest(self, version_name: str) -> None:
        """Make a registered version the latest; ``DBOSException`` for an unknown one (nothing
        is registered by a typo)."""
        name = check_version_name(version_name)
        with self.sysdb.connection() as conn:
            row = conn.execute(_SET_LATEST, {"version_name": name}).fetchone()
        if row is None:
            raise DBOSException(f"application version {name!r} is not registered")

    def versions_of(self, workflow_ids: Iterable[str]) -> dict[str, str | None]:
        """The application version each existing workflow records (None when it records none)."""
        with self.sysdb.connection() as conn:
            rows = conn.execute(_VERSIONS_OF, {"ids": list(workflow_ids)}).fetchall()
        return {str(r[0]): r[1] for r in rows}

    def retarget(self, workflow_ids: Iterable[str], version_name: str) -> None:
        """Give the workflows that a resume will take (``queries.RESUMABLE``: CANCELLED,
        MAX_RECOVERY_ATTEMPTS_EXCEEDED, ENQUEUED, DELAYED, or PENDING with its process gone)
        another application version, before they are resumed."""
        name = check_version_name(version_name)
        ids = list(workflow_ids)
        with self.sysdb.connection() as conn, conn.transaction():
            conn.execute(LOCK_IN_KEY_ORDER, {"workflow_ids": ids})  # before the multi-row UPDATE
            conn.execute(_RETARGET, {"ids": ids, "version": name})


@dataclass(frozen=True)
class Unserved:
    """A workflow whose application version no live executor runs."""

    workflow_id: str
    application_version: str | None
    live_versions: list[str]

    def message(self) -> str:
        """One line naming the workflow, its version and the live versions."""
        live = ", ".join(repr(v) for v in self.live_versions) or "none"
        return (
            f"workflow {self.workflow_id} is on application version "
            f"{self.application_version!r}, which no live executor runs (live versions: {live}); "
            "it waits until an executor of that version is launched"
        )


def live_versions(sysdb: SystemDatabase) -> list[str]:
    """The application versions of the live executor processes, sorted."""
    return sorted({e.application_version for e in executors(sysdb, None) if e.state == "ALIVE"})


def unserved(sysdb: SystemDatabase, workflow_ids: Iterable[str]) -> list[Unserved]:
    """The workflows (of ``workflow_ids``, in order) that no live executor can run: their version
    is not one a live executor runs (one that records no version waits only when no executor
    is live at all)."""
    ids = list(dict.fromkeys(workflow_ids))
    if not ids:
        return []
    found = ApplicationVersions(sysdb).versions_of(ids)
    live = live_versions(sysdb)
    return [
        Unserved(wid, found[wid], live)
        for wid in ids
        if wid in found and (found[wid] not in live if found[wid] is not None else not live)
    ]


def warn_unserved(sysdb: SystemDatabase, workflow_ids: Iterable[str]) -> list[Unserved]:
    """``unserved``, each logged as a warning on the ``dbos`` logger; returns them."""
    found = unserved(sysdb, workflow_ids)
    for item in found:
        logger.warning("%s", item.message(), extra={UNSERVED_LOG_KEY: item.workflow_id})
    return found


def resolve_target(sysdb: SystemDatabase, version: str | None, latest: bool) -> str | None:
    """The application version an operator asked a workflow to move to: ``version``, or the
    latest registered one when ``latest``; None for neither. Both at once is an error."""
    if latest and version is not None:
        raise DBOSException("give an application version or ask for the latest, not both")
    if latest:
        return ApplicationVersions(sysdb).latest()["version_name"]
    return None if version is None else check_version_name(version)


def register_at_launch(sysdb: SystemDatabase, version_name: str) -> None:
    """Register a launching process's version, and warn (as DBOS does) when it is not the
    latest: new work that targets the latest version does not come here."""
    versions = ApplicationVersions(sysdb)
    versions.register(version_name)
    latest = versions.latest()["version_name"]
    if latest != version_name:
        logger.warning(
            "application version %r is not the latest version; the latest is %r",
            version_name,
            latest,
        )

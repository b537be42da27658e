"""``DBOSClient``'s application-version calls (DBOS's names), and what the `dbos` CLI needs to move
workflows between versions and to say when a workflow's version has no live executor. A part of
``DBOSClient`` of its own, so that the client class stays within its size limit."""

from __future__ import annotations

from collections.abc import Iterable

from runtime import app_versions, management
from runtime.app_versions import ApplicationVersions, Unserved, VersionInfo
from runtime.asyncs import twin
from runtime.management import Change
from runtime.system_db import SystemDatabase


class ClientVersionCalls:
    """Application versions through a client's system database (``self.sysdb``)."""

    sysdb: SystemDatabase

    def list_application_versions(self) -> list[VersionInfo]:
        """Every registered application version, latest first (see ``VersionInfo``)."""
        return ApplicationVersions(self.sysdb).all_versions()

    def get_latest_application_version(self) -> VersionInfo:
        """The latest application version (the newest ``version_timestamp``); ``DBOSException``
        when none is registered."""
        return ApplicationVersions(self.sysdb).latest()

    def set_latest_application_version(self, version_name: str) -> None:
        """Make a registered version the latest (its timestamp becomes now). Raises
        ``DBOSException`` for a name that is not a registered version."""
        ApplicationVersions(self.sysdb).set_latest(version_name)

    list_application_versions_async = twin(list_application_versions)
    get_latest_application_version_async = twin(get_latest_application_version)
    set_latest_application_version_async = twin(set_latest_application_version)

    def live_application_versions(self) -> list[str]:
        """The application versions the live executor processes run, sorted."""
        return app_versions.live_versions(self.sysdb)

    def unserved_workflows(self, workflow_ids: Iterable[str]) -> list[Unserved]:
        """Those of the workflows whose application version no live executor runs (each with
        its version and the live versions): they wait until an executor of it is launched."""
        return app_versions.unserved(self.sysdb, workflow_ids)

    def resolve_application_version(self, version: str | None, latest: bool) -> str | None:
        """``version``, or the latest registered version when ``latest`` (None for neither;
        ``DBOSException`` for both, or when asked for the latest and none is registered)."""
        return app_versions.resolve_target(self.sysdb, version, latest)

    def resume_each_on(self, workflow_ids: Iterable[str], application_version: str) -> list[Change]:
        """``resume_each``, moving each workflow it resumes to ``application_version`` first
        (its executors run it then, replaying its recorded steps: see ``DBOS.patch``)."""
        ids = list(workflow_ids)
        ApplicationVersions(self.sysdb).retarget(ids, application_version)
        return management.resume_many(self.sysdb, ids)

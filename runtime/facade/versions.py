"""Application versions and patching, as ``DBOS`` has them: listing the registered versions and
choosing the latest (``runtime.app_versions``), and ``patch``/``deprecate_patch`` for changing a
workflow's code while old runs are in flight (``runtime.engine.patching``)."""

from __future__ import annotations

from runtime.app_versions import ApplicationVersions, VersionInfo
from runtime.asyncs import twin
from runtime.facade.base import FacadeBase


class VersionCalls(FacadeBase):
    """Application versions and patches."""

    @classmethod
    def list_application_versions(cls) -> list[VersionInfo]:
        """Every registered application version, latest first: dicts with ``version_id``,
        ``version_name``, ``version_timestamp`` and ``created_at`` (epoch milliseconds). Each
        launched process registers its version."""
        return ApplicationVersions(cls._rt().sysdb).all_versions()

    @classmethod
    def get_latest_application_version(cls) -> VersionInfo:
        """The latest application version (the newest ``version_timestamp``). Raises
        ``DBOSException`` when none is registered."""
        return ApplicationVersions(cls._rt().sysdb).latest()

    @classmethod
    def set_latest_application_version(cls, version_name: str) -> None:
        """Make a registered version the latest (its ``version_timestamp`` becomes now).
        Raises ``DBOSException`` for a name that is not registered."""
        ApplicationVersions(cls._rt().sysdb).set_latest(version_name)

    @classmethod
    def patch(cls, patch_name: str) -> bool:
        """Inside a workflow: True where the workflow takes the patched (new) code, False where
        it started on the code before the patch and must replay the old branch::

            if DBOS.patch("use-new-step"):
                new_step()
            else:
                old_step()

        A fresh run records a marker (a step named ``DBOS.patch-<patch_name>``) and gets True;
        a run whose history holds another operation at this point gets False and records
        nothing. Raises ``DBOSException`` outside a workflow (and inside a step)."""
        return cls._engine().patching.patch(patch_name)

    @classmethod
    async def patch_async(cls, patch_name: str) -> bool:
        """``patch`` for async workflows."""
        return await cls._engine().patching.patch_async(patch_name)

    @classmethod
    def deprecate_patch(cls, patch_name: str) -> bool:
        """Inside a workflow: the step after removing a patch's old branch. Takes the patch's
        marker where the history holds it, records nothing otherwise; always True. Once no
        workflow that recorded the marker is in flight, the call can be removed. Raises
        ``DBOSException`` outside a workflow."""
        return cls._engine().patching.deprecate_patch(patch_name)

    @classmethod
    async def deprecate_patch_async(cls, patch_name: str) -> bool:
        """``deprecate_patch`` for async workflows."""
        return await cls._engine().patching.deprecate_patch_async(patch_name)


class AsyncVersionCalls(VersionCalls):
    """The ``*_async`` twins of the version calls."""

    list_application_versions_async = staticmethod(twin(VersionCalls.list_application_versions))
    get_latest_application_version_async = staticmethod(
        twin(VersionCalls.get_latest_application_version)
    )
    set_latest_application_version_async = staticmethod(
        twin(VersionCalls.set_latest_application_version)
    )

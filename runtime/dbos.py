"""The ``DBOS`` facade: lifecycle here, and the calls users make assembled from the parts in
``runtime.facade`` (one mixin per concern). No SQL and no logic here: decorators capture the call
and hand it to the engine; management calls go to the system database module."""

from __future__ import annotations

import atexit
from pathlib import Path

from runtime import config as config_mod
from runtime import queues, registry
from runtime.composition import Runtime
from runtime.config import DBOSConfig, Settings
from runtime.errors import DBOSException
from runtime.facade.asyncs import AsyncManagementCalls
from runtime.facade.attributes import AttributeCalls
from runtime.facade.base import FacadeBase, classproperty, logger
from runtime.facade.retention import AsyncRetentionCalls
from runtime.facade.schedules import AsyncScheduleCalls
from runtime.facade.streams import StreamCalls
from runtime.facade.versions import AsyncVersionCalls


class DBOS(
    AsyncManagementCalls,
    AsyncScheduleCalls,
    StreamCalls,
    AttributeCalls,
    AsyncVersionCalls,
    AsyncRetentionCalls,
):
    """The one runtime object of a process.

    ``DBOS(config)`` sets it up, ``DBOS.launch()`` connects, migrates, recovers pending workflows
    and starts the background threads; the decorators may be used before either.
    """

    logger = logger

    def __new__(cls, config: DBOSConfig | None = None) -> DBOS:
        with FacadeBase._lock:
            existing = FacadeBase._instance
            if existing is not None:
                if config is not None and config != existing._config_arg:
                    raise DBOSException(
                        "DBOS is already configured with a different config; "
                        "call DBOS.destroy() first"
                    )
                return existing  # type: ignore[no-any-return]
            inst = super().__new__(cls)
            inst._config_arg = dict(config) if config is not None else None  # type: ignore[assignment]
            inst._settings = config_mod.resolve(config, cwd=Path.cwd())
            if inst._settings.log_level is not None:  # DBOS's log_level
                logger.setLevel(inst._settings.log_level.upper())
            FacadeBase._instance = inst
            return inst

    # -- lifecycle --------------------------------------------------------------------------------

    @classmethod
    def launch(cls) -> None:
        """Connect, migrate the system schema if needed, recover this executor's pending
        workflows, and start the background threads. Idempotent. Raises ``DBOSException`` while
        ``dbos workflow check-replay`` imports the app (it must not launch on import)."""
        refusal = FacadeBase.launch_refusal
        if refusal is not None:
            FacadeBase.refused_launches += 1
            raise DBOSException(refusal)
        inst = FacadeBase._instance or DBOS()
        with FacadeBase._lock:
            if FacadeBase._runtime is not None:
                return
            runtime = Runtime(inst._settings)
            FacadeBase._runtime = runtime
        try:
            runtime.start()
        except BaseException:
            with FacadeBase._lock:
                FacadeBase._runtime = None
            runtime.stop(0)
            raise
        _register_exit_hook()
        logger.info(
            "DBOS launched: executor %s, application version %s",
            runtime.settings.executor_id,
            runtime.app_version,
        )

    @classmethod
    def destroy(
        cls,
        *,
        destroy_registry: bool = False,
        workflow_completion_timeout_sec: float = 0,
        step_grace_sec: float = 0.5,
    ) -> None:
        """Stop background threads and close connections. Workflows still running after
        ``workflow_completion_timeout_sec`` stop at their next step and stay PENDING (the next
        launch, or another live executor, recovers them); the steps in progress get
        ``step_grace_sec`` in all to end. While one is still in its step, this process is not
        marked stopped, so no other process runs that step at the same time.
        ``destroy_registry`` (as in DBOS, for tests): also forget the configured instances and the
        declared queues, so that the next test may create them again (functions stay
        registered: they are registered when their module is imported)."""
        # Stop first, then forget: workflows still finishing their step may call DBOS.* meanwhile.
        with FacadeBase._lock:
            runtime = FacadeBase._runtime
        if runtime is not None:
            runtime.stop(workflow_completion_timeout_sec, step_grace_sec)
        with FacadeBase._lock:
            if FacadeBase._runtime is runtime:
                FacadeBase._runtime = None
            FacadeBase._instance = None
        queues.stop_listening()  # listen_queues holds for one launch, as DBOS's instance state
        if destroy_registry:
            registry.forget_instances()
            queues.forget_declared()

    @classproperty
    def config(cls) -> Settings:
        """The resolved settings: the configured instance's, else those of the environment and
        the current folder (reading them configures nothing)."""
        return config_mod.current(FacadeBase._instance)

    @classproperty
    def application_version(cls) -> str:
        """The version recorded on every workflow this process starts. Before launch (or after
        ``destroy()``) the configured one, else ``DBOS__APPVERSION``, else ``""``, as in DBOS."""
        runtime = FacadeBase._runtime
        if runtime is not None:
            return runtime.app_version
        return config_mod.idle_application_version(FacadeBase._instance)

    @classproperty
    def database_url(cls) -> str:
        """The application database in use (the embedded server's when none is configured)."""
        return cls._rt().app_url

    @classproperty
    def executor_id(cls) -> str:
        """This process's executor ID. Before launch (or after ``destroy()``) the configured
        one, else ``DBOS__VMID``, else ``"local"``, as in DBOS."""
        runtime = FacadeBase._runtime
        if runtime is not None:
            return runtime.settings.executor_id
        return config_mod.idle_executor_id(FacadeBase._instance)


_exit_hook_registered = False


def _register_exit_hook() -> None:
    """A script that ends without ``DBOS.destroy()`` still stops cleanly: at interpreter exit its
    executor row is marked stopped (so no one mistakes it for a live process, and others take over
    its unfinished workflows at once), unless a step is still running: then it is alive until the
    process is gone."""
    global _exit_hook_registered
    if not _exit_hook_registered:
        _exit_hook_registered = True
        atexit.register(DBOS.destroy)


queues.bind_enqueuer(DBOS._enqueue, DBOS._enqueue_async)

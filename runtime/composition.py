"""The composition root: builds the parts of a launched runtime, wires them through constructor
arguments and callbacks, and owns their start and stop order. Nothing else constructs them."""

from __future__ import annotations

import uuid

from runtime import registry
from runtime.app_versions import register_at_launch
from runtime.config import Settings
from runtime.db import ensure_database, make_pool
from runtime.deadlines import DeadlineSweep
from runtime.dispatcher import QueueDispatcher
from runtime.embedded import start_project_server
from runtime.engine import Engine
from runtime.executors import ExecutorRegistry
from runtime.listener import (
    CANCEL_CHANNEL,
    EVENT_CHANNEL,
    EXECUTOR_CHANNEL,
    MESSAGE_CHANNEL,
    QUEUE_CHANNEL,
    STREAM_CHANNEL,
    NotificationListener,
    Notifications,
    fan_out,
)
from runtime.messaging import Messaging
from runtime.migrate import check_current, migrate
from runtime.queues import declared_queues
from runtime.recovery import Recovery
from runtime.retention_schedule import RetentionSchedule
from runtime.scheduler import Scheduler
from runtime.schedules import Schedules, StoredSchedules
from runtime.streams import Streams
from runtime.system_db import SystemDatabase


class Runtime:
    """Everything a launched runtime holds; built by ``DBOS.launch()``, torn down by
    ``DBOS.destroy()``."""

    def __init__(self, settings: Settings, *, read_only: bool = False) -> None:
        """``read_only``: a runtime that is never started, for a replay check
        (``runtime.replay_check``): it creates and migrates nothing, and the server refuses every
        write on its connections."""
        self.settings = settings
        app_url = settings.database_url or start_project_server(settings.project_dir)
        sys_url = settings.system_database_url or app_url
        self.app_url = app_url
        # As DBOS does: a configured database that does not exist yet is created.
        for url in dict.fromkeys((app_url, sys_url)) if not read_only else ():
            ensure_database(url)
        schema = settings.system_schema
        if settings.run_migrations and not read_only:
            migrate(sys_url, schema)
        else:
            check_current(sys_url, schema)
        pool_size = max(4, min(settings.max_executor_threads, 32))
        # A transaction left idle this long belongs to a frozen process whose workflows others
        # are taking over: the server ends it and frees its locks.
        idle_s = max(5.0, 2.0 * settings.executor_lease_seconds)
        self.idle_timeout_ms = int(idle_s * 1000)
        self.sysdb = SystemDatabase(
            sys_url,
            pool_size=pool_size,
            idle_in_transaction_timeout_s=idle_s,
            schema=schema,
            read_only=read_only,
        )
        same = sys_url == app_url
        self.app_pool = (
            self.sysdb.pool
            if same
            else make_pool(
                app_url,
                max_size=pool_size,
                idle_in_transaction_timeout_s=idle_s,
                read_only=read_only,
            )
        )
        self.app_version = settings.application_version or registry.application_version()
        self.process_id = uuid.uuid4().hex  # this process, in dbos.executors
        self.engine = Engine(
            self.sysdb,
            self.app_pool,
            executor_id=settings.executor_id,
            application_version=self.app_version,
            same_database=same,
            process_id=self.process_id,
            max_threads=settings.max_executor_threads,
            confirm_ownership_after_s=settings.executor_lease_seconds / 2,
        )
        self.notifications = Notifications(poll_s=settings.polling_interval_s)
        self.messaging = Messaging(self.engine.ops, self.notifications)
        self.streams = Streams(
            self.engine.ops, self.notifications, default_poll_s=settings.polling_interval_s
        )
        self.dispatcher = QueueDispatcher(
            self.engine,
            self.sysdb,
            executor_id=settings.executor_id,
            process_id=self.process_id,
            application_version=self.app_version,
            max_threads=settings.max_executor_threads,
        )
        self.schedules = Schedules(self.sysdb)
        # The managed schedules this process runs: those of the workflows it has registered.
        stored = StoredSchedules(
            self.schedules, lambda name: registry.get_workflow(name) is not None
        )
        self.scheduler = Scheduler(stored.entries)
        self.executors = ExecutorRegistry(
            self.sysdb,
            executor_id=settings.executor_id,
            application_version=self.app_version,
            lease_s=settings.executor_lease_seconds,
            process_id=self.process_id,
            running_steps=self.engine.ops.running_steps,
        )
        self.recovery = Recovery(
            self.engine,
            self.sysdb,
            executor_id=settings.executor_id,
            process_id=self.process_id,
            application_version=self.app_version,
            interval_s=self.executors.interval_s,
            max_threads=settings.max_executor_threads,
        )
        self.deadlines = DeadlineSweep(self.sysdb)
        self.retention = (
            RetentionSchedule(
                self.sysdb, settings.workflow_retention_s, settings.workflow_retention_interval_s
            )
            if settings.workflow_retention_s is not None and not read_only
            else None
        )
        parking = self.engine.parking
        self.listener = NotificationListener(
            sys_url,
            {
                CANCEL_CHANNEL: self.engine.flag_cancel,
                QUEUE_CHANNEL: self.dispatcher.wake,
                EXECUTOR_CHANNEL: self.recovery.wake,
                MESSAGE_CHANNEL: fan_out(self.notifications.messages.notify, parking.on_message),
                EVENT_CHANNEL: fan_out(self.notifications.events.notify, parking.on_event),
                STREAM_CHANNEL: self.notifications.streams.notify,
            },
        )
        self.engine.starter.on_enqueued = self.dispatcher.wake
        self.engine.runs.on_queue_slot_freed = self.dispatcher.slot_freed
        self.engine.pool.on_thread_freed = self.dispatcher.thread_freed
        self.listener.on_reconnect.append(self.notifications.wake_all)
        self.listener.on_reconnect.append(self.dispatcher.wake)
        self.listener.on_reconnect.append(self.engine.runs.flag_all)
        self.listener.on_reconnect.append(parking.sweep_soon)
        self.notifications.is_listening = lambda: self.listener.listening
        parking.is_listening = lambda: self.listener.listening

    def start(self) -> None:
        """Register, listen, recover, then start taking work: in that order, so that this
        process is a live executor before it claims anything."""
        self.executors.register()
        register_at_launch(self.sysdb, self.app_version)
        self.sysdb.record_queue_config(
            [
                {
                    "queue_name": q.name,
                    "concurrency": q.concurrency,
                    "worker_concurrency": q.worker_concurrency,
                    "limit_count": q.limiter["limit"] if q.limiter else None,
                    "limit_period_s": float(q.limiter["period"]) if q.limiter else None,
                    "priority_enabled": q.priority_enabled,
                    "application_version": self.app_version,
                }
                for q in declared_queues()
            ]
        )
        if self.settings.use_listen_notify:
            self.listener.start()
        else:
            # No LISTEN connection: waiters poll (the listener-down mode), and everything that
            # would look again after a reconnect looks once now.
            self.listener.run_reconnect_hooks()
        self.engine.start()
        self.deadlines.start()
        self.recovery.recover_at_launch()
        self.executors.start()
        self.recovery.start()
        self.dispatcher.start()
        self.scheduler.start()
        if self.retention is not None:
            self.retention.start()

    def stop(self, timeout_s: float, step_grace_s: float = 0.5) -> None:
        """Stop taking work, stop the runs (see ``Engine.shutdown``), then hand over and close."""
        if self.retention is not None:
            self.retention.stop()
        self.scheduler.stop()
        self.dispatcher.stop()
        self.recovery.stop_feeding()
        self.engine.shutdown(timeout_s, step_grace_s)
        self.recovery.stop()
        # After the workflows stopped, others may take them over at once. While one is still in
        # a step (it did not stop in time), it must not run in two places: this process keeps
        # heartbeating, and is marked stopped when that step ends; if the process exits first
        # (its step dies with it), a process on this host sees it gone, else its lease runs out.
        live = self.engine.runs.has_live_runs()
        self.executors.stop(release=not live)
        if live:
            self.engine.runs.when_idle(self.executors.finish)
        self.deadlines.stop()
        self.listener.stop()
        if self.app_pool is not self.sysdb.pool:
            self.app_pool.close()
        self.sysdb.close()

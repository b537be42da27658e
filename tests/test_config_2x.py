"""DBOS 2.x configuration keys, against a real Postgres: the system tables in another schema,
launch without migrating, polling instead of LISTEN/NOTIFY, ``application_database_url``, and a
database that does not exist yet."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import psycopg
import psycopg.sql
import pytest

from runtime import DBOS, DBOSClient, DBOSConfig, Queue, SetWorkflowID
from runtime.config import resolve
from runtime.errors import DBOSConfigError, DBOSException, DBOSSchemaMissingError
from runtime.migrate import current_version, latest_version, migrate
from runtime.sysschema import rewrite
from tests.cli_helpers import clean_env, dbos
from tests.conftest import with_database

# A space, a capital and a double quote: the schema must be a quoted identifier everywhere.
ODD_SCHEMA = 'App "Sys" 2'


def _config(url: str, **extra: Any) -> DBOSConfig:
    config: dict[str, Any] = {
        "name": "cfg-app",
        "database_url": url,
        "executor_id": "local",
        "application_version": "v1",
    }
    config.update(extra)
    return config  # type: ignore[return-value]


def _schemas(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT nspname FROM pg_namespace").fetchall()
    return {r[0] for r in rows}


def _scalar(url: str, query: str, params: tuple[Any, ...] = ()) -> Any:
    with psycopg.connect(url) as conn:
        row = conn.execute(query, params).fetchone()  # type: ignore[arg-type]
    assert row is not None
    return row[0]


@pytest.fixture
def fresh() -> Any:
    """Destroy any runtime before and after the test."""
    DBOS.destroy()
    yield
    DBOS.destroy()


# --- dbos_system_schema --------------------------------------------------------------------------


def test_rewrite_touches_only_qualifiers_outside_literals() -> None:
    text = (
        "SELECT 'dbos.x', \"dbos\".y, mydbos.z, x.dbos.w -- don't\n"
        "FROM dbos.workflow_status JOIN dbos.queues ON dbos.queues.q = 'it''s dbos.t'"
    )
    out = rewrite(text, ODD_SCHEMA)
    assert out == (
        "SELECT 'dbos.x', \"dbos\".y, mydbos.z, x.dbos.w -- don't\n"
        'FROM "App ""Sys"" 2".workflow_status JOIN "App ""Sys"" 2".queues '
        'ON "App ""Sys"" 2".queues.q = \'it\'\'s dbos.t\''
    )
    assert rewrite(text, "dbos") is text
    assert rewrite("CREATE SCHEMA IF NOT EXISTS dbos;", "s") == 'CREATE SCHEMA IF NOT EXISTS "s";'
    # The one literal rewritten: a relation of ours cast to regclass (how SQL names a sequence).
    assert (
        rewrite("SELECT nextval('dbos.owner_epoch_seq'::regclass), 'dbos.q'", "it's")
        == "SELECT nextval('\"it''s\".owner_epoch_seq'::regclass), 'dbos.q'"
    )


def test_system_schema_holds_every_system_table(empty_db_url: str, fresh: None) -> None:
    queue = Queue("schema-q")

    @DBOS.step()
    def double(x: int) -> int:
        return 2 * x

    @DBOS.transaction()
    def note(text: str) -> int:
        # User SQL runs as written: its own schema `dbos` and a 'dbos.' literal stay untouched.
        DBOS.sql_session.execute("CREATE SCHEMA IF NOT EXISTS dbos")
        DBOS.sql_session.execute("CREATE TABLE IF NOT EXISTS dbos.user_notes (t text)")
        DBOS.sql_session.execute("INSERT INTO dbos.user_notes VALUES ('dbos.' || %s)", (text,))
        return 1

    @DBOS.workflow()
    def child(x: int) -> int:
        return double(x)

    @DBOS.workflow()
    def parent(x: int) -> int:
        note("hi")
        DBOS.set_event("half", x)
        got = DBOS.recv("go", timeout_seconds=30)
        return int(queue.enqueue(child, x).get_result()) + int(got)

    DBOS(config=_config(empty_db_url, dbos_system_schema=ODD_SCHEMA))
    DBOS.launch()
    with SetWorkflowID("schema-parent"):
        handle = DBOS.start_workflow(parent, 5)
    assert DBOS.get_event("schema-parent", "half", timeout_seconds=30) == 5
    DBOS.send("schema-parent", 100, topic="go")
    assert handle.get_result() == 110
    # Management calls run on the same connections.
    assert len(DBOS.list_workflow_steps("schema-parent")) >= 4
    assert {w.workflow_id for w in DBOS.list_workflows()} >= {"schema-parent"}
    with SetWorkflowID("schema-fork"):
        forked = DBOS.fork_workflow("schema-parent", 4)
    assert forked.get_result() == 110

    assert ODD_SCHEMA in _schemas(empty_db_url)
    rows = _scalar(empty_db_url, 'SELECT count(*) FROM "App ""Sys"" 2".workflow_status')
    assert rows == 4
    assert current_version(empty_db_url, ODD_SCHEMA) == latest_version()
    # The only tables in `dbos` are the user's own.
    assert _scalar(
        empty_db_url,
        "SELECT array_agg(tablename::text) FROM pg_tables WHERE schemaname = 'dbos'",
    ) == ["user_notes"]
    assert _scalar(empty_db_url, "SELECT t FROM dbos.user_notes") == "dbos.hi"

    client = DBOSClient(empty_db_url, dbos_system_schema=ODD_SCHEMA)
    try:
        assert client.retrieve_workflow("schema-parent").get_result() == 110
        assert {w.workflow_id for w in client.list_workflows()} >= {"schema-parent"}
    finally:
        client.destroy()


def test_client_on_the_default_schema_does_not_see_another(empty_db_url: str, fresh: None) -> None:
    migrate(empty_db_url, "elsewhere")
    client = DBOSClient(empty_db_url)
    try:
        with pytest.raises(DBOSSchemaMissingError):
            client.list_workflows()
    finally:
        client.destroy()


def test_cli_honours_schema_option_and_config_key(empty_db_url: str, tmp_path: Path) -> None:
    done = dbos("migrate", "--db-url", empty_db_url, "--schema", "cli_sys", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert current_version(empty_db_url, "cli_sys") == latest_version()
    assert "dbos" not in _schemas(empty_db_url)

    (tmp_path / "dbos.toml").write_text(
        f"[database]\nurl = '{empty_db_url}'\nsystem_schema = 'cli_sys'\n"
    )
    listed = dbos("workflow", "list", cwd=tmp_path, env=clean_env())
    assert listed.returncode == 0, listed.stderr
    again = dbos("migrate", cwd=tmp_path, env=clean_env())
    assert again.returncode == 0 and "up to date" in again.stdout, again.stdout + again.stderr
    dropped = dbos("reset", "-y", cwd=tmp_path, env=clean_env())
    assert dropped.returncode == 0 and "cli_sys" in dropped.stdout, dropped.stdout
    assert "cli_sys" not in _schemas(empty_db_url)


def test_schema_name_is_checked() -> None:
    with pytest.raises(DBOSConfigError, match="dbos_system_schema.*non-empty"):
        resolve({"dbos_system_schema": " "}, environ={})
    with pytest.raises(DBOSConfigError, match="at most 63 bytes"):
        resolve({"dbos_system_schema": "s" * 64}, environ={})


# --- run_migrations ------------------------------------------------------------------------------


def test_run_migrations_false_does_not_create_the_schema(empty_db_url: str, fresh: None) -> None:
    DBOS(config=_config(empty_db_url, run_migrations=False))
    with pytest.raises(DBOSSchemaMissingError, match="run `dbos migrate`"):
        DBOS.launch()
    assert "dbos" not in _schemas(empty_db_url)
    DBOS.destroy()
    migrate(empty_db_url)

    @DBOS.workflow()
    def ok() -> str:
        return "ok"

    DBOS(config=_config(empty_db_url, run_migrations=False))
    DBOS.launch()
    assert ok() == "ok"


def test_run_migrations_false_refuses_an_old_schema(db_url: str, fresh: None) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("DELETE FROM dbos.schema_version WHERE version = %s", (latest_version(),))
    DBOS(config=_config(db_url, run_migrations=False))
    with pytest.raises(DBOSSchemaMissingError, match=f"this runtime needs {latest_version()}"):
        DBOS.launch()


# --- use_listen_notify and the polling interval --------------------------------------------------


def test_without_listen_notify_waits_poll(db_url: str, fresh: None) -> None:
    @DBOS.workflow()
    def waiter() -> Any:
        DBOS.set_event("ready", True)
        return DBOS.recv(timeout_seconds=60)

    tag = f"nolisten-{uuid.uuid4().hex[:8]}"
    config = _config(
        db_url, use_listen_notify=False, notification_listener_polling_interval_sec=0.05
    )
    DBOS(config=config)
    DBOS.launch()
    listens = _scalar(
        with_database(db_url, "postgres"),
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
        "AND query LIKE 'LISTEN%%'",
    )
    assert listens == 0
    with SetWorkflowID(tag):
        handle = DBOS.start_workflow(waiter)
    assert DBOS.get_event(tag, "ready", timeout_seconds=10) is True
    # Another process's send reaches it with no NOTIFY delivered to this one.
    client = DBOSClient(db_url)
    try:
        started = time.monotonic()
        client.send(tag, "hello")
        assert handle.get_result() == "hello"
        assert time.monotonic() - started < 5
    finally:
        client.destroy()
    assert (
        _scalar(
            db_url,
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND query LIKE 'LISTEN%%'",
        )
        == 0
    )


def test_listener_is_up_by_default(db_url: str, fresh: None) -> None:
    DBOS(config=_config(db_url))
    DBOS.launch()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        found = _scalar(
            db_url,
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND query LIKE 'LISTEN%%'",
        )
        if found:
            break
        time.sleep(0.05)
    assert found >= 1


def test_new_keys_are_checked(tmp_path: Path) -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"run_migrations": "no"}, "config['run_migrations']: expected true or false, got str"),
        ({"use_listen_notify": 1}, "config['use_listen_notify']: expected true or false"),
        (
            {"notification_listener_polling_interval_sec": 0},
            "expected at least 0.001 seconds, got 0",
        ),
        (
            {"notification_listener_polling_interval_sec": True},
            "expected a number of seconds, got bool",
        ),
    ]
    for overrides, expected in cases:
        with pytest.raises(DBOSConfigError) as info:
            resolve(overrides, cwd=tmp_path, environ={})  # type: ignore[arg-type]
        assert expected in str(info.value)


def test_new_keys_from_dict_and_file(tmp_path: Path) -> None:
    settings = resolve(cwd=tmp_path, environ={})
    assert (settings.system_schema, settings.run_migrations, settings.use_listen_notify) == (
        "dbos",
        True,
        True,
    )
    assert settings.polling_interval_s is None
    (tmp_path / "dbos.toml").write_text(
        "[database]\nsystem_schema = 'from_file'\n"
        "[runtime]\nrun_migrations = false\nuse_listen_notify = false\n"
        "notification_listener_polling_interval_sec = 2\n"
    )
    settings = resolve(cwd=tmp_path, environ={})
    assert settings.system_schema == "from_file"
    assert (settings.run_migrations, settings.use_listen_notify) == (False, False)
    assert settings.polling_interval_s == 2.0
    over = resolve(
        {"dbos_system_schema": "from_dict", "run_migrations": True}, cwd=tmp_path, environ={}
    )
    assert (over.system_schema, over.run_migrations, over.use_listen_notify) == (
        "from_dict",
        True,
        False,
    )
    (tmp_path / "dbos.toml").write_text("[runtime]\nrun_migrations = 'no'\n")
    with pytest.raises(DBOSConfigError, match=r"\[runtime\] run_migrations: expected true or"):
        resolve(cwd=tmp_path, environ={})


# --- application_database_url --------------------------------------------------------------------


def test_application_database_url_is_database_url(tmp_path: Path) -> None:
    url = "postgresql://u@h/app"
    assert resolve({"application_database_url": url}, cwd=tmp_path, environ={}).database_url == url
    both: DBOSConfig = {"application_database_url": url, "database_url": url}
    assert resolve(both, cwd=tmp_path, environ={}).database_url == url
    # It outranks the environment, as database_url does.
    env = {"DBOS_DATABASE_URL": "postgresql://u@h/env"}
    assert resolve({"application_database_url": url}, cwd=tmp_path, environ=env).database_url == url


def test_application_and_database_url_differing_is_an_error(tmp_path: Path) -> None:
    config: DBOSConfig = {
        "application_database_url": "postgresql://u:secret1@h/a",
        "database_url": "postgresql://u:secret2@h/b",
    }
    with pytest.raises(DBOSConfigError) as info:
        resolve(config, cwd=tmp_path, environ={})
    message = str(info.value)
    assert "'application_database_url' and 'database_url'" in message
    assert "secret" not in message


def test_launch_with_application_database_url(db_url: str, fresh: None) -> None:
    @DBOS.workflow()
    def hello() -> str:
        return "hello"

    DBOS(config={"name": "x", "application_database_url": db_url, "system_database_url": db_url})
    DBOS.launch()
    assert hello() == "hello"
    assert DBOS.database_url == db_url


def test_unknown_keys_are_still_refused(tmp_path: Path) -> None:
    with pytest.raises(DBOSException, match="unknown key 'sys_db_pool_sizes'"):
        resolve({"sys_db_pool_sizes": 3}, cwd=tmp_path, environ={})  # type: ignore[typeddict-unknown-key]


# --- a database that does not exist yet (bug 14) -------------------------------------------------


def _drop(server_url: str, name: str) -> None:
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(
            psycopg.sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                psycopg.sql.Identifier(name)
            )
        )


def _exists(server_url: str, name: str) -> bool:
    return bool(_scalar(server_url, "SELECT count(*) FROM pg_database WHERE datname = %s", (name,)))


def test_launch_creates_missing_app_and_system_databases(pg_server_url: str, fresh: None) -> None:
    app_name = f'New App "{uuid.uuid4().hex[:6]}"'
    sys_name = f"new-sys-{uuid.uuid4().hex[:6]}"
    app_url = with_database(pg_server_url, quote(app_name, safe=""))
    sys_url = with_database(pg_server_url, sys_name)
    try:

        @DBOS.workflow()
        def made() -> str:
            return "made"

        DBOS(config=_config(app_url, system_database_url=sys_url))
        DBOS.launch()
        assert made() == "made"
        assert _exists(pg_server_url, app_name) and _exists(pg_server_url, sys_name)
        assert current_version(sys_url) == latest_version()
    finally:
        DBOS.destroy()
        _drop(pg_server_url, app_name)
        _drop(pg_server_url, sys_name)


def test_missing_database_and_a_role_that_may_not_create_it(
    pg_server_url: str, fresh: None
) -> None:
    role = f"nocreate_{uuid.uuid4().hex[:6]}"
    name = f"never_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(pg_server_url, autocommit=True) as conn:
        conn.execute(psycopg.sql.SQL("CREATE ROLE {} LOGIN").format(psycopg.sql.Identifier(role)))
    try:
        parts = urlsplit(with_database(pg_server_url, name))
        url = urlunsplit(parts._replace(netloc=f"{role}@{parts.hostname}:{parts.port}"))
        DBOS(config=_config(url))
        with pytest.raises(DBOSException) as info:
            DBOS.launch()
        message = str(info.value)
        assert f"the database '{name}' does not exist" in message
        assert "may not create it" in message and "CREATEDB" in message
        assert not _exists(pg_server_url, name)
    finally:
        with psycopg.connect(pg_server_url, autocommit=True) as conn:
            conn.execute(psycopg.sql.SQL("DROP ROLE {}").format(psycopg.sql.Identifier(role)))


def test_cli_migrate_creates_a_missing_database(pg_server_url: str, tmp_path: Path) -> None:
    name = f"cli_new_{uuid.uuid4().hex[:6]}"
    url = with_database(pg_server_url, name)
    try:
        done = dbos("migrate", "--db-url", url, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        assert current_version(url) == latest_version()
    finally:
        _drop(pg_server_url, name)


# --- the DBOS class properties outside a launch (bug 15) -----------------------------------------


def test_class_properties_after_destroy(
    db_url: str, fresh: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DBOS__APPVERSION", raising=False)
    monkeypatch.delenv("DBOS__VMID", raising=False)
    DBOS(config=_config(db_url, application_version="v7", executor_id="exec-7"))
    assert (DBOS.application_version, DBOS.executor_id) == ("v7", "exec-7")
    DBOS.launch()
    assert (DBOS.application_version, DBOS.executor_id) == ("v7", "exec-7")
    DBOS.destroy()
    assert DBOS.application_version == ""
    assert DBOS.executor_id == "local"
    assert DBOS.workflow_id is None and DBOS.step_id is None
    monkeypatch.setenv("DBOS__APPVERSION", "env-v")
    monkeypatch.setenv("DBOS__VMID", "env-exec")
    assert (DBOS.application_version, DBOS.executor_id) == ("env-v", "env-exec")


def test_reading_config_after_destroy_does_not_configure(db_url: str, fresh: None) -> None:
    DBOS.destroy()
    assert DBOS.config.executor_id == "local"
    # Reading it created no instance: a new configuration is still accepted.
    DBOS(config=_config(db_url, executor_id="after-read"))
    assert DBOS.config.executor_id == "after-read"


# --- empty and whitespace-only workflow IDs (bug 9) ----------------------------------------------

BLANK_IDS = ["", "   ", "\t\n"]


@pytest.mark.parametrize("blank", BLANK_IDS)
def test_set_workflow_id_refuses_a_blank_id(blank: str) -> None:
    with pytest.raises(DBOSException, match="workflow IDs must be non-empty"):
        SetWorkflowID(blank)


def _workflow_count(url: str) -> int:
    return int(_scalar(url, "SELECT count(*) FROM dbos.workflow_status"))


@pytest.mark.parametrize("blank", BLANK_IDS)
def test_client_enqueue_refuses_a_blank_id(db_url: str, blank: str) -> None:
    client = DBOSClient(db_url)
    try:
        with pytest.raises(DBOSException, match="invalid workflow_id"):
            client.enqueue({"workflow_name": "wf", "queue_name": "q", "workflow_id": blank}, 1)
    finally:
        client.destroy()
    assert _workflow_count(db_url) == 0


@pytest.mark.parametrize("blank", ["", "  "])
def test_fork_refuses_a_blank_forked_id(db_url: str, fresh: None, blank: str) -> None:
    @DBOS.workflow()
    def forkable() -> int:
        return 1

    DBOS(config=_config(db_url))
    DBOS.launch()
    with SetWorkflowID("fork-source"):
        assert forkable() == 1
    client = DBOSClient(db_url)
    try:
        with pytest.raises(DBOSException, match="invalid forked workflow ID"):
            client.fork_workflow("fork-source", 1, forked_workflow_id=blank)
    finally:
        client.destroy()
    assert _workflow_count(db_url) == 1


# --- a schedule declared after launch (bug 13) ---------------------------------------------------


def test_scheduled_workflow_declared_after_launch_fires(db_url: str, fresh: None) -> None:
    from runtime import scheduler

    ticks: list[datetime] = []
    DBOS(config=_config(db_url))
    DBOS.launch()
    try:

        @DBOS.scheduled("* * * * * *")
        @DBOS.workflow()
        def late_schedule(scheduled: datetime, actual: datetime) -> None:
            ticks.append(scheduled)

        deadline = time.monotonic() + 10
        while len(ticks) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(ticks) >= 2
    finally:
        DBOS.destroy()
        for name in [k for k in scheduler._schedules if k.endswith("late_schedule")]:
            del scheduler._schedules[name]  # keep it out of later tests


def test_killed_process_recovers_in_its_schema(empty_db_url: str) -> None:
    root = Path(__file__).resolve().parent.parent
    env = clean_env(PYTHONPATH=str(root))
    app = [sys.executable, "-m", "tests.apps.schema_app", empty_db_url, ODD_SCHEMA]
    proc = subprocess.Popen([*app, "start"], env=env, cwd=root, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "IN_STEP3"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    done = subprocess.run(
        [*app, "recover"], env=env, cwd=root, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "RESULT ['one', 'two', 'three']" in done.stdout
    with psycopg.connect(empty_db_url) as conn:
        effects = [r[0] for r in conn.execute("SELECT what FROM effects").fetchall()]
        tx = conn.execute("SELECT count(*) FROM tx_effects").fetchone()
    # The completed step and transaction ran once; the step in progress ran again.
    assert sorted(effects) == ["first", "third-recover", "third-start"]
    assert tx == (1,)
    assert "dbos" not in _schemas(empty_db_url)


def test_fencing_token_checks_the_configured_schema(empty_db_url: str, fresh: None) -> None:
    @DBOS.step()
    def guarded() -> int:
        token = DBOS.fencing_token
        assert token is not None
        with psycopg.connect(empty_db_url) as conn, conn.transaction():
            token.check(conn)  # the caller's own connection: no rewriting of its own
            conn.execute("CREATE TABLE IF NOT EXISTS fenced (epoch int)")
            conn.execute("INSERT INTO fenced VALUES (%s)", (token.owner_epoch,))
        return token.owner_epoch

    @DBOS.workflow()
    def flow() -> int:
        return guarded()

    DBOS(config=_config(empty_db_url, dbos_system_schema=ODD_SCHEMA))
    DBOS.launch()
    epoch = flow()
    assert _scalar(empty_db_url, "SELECT epoch FROM fenced") == epoch


def test_dbos_keys_for_features_we_lack_load_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A DBOS app's config carries keys for OpenTelemetry, the admin server, Conductor...: it
    loads; the ones that ask for their feature are named in a warning; log_level applies."""
    import logging

    config: Any = {
        "name": "ported",
        "log_level": "debug",
        "enable_otlp": True,
        "otlp_traces_endpoints": ["http://collector:4318"],
        "run_admin_server": False,
        "sys_db_pool_size": 20,
    }
    with caplog.at_level(logging.WARNING, logger="dbos"):
        settings = resolve(config, cwd=tmp_path, environ={})
    assert settings.log_level == "debug"
    warned = " ".join(r.getMessage() for r in caplog.records)
    assert "'enable_otlp'" in warned and "'otlp_traces_endpoints'" in warned
    assert "'sys_db_pool_size'" in warned and "run_admin_server" not in warned
    with pytest.raises(DBOSConfigError, match="log level"):
        resolve({"log_level": "LOUD"}, cwd=tmp_path, environ={})
    dbos_logger = logging.getLogger("dbos")
    before = dbos_logger.level
    try:
        DBOS(config={"name": "ported", "log_level": "ERROR"})
        assert dbos_logger.level == logging.ERROR
    finally:
        DBOS.destroy()
        dbos_logger.setLevel(before)

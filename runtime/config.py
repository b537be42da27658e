"""Configuration: the application's name, its databases and the identity of this executor.

Every setting is decided on its own, from the first of these sources that provides it:

1. an explicit argument: a command-line flag, or a key of the dict given to ``DBOS(config=...)``;
2. the environment: ``DBOS_DATABASE_URL``, ``DBOS_SYSTEM_DATABASE_URL``, ``DBOS__VMID`` (the
   executor ID) and ``DBOS__APPVERSION`` (the application version). A variable set to the empty
   string counts as unset, so ``DBOS__VMID= dbos start`` behaves like not setting it at all;
3. the configuration file of the current folder (see below);
4. the defaults: the folder's name as the application name, executor ID ``"local"``, no database
   URL (meaning: the project's embedded Postgres), no system URL (meaning: the application
   database, schema ``dbos``), no application version (meaning: computed later from the workflow
   source), 64 executor threads, no module, system schema ``dbos``, migrations at launch,
   LISTEN/NOTIFY, and a 0.5 s poll when no LISTEN connection is up.

In the dict, ``application_database_url`` (DBOS 2.x's name) and ``database_url`` are the same
setting; giving both with different values is a ``DBOSConfigError``.

The configuration file is ``dbos.toml`` in the current folder, or else the ``[tool.dbos]`` table of
the ``pyproject.toml`` there. When both exist, ``dbos.toml`` wins and ``pyproject.toml`` is not
read at all: the two are never merged, so there is a single place to look. Parent folders are not
searched. The file looks like this (in ``pyproject.toml`` the sections are ``[tool.dbos.app]``
and so on)::

    [app]
    name = "shop"
    module = "shop.app"          # what `dbos start` imports

    [database]
    url = "postgresql://user:${PGPASSWORD}@host:5432/shop"
    system_url = "postgresql://user@host:5432/shop_system"
    system_schema = "dbos"       # the schema of the system tables

    [runtime]
    executor_id = "local"
    application_version = "v42"
    max_executor_threads = 64
    executor_lease_seconds = 10
    run_migrations = true        # false: launch checks the schema instead of migrating it
    use_listen_notify = true     # false: no LISTEN connection, waiters poll
    notification_listener_polling_interval_sec = 0.5
    workflow_retention = "30d"   # delete finished workflows older than this (runtime.retention)
    workflow_retention_interval_sec = 3600   # how often one executor collects them

Every string value of the file may hold ``${NAME}`` (replaced by the environment variable, which
must be set) or ``${NAME:-default}`` (the default when the variable is unset or empty, as in the
shell); ``$${`` stands for a literal ``${``. Substitution is not recursive. Unknown sections and
keys, values of the wrong type and malformed TOML are all a ``DBOSConfigError`` naming the file,
the key and what was expected.

URLs may hold passwords: show them only through ``redact_url``.
"""

from __future__ import annotations

import datetime
import logging
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol, TypedDict

from runtime.durations import parse_duration
from runtime.errors import DBOSConfigError

logger = logging.getLogger("dbos")

__all__ = [
    "DBOSConfig",
    "Settings",
    "find_config_file",
    "load_file",
    "parse_duration",
    "redact_url",
    "resolve",
]

CONFIG_FILE = "dbos.toml"
PYPROJECT_FILE = "pyproject.toml"

DEFAULT_EXECUTOR_ID = "local"
DEFAULT_SYSTEM_SCHEMA = "dbos"
DEFAULT_MAX_EXECUTOR_THREADS = 64
DEFAULT_RETENTION_INTERVAL_S = 3600.0
# Only for a project living at the file system's root, whose folder has no name.
FALLBACK_APP_NAME = "dbos-app"

ENV_DATABASE_URL = "DBOS_DATABASE_URL"
ENV_SYSTEM_DATABASE_URL = "DBOS_SYSTEM_DATABASE_URL"
ENV_EXECUTOR_ID = "DBOS__VMID"
ENV_APPLICATION_VERSION = "DBOS__APPVERSION"
ENV_EXECUTOR_LEASE = "DBOS_EXECUTOR_LEASE_SECONDS"
DEFAULT_EXECUTOR_LEASE_SECONDS = 10

# libpq accepts exactly these two prefixes (compared case-sensitively), so we do too: anything
# else would only fail later, at connection time, with a less helpful message.
_URL_PREFIXES = ("postgresql://", "postgres://")


class DBOSConfig(TypedDict, total=False):
    """The dict users pass to ``DBOS(config=...)``; every key is optional and overrides the
    environment and the configuration file."""

    name: str
    #: The application database (DBOS 2.x name); ``database_url`` is its older name.
    application_database_url: str
    database_url: str
    system_database_url: str
    #: The schema of the system tables (default ``dbos``).
    dbos_system_schema: str
    executor_id: str
    application_version: str
    max_executor_threads: int
    executor_lease_seconds: int
    #: False: launch neither creates nor migrates the system schema; it checks it is current.
    run_migrations: bool
    #: False: no LISTEN connection; waiters poll the tables instead.
    use_listen_notify: bool
    #: Seconds between polls of a waiter when no LISTEN connection wakes it (minimum 0.001).
    notification_listener_polling_interval_sec: float
    #: The level of the ``dbos`` logger (``"DEBUG"``, ``"INFO"``, ...), as in DBOS.
    log_level: str
    console_log_level: str
    #: DBOS's: the application version becomes ``PATCHING_ENABLED`` unless one is configured.
    enable_patching: bool
    #: Automatic retention: finished workflows older than this duration (``"30d"``, ``"12h"``)
    #: are deleted by one executor at a time, every ``workflow_retention_interval_sec`` seconds.
    workflow_retention: str
    workflow_retention_interval_sec: float
    # DBOS keys for features this runtime does not have (see ``DBOS_KEYS_IGNORED``): accepted so
    # that a DBOS app's config loads; a value that asks for the feature logs a warning.
    sys_db_pool_size: int
    sys_db_polling_concurrency: int
    db_engine_kwargs: dict[str, Any]
    otlp_log_level: str
    otlp_traces_endpoints: list[str]
    otlp_logs_endpoints: list[str]
    otlp_attributes: dict[str, str]
    enable_otlp: bool
    admin_port: int
    run_admin_server: bool
    conductor_key: str
    conductor_url: str
    conductor_executor_metadata: dict[str, Any]
    serializer: Any
    system_database_engine: Any
    notification_coalesce_sec: float
    scheduler_polling_interval_sec: float
    kafka_queue_polling_interval_sec: float
    otel_attribute_format: str


@dataclass(frozen=True, repr=False)
class Settings:
    """The fully resolved configuration. ``repr()`` masks the passwords of the URLs."""

    name: str
    #: None: use the project's embedded Postgres.
    database_url: str | None
    #: None: the system tables live in the application database (schema ``dbos``).
    system_database_url: str | None
    executor_id: str
    #: None: computed later from the workflow source.
    application_version: str | None
    max_executor_threads: int
    #: An executor silent for longer than this is dead: live executors take over its workflows.
    executor_lease_seconds: int
    #: The module ``dbos start`` imports, if configured.
    module: str | None
    #: The folder holding the config file, or the working folder; embedded data goes in ``.dbos``.
    project_dir: Path
    #: The file that was read, if any.
    config_file: Path | None
    #: The schema holding the system tables.
    system_schema: str = "dbos"
    #: Whether launch creates and migrates the system schema (else it only checks it).
    run_migrations: bool = True
    #: Whether waiters are woken by LISTEN/NOTIFY (else they only poll).
    use_listen_notify: bool = True
    #: How often a waiter polls when LISTEN is not in use, in seconds; None: the built-in 0.5 s.
    polling_interval_s: float | None = None
    #: The level of the ``dbos`` logger (DBOS's ``log_level``); None: left as it is.
    log_level: str | None = None
    #: Automatic retention: delete finished workflows older than this many seconds; None: never.
    workflow_retention_s: float | None = None
    #: Seconds between two automatic collections (the first comes soon after launch).
    workflow_retention_interval_s: float = DEFAULT_RETENTION_INTERVAL_S

    def __repr__(self) -> str:
        # Settings end up in logs and tracebacks; the generated repr would print passwords.
        database_url = None if self.database_url is None else redact_url(self.database_url)
        system_url = (
            None if self.system_database_url is None else redact_url(self.system_database_url)
        )
        return (
            f"Settings(name={self.name!r}, database_url={database_url!r}, "
            f"system_database_url={system_url!r}, executor_id={self.executor_id!r}, "
            f"application_version={self.application_version!r}, "
            f"max_executor_threads={self.max_executor_threads!r}, "
            f"executor_lease_seconds={self.executor_lease_seconds!r}, module={self.module!r}, "
            f"project_dir={self.project_dir!r}, config_file={self.config_file!r}, "
            f"system_schema={self.system_schema!r}, run_migrations={self.run_migrations!r}, "
            f"use_listen_notify={self.use_listen_notify!r}, "
            f"polling_interval_s={self.polling_interval_s!r})"
        )


# What each value must be: a non-empty string, a Postgres URL, a dotted module name, an int > 0,
# a schema name (a Postgres identifier), a boolean, or a number of seconds >= 0.001.
_Kind = Literal[
    "text", "url", "module", "positive_int", "schema", "bool", "interval", "log_level", "duration"
]
# Kinds whose file values are never substituted (a string there is simply the wrong type).
_NOT_TEXT: tuple[_Kind, ...] = ("positive_int", "bool", "interval")
# Postgres truncates identifiers longer than this many bytes (NAMEDATALEN - 1).
_MAX_IDENTIFIER_BYTES = 63
_MIN_POLLING_INTERVAL_S = 0.001

# The sections and keys of the file, in the order the error messages list them.
_FILE_SCHEMA: dict[str, dict[str, _Kind]] = {
    "app": {"name": "text", "module": "module"},
    "database": {"url": "url", "system_url": "url", "system_schema": "schema"},
    "runtime": {
        "executor_id": "text",
        "application_version": "text",
        "max_executor_threads": "positive_int",
        "executor_lease_seconds": "positive_int",
        "run_migrations": "bool",
        "use_listen_notify": "bool",
        "notification_listener_polling_interval_sec": "interval",
        "workflow_retention": "duration",
        "workflow_retention_interval_sec": "interval",
    },
}

# Must list exactly the keys of DBOSConfig.
_OVERRIDE_SCHEMA: dict[str, _Kind] = {
    "name": "text",
    "application_database_url": "url",
    "database_url": "url",
    "system_database_url": "url",
    "dbos_system_schema": "schema",
    "executor_id": "text",
    "application_version": "text",
    "max_executor_threads": "positive_int",
    "executor_lease_seconds": "positive_int",
    "run_migrations": "bool",
    "use_listen_notify": "bool",
    "notification_listener_polling_interval_sec": "interval",
    "log_level": "log_level",
    "console_log_level": "log_level",
    "enable_patching": "bool",
    "workflow_retention": "duration",
    "workflow_retention_interval_sec": "interval",
}

# Keys of DBOS's config for features this runtime does not have (OpenTelemetry export, the admin
# server, Conductor, pluggable serializers, engine options of SQLAlchemy's system database, ...).
# A DBOS app's config carries them, so they are accepted; one that asks for its feature (any value
# but None, False or empty) logs a warning naming it, since it has no effect here.
DBOS_KEYS_IGNORED = (
    "sys_db_pool_size",
    "sys_db_polling_concurrency",
    "db_engine_kwargs",
    "otlp_log_level",
    "otlp_traces_endpoints",
    "otlp_logs_endpoints",
    "otlp_attributes",
    "enable_otlp",
    "admin_port",
    "run_admin_server",
    "conductor_key",
    "conductor_url",
    "conductor_executor_metadata",
    "serializer",
    "system_database_engine",
    "notification_coalesce_sec",
    "scheduler_polling_interval_sec",
    "kafka_queue_polling_interval_sec",
    "otel_attribute_format",
)
# The application version of an app configured with DBOS's ``enable_patching`` (DBOS's value).
PATCHING_VERSION = "PATCHING_ENABLED"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def find_config_file(start: Path | None = None) -> Path | None:
    """The configuration file of the folder ``start`` (default: the working folder), or None.

    That is ``dbos.toml`` if it exists, else ``pyproject.toml`` if it has a ``[tool.dbos]`` table.
    Only ``start`` itself is searched, not its parents. A ``pyproject.toml`` that is not valid TOML
    is a ``DBOSConfigError``, since it may hold the configuration.
    """
    folder = Path.cwd() if start is None else start
    config = folder / CONFIG_FILE
    if config.is_file():
        return config
    pyproject = folder / PYPROJECT_FILE
    if pyproject.is_file():
        tool = _parse_toml(pyproject).get("tool")
        if isinstance(tool, dict) and "dbos" in tool:
            return pyproject
    return None


def load_file(path: Path, *, environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Read, check and substitute the configuration file ``path``.

    ``path`` is a ``dbos.toml``-style file, or a ``pyproject.toml`` whose ``[tool.dbos]`` table is
    read. ``${VAR}`` references are resolved from ``environ`` (default: ``os.environ``). Returns
    one dict per section (``"app"``, ``"database"``, ``"runtime"``, always all three) holding the
    keys the file sets, e.g. ``{"app": {"name": "shop"}, "database": {}, "runtime": {}}``.
    Raises ``DBOSConfigError`` naming the file, the key and what was expected.
    """
    env = os.environ if environ is None else environ
    shown = _display(path)
    document = _parse_toml(path)
    if path.name == PYPROJECT_FILE:
        tool = document.get("tool")
        if not isinstance(tool, dict) or "dbos" not in tool:
            raise DBOSConfigError(f"{shown}: no [tool.dbos] table")
        table = tool["dbos"]
        if not isinstance(table, dict):
            raise DBOSConfigError(
                f"{shown}: [tool.dbos]: expected a table, got {_toml_type(table)}"
            )
        prefix, top = "tool.dbos.", "in [tool.dbos]"
    else:
        table, prefix, top = document, "", "at top level"

    result: dict[str, Any] = {section: {} for section in _FILE_SCHEMA}
    for section, body in table.items():
        if section not in _FILE_SCHEMA:
            expected = ", ".join(_FILE_SCHEMA)
            if isinstance(body, dict):
                raise DBOSConfigError(
                    f"{shown}: unknown section [{prefix}{section}] (expected one of: {expected})"
                )
            raise DBOSConfigError(
                f"{shown}: unknown key {section!r} {top} (expected one of the sections: {expected})"
            )
        if not isinstance(body, dict):
            raise DBOSConfigError(
                f"{shown}: [{prefix}{section}]: expected a table, got {_toml_type(body)}"
            )
        keys = _FILE_SCHEMA[section]
        for key, raw in body.items():
            if key not in keys:
                raise DBOSConfigError(
                    f"{shown}: unknown key {key!r} in [{prefix}{section}] "
                    f"(expected one of: {', '.join(keys)})"
                )
            where = f"{shown}: [{prefix}{section}] {key}"
            value: object = raw
            # Substitute before checking the value, so that e.g. a URL is checked as it will be
            # used; an int key never substitutes (a string there is simply the wrong type).
            if isinstance(raw, str) and keys[key] not in _NOT_TEXT:
                value = _substitute(raw, env, where)
            problem = _problem(value, keys[key], _toml_type)
            if problem is not None:
                raise DBOSConfigError(f"{where}: {problem}")
            result[section][key] = value
    return result


def resolve(
    overrides: DBOSConfig | None = None,
    *,
    cwd: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Resolve every setting: ``overrides``, then ``environ`` (default ``os.environ``), then the
    configuration file of ``cwd`` (default: the working folder), then the defaults.

    Raises ``DBOSConfigError`` for an invalid override, environment variable or file; values that
    a higher-precedence source shadows are not looked at.
    """
    env = os.environ if environ is None else environ
    project_dir = (Path.cwd() if cwd is None else cwd).resolve()
    given = _check_overrides(overrides)
    config_file = find_config_file(project_dir)
    sections: dict[str, Any] = (
        load_file(config_file, environ=env)
        if config_file is not None
        else {section: {} for section in _FILE_SCHEMA}
    )
    app: dict[str, object] = sections["app"]
    database: dict[str, object] = sections["database"]
    runtime: dict[str, object] = sections["runtime"]

    def pick(key: str, var: str | None, from_file: object) -> object:
        """The first source that sets ``key``; None when none does."""
        if given.get(key) is not None:
            return given[key]
        if var is not None:
            raw: object = env.get(var)
            if raw:  # An empty variable counts as unset (see the module docstring).
                if _OVERRIDE_SCHEMA[key] == "positive_int" and str(raw).strip().isdigit():
                    raw = int(str(raw))
                problem = _problem(raw, _OVERRIDE_SCHEMA[key], _python_type)
                if problem is not None:
                    raise DBOSConfigError(f"environment variable {var}: {problem}")
                return raw
        return from_file

    name = _as_str(pick("name", None, app.get("name")))
    app_url = _as_str(pick("database_url", ENV_DATABASE_URL, database.get("url")))
    interval = pick(
        "notification_listener_polling_interval_sec",
        None,
        runtime.get("notification_listener_polling_interval_sec"),
    )
    threads = pick("max_executor_threads", None, runtime.get("max_executor_threads"))
    lease = pick(
        "executor_lease_seconds", ENV_EXECUTOR_LEASE, runtime.get("executor_lease_seconds")
    )
    retention = pick("workflow_retention", None, runtime.get("workflow_retention"))
    every = pick(
        "workflow_retention_interval_sec", None, runtime.get("workflow_retention_interval_sec")
    )
    return Settings(
        name=name or project_dir.name or FALLBACK_APP_NAME,
        database_url=app_url,
        system_database_url=_as_str(
            pick("system_database_url", ENV_SYSTEM_DATABASE_URL, database.get("system_url"))
        ),
        executor_id=_as_str(pick("executor_id", ENV_EXECUTOR_ID, runtime.get("executor_id")))
        or DEFAULT_EXECUTOR_ID,
        # DBOS's enable_patching pins the version (unless one is configured), so that every
        # deployment of a patched app is one version and in-flight workflows stay servable.
        application_version=_as_str(
            given.get("application_version")
            or (PATCHING_VERSION if given.get("enable_patching") else None)
            or pick(
                "application_version", ENV_APPLICATION_VERSION, runtime.get("application_version")
            )
        ),
        max_executor_threads=threads if isinstance(threads, int) else DEFAULT_MAX_EXECUTOR_THREADS,
        executor_lease_seconds=lease if isinstance(lease, int) else DEFAULT_EXECUTOR_LEASE_SECONDS,
        module=_as_str(app.get("module")),
        project_dir=project_dir,
        config_file=config_file,
        system_schema=_as_str(pick("dbos_system_schema", None, database.get("system_schema")))
        or DEFAULT_SYSTEM_SCHEMA,
        run_migrations=_as_bool(pick("run_migrations", None, runtime.get("run_migrations"))),
        use_listen_notify=_as_bool(
            pick("use_listen_notify", None, runtime.get("use_listen_notify"))
        ),
        polling_interval_s=float(interval) if isinstance(interval, int | float) else None,
        log_level=_as_str(given.get("log_level") or given.get("console_log_level")),
        workflow_retention_s=parse_duration(retention) if isinstance(retention, str) else None,
        workflow_retention_interval_s=(
            float(every) if isinstance(every, int | float) else DEFAULT_RETENTION_INTERVAL_S
        ),
    )


class _Configured(Protocol):
    """The configured ``DBOS`` instance, as far as this module needs it."""

    _settings: Settings


def current(instance: _Configured | None) -> Settings:
    """``instance``'s settings, else those that ``DBOS()`` would resolve now (without creating
    an instance: reading the configuration must not configure the process)."""
    return instance._settings if instance is not None else resolve(None, cwd=Path.cwd())


def idle_application_version(
    instance: _Configured | None, environ: Mapping[str, str] | None = None
) -> str:
    """``DBOS.application_version`` while nothing is launched, as DBOS answers it: the configured
    version, else ``DBOS__APPVERSION``, else ``""``. Never raises."""
    if instance is not None and instance._settings.application_version:
        return instance._settings.application_version
    return (os.environ if environ is None else environ).get(ENV_APPLICATION_VERSION, "")


def idle_executor_id(instance: _Configured | None, environ: Mapping[str, str] | None = None) -> str:
    """``DBOS.executor_id`` while nothing is launched: the configured ID, else ``DBOS__VMID``,
    else ``"local"``. Never raises."""
    if instance is not None:
        return instance._settings.executor_id
    return (os.environ if environ is None else environ).get(ENV_EXECUTOR_ID) or DEFAULT_EXECUTOR_ID


# --- password masking ----------------------------------------------------------------------------

_MASK = "***"
_URL_HEAD = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*://)(.*)\Z", re.DOTALL)
# One host of the authority: a bracketed IPv6 address or a name, then an optional numeric port.
_HOST = r"(?:\[[^\]]*\]|[^:/?#@\[\],]*)(?::[0-9]*)?"
# libpq accepts several comma-separated hosts.
_HOST_LIST = re.compile(rf"{_HOST}(?:,{_HOST})*")
# `?password=...` and `&sslpassword=...` in a URL's query string.
_QUERY_PASSWORD = re.compile(r"([?&][^=&]*password=)[^&]*", re.IGNORECASE)
# `password=...` in a keyword/value connection string (`host=x password='a b'`).
_DSN_PASSWORD = re.compile(r"(\w*password\s*=\s*)('(?:[^'\\]|\\.)*'?|\S*)", re.IGNORECASE)


def redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***``: the one of ``user:password@`` and the
    values of ``password`` / ``sslpassword`` query parameters.

    Use it whenever a URL is shown. It never raises: when the URL is ambiguous (say, a password
    with an unencoded ``/`` or ``@``) or not a URL at all, everything between the first ``:`` and
    the last ``@`` is masked, erring towards hiding too much.
    """
    try:
        text = url if isinstance(url, str) else str(url)
        head = _URL_HEAD.match(text)
        if head is None:
            return _redact_loose(text)
        return _mask_query_passwords(head.group(1) + _redact_after_scheme(head.group(2)))
    except Exception:  # Shown in error messages: failing here would hide the original error.
        try:
            return _redact_loose(str(url))
        except Exception:
            return _MASK


def _redact_after_scheme(rest: str) -> str:
    """Mask the password of the part of a URL that follows ``scheme://``."""
    # The authority ends at the first '/', '?' or '#'; its user info ends at its last '@' (an
    # unencoded '@' in a password then stays inside the user info, as with urllib).
    ends = [i for i in (rest.find("/"), rest.find("?"), rest.find("#")) if i != -1]
    end = min(ends, default=len(rest))
    authority, tail = rest[:end], rest[end:]
    userinfo, at, hosts = authority.rpartition("@")
    if _HOST_LIST.fullmatch(hosts) is None or _has_stray_at(tail):
        # The split above went wrong, most likely at a '/', '?' or '#' inside the password
        # (`user:pa/ss@host` gives the host `user` and the port `pa`): mask conservatively.
        return _mask_to_last_at(rest)
    if not at:
        return rest
    user, colon, _password = userinfo.partition(":")
    return f"{user}{':' + _MASK if colon else ''}@{hosts}{tail}"


def _has_stray_at(tail: str) -> bool:
    """Whether an '@' after the authority suggests the user info was cut short: one in the path
    (database names with '@' are rare) or in a query parameter's name (values like
    ``user=me@corp`` are fine)."""
    path, _, query = tail.partition("?")
    return "@" in path or any("@" in part.partition("=")[0] for part in query.split("&"))


def _mask_to_last_at(text: str) -> str:
    """Mask everything between the first ':' and the last '@' (nothing if there is no ':' there)."""
    at = text.rfind("@")
    colon = text.find(":", 0, max(at, 0))
    if at == -1 or colon == -1:
        return text
    return text[: colon + 1] + _MASK + text[at:]


def _mask_query_passwords(text: str) -> str:
    """Mask the values of query parameters whose name ends in ``password``."""
    return _QUERY_PASSWORD.sub(lambda m: m.group(1) + _MASK, text)


def _redact_loose(text: str) -> str:
    """Mask what looks like a password in text that is not a ``scheme://`` URL."""
    masked = _DSN_PASSWORD.sub(lambda m: m.group(1) + _MASK, _mask_to_last_at(text))
    return _mask_query_passwords(masked)


# --- helpers -------------------------------------------------------------------------------------


def warn_unsupported(where: str, given: Mapping[str, object], keys: tuple[str, ...]) -> None:
    """Log one warning naming the ``keys`` (DBOS options for features this runtime does not
    have) that ``given`` sets to something that asks for the feature: any value but None,
    False or empty."""
    asked = [repr(k) for k in keys if given.get(k) not in (None, False, "", [], {})]
    if asked:
        logger.warning(
            "%s %s: DBOS features this runtime does not have; ignored", where, ", ".join(asked)
        )


# A `${NAME}` or `${NAME:-default}` reference, the `$${` escape, or (last) any other `${`, which is
# a malformed reference: rejecting it beats silently keeping a typo like `${DB URL}` in a URL.
_REFERENCE = re.compile(
    r"\$\$\{|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?P<has_default>:-(?P<default>[^}]*))?\}|\$\{"
)


def _substitute(value: str, environ: Mapping[str, str], where: str) -> str:
    """``value`` with its ``${...}`` references replaced; ``where`` prefixes error messages."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$${":
            return "${"
        name = match.group("name")
        if name is None:
            # The value is not echoed: it may be a URL holding a password.
            raise DBOSConfigError(
                f"{where}: malformed variable reference at character {match.start() + 1} "
                "(expected ${NAME} or ${NAME:-default}; write $${ for a literal ${)"
            )
        found = environ.get(name)
        if match.group("has_default") is not None:
            # As in the shell, `:-` applies to an empty variable too.
            return found if found else match.group("default")
        if found is None:
            raise DBOSConfigError(
                f"{where}: environment variable {name} is not set "
                f"(write ${{{name}:-default}} to give a default)"
            )
        return found

    return _REFERENCE.sub(replace, value)


# The longest period a timer may wait: a year is already no schedule at all, and far beyond it a
# thread's wait overflows the platform's time_t (threading.TIMEOUT_MAX).
_MAX_INTERVAL_S = 366 * 86_400


def _problem(value: object, kind: _Kind, describe: Callable[[object], str]) -> str | None:
    """What is wrong with ``value`` as a ``kind`` ("expected ..., got ..."), or None if nothing.
    ``describe`` names the type of a wrong value (TOML's names for a file, Python's for a dict)."""
    if kind == "bool":
        return None if isinstance(value, bool) else f"expected true or false, got {describe(value)}"
    if kind == "interval":
        if isinstance(value, bool) or not isinstance(value, int | float):
            return f"expected a number of seconds, got {describe(value)}"
        if not math.isfinite(value) or value < _MIN_POLLING_INTERVAL_S:
            return f"expected at least {_MIN_POLLING_INTERVAL_S} seconds, got {value}"
        if value > _MAX_INTERVAL_S:
            return f"expected at most {_MAX_INTERVAL_S} seconds (a year), got {value}"
        return None
    if kind == "duration":
        if not isinstance(value, str):
            return f"expected a duration such as '30d' or '12h', got {describe(value)}"
        try:
            parse_duration(value)
        except ValueError as exc:
            return str(exc)
        return None
    if kind == "positive_int":
        # bool is an int subclass, but `max_executor_threads = true` is surely a mistake.
        if isinstance(value, bool) or not isinstance(value, int):
            return f"expected a positive integer, got {describe(value)}"
        return None if value > 0 else f"expected a positive integer, got {value}"
    if not isinstance(value, str):
        return f"expected a string, got {describe(value)}"
    if not value.strip():
        return "expected a non-empty string"
    if kind == "url" and not value.startswith(_URL_PREFIXES):
        return (
            f"expected a URL starting with postgresql:// or postgres://, got {redact_url(value)!r}"
        )
    if kind == "schema" and ("\0" in value or len(value.encode()) > _MAX_IDENTIFIER_BYTES):
        return f"expected a schema name of at most {_MAX_IDENTIFIER_BYTES} bytes, got {value!r}"
    if kind == "log_level" and value.upper() not in LOG_LEVELS:
        return f"expected a log level ({', '.join(LOG_LEVELS)}), got {value!r}"
    if kind == "module" and not all(part.isidentifier() for part in value.split(".")):
        return f"expected a dotted module name such as 'shop.app', got {value!r}"
    return None


def _check_overrides(overrides: DBOSConfig | None) -> dict[str, object]:
    """The explicit settings as a plain dict, after checking their keys and values."""
    if overrides is None:
        return {}
    if not isinstance(overrides, Mapping):
        raise DBOSConfigError(f"config: expected a dict, got {_python_type(overrides)}")
    warn_unsupported("config", overrides, DBOS_KEYS_IGNORED)
    overrides = {k: v for k, v in overrides.items() if k not in DBOS_KEYS_IGNORED}  # type: ignore[assignment]
    unknown = [key for key in overrides if key not in _OVERRIDE_SCHEMA]
    if unknown:
        raise DBOSConfigError(
            f"config: unknown key{'s' if len(unknown) > 1 else ''} "
            f"{', '.join(repr(key) for key in unknown)} "
            f"(expected one of: {', '.join(_OVERRIDE_SCHEMA)})"
        )
    checked: dict[str, object] = dict(overrides)
    for key, value in checked.items():
        problem = _problem(value, _OVERRIDE_SCHEMA[key], _python_type)
        if problem is not None:
            raise DBOSConfigError(f"config[{key!r}]: {problem}")
    # `application_database_url` is DBOS 2.x's name for `database_url`: one setting, two names.
    newer = checked.pop("application_database_url", None)
    if newer is not None:
        older = checked.get("database_url")
        if older is not None and older != newer:
            raise DBOSConfigError(
                "config: 'application_database_url' and 'database_url' name the same setting "
                f"but differ ({redact_url(str(newer))!r} and {redact_url(str(older))!r}); "
                "give only one"
            )
        checked["database_url"] = newer
    return checked


def _parse_toml(path: Path) -> dict[str, Any]:
    """The parsed TOML document at ``path``; any failure is a ``DBOSConfigError`` naming it."""
    shown = _display(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DBOSConfigError(f"{shown}: cannot read the file: {exc.strerror or exc}") from exc
    try:
        # utf-8-sig: tolerate the byte-order mark some Windows editors write.
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DBOSConfigError(f"{shown}: not valid UTF-8 (byte {exc.start}: {exc.reason})") from exc
    import tomli  # here, not at import: only a command that reads a TOML file pays for it

    try:
        return tomli.loads(text)
    except tomli.TOMLDecodeError as exc:
        # tomli's message ends with "(at line L, column C)".
        raise DBOSConfigError(f"{shown}: invalid TOML: {exc}") from exc


def _display(path: Path) -> str:
    """``path`` as shown in messages: relative to the working folder when inside it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError):
        return str(path)


def _toml_type(value: object) -> str:
    """The TOML name of the type of a parsed value."""
    if isinstance(value, bool):  # Before int: bool is an int subclass.
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "table"
    if isinstance(value, datetime.datetime):  # Before date: datetime is a date subclass.
        return "datetime"
    if isinstance(value, datetime.date):
        return "date"
    if isinstance(value, datetime.time):
        return "time"
    return type(value).__name__


def _python_type(value: object) -> str:
    """The Python name of the type of a value given in code or the environment."""
    return "None" if value is None else type(value).__name__


def _as_bool(value: object) -> bool:
    """``value`` if it is a boolean (values are checked before this), else the default, True."""
    return value if isinstance(value, bool) else True


def _as_str(value: object) -> str | None:
    """``value`` if it is a string (values are checked before this), else None."""
    return value if isinstance(value, str) else None

"""Tests of runtime.config: finding and checking the config file, precedence, substitution and
password masking. No database needed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from runtime.config import (
    DBOSConfig,
    Settings,
    find_config_file,
    load_file,
    redact_url,
    resolve,
)
from runtime.errors import DBOSConfigError

URL_FILE = "postgresql://file@filehost:5432/shop"
URL_ENV = "postgresql://env@envhost:5432/shop"
URL_ARG = "postgresql://arg@arghost:5432/shop"


def write(folder: Path, text: str, name: str = "dbos.toml") -> Path:
    """Write a config file into folder and return its path."""
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def config_error(folder: Path, text: str, name: str = "dbos.toml", **env: str) -> str:
    """The message of the DBOSConfigError that resolving a folder holding this file raises."""
    write(folder, text, name)
    with pytest.raises(DBOSConfigError) as info:
        resolve(cwd=folder, environ=env)
    return str(info.value)


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the developer's own DBOS_* variables out of the tests that read os.environ."""
    for var in (
        "DBOS_DATABASE_URL",
        "DBOS_SYSTEM_DATABASE_URL",
        "DBOS__VMID",
        "DBOS__APPVERSION",
    ):
        monkeypatch.delenv(var, raising=False)


# --- finding the file ----------------------------------------------------------------------------


def test_find_config_file_none_in_empty_folder(tmp_path: Path) -> None:
    assert find_config_file(tmp_path) is None


def test_find_config_file_dbos_toml(tmp_path: Path) -> None:
    path = write(tmp_path, "[app]\nname = 'x'\n")
    assert find_config_file(tmp_path) == path


def test_find_config_file_defaults_to_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, "")
    monkeypatch.chdir(tmp_path)
    found = find_config_file()
    assert found is not None and found.resolve() == (tmp_path / "dbos.toml").resolve()


def test_find_config_file_does_not_search_parents(tmp_path: Path) -> None:
    write(tmp_path, "[app]\nname = 'parent'\n")
    child = tmp_path / "child"
    child.mkdir()
    assert find_config_file(child) is None


def test_find_config_file_pyproject_with_tool_dbos(tmp_path: Path) -> None:
    path = write(tmp_path, "[tool.dbos.app]\nname = 'x'\n", "pyproject.toml")
    assert find_config_file(tmp_path) == path


def test_pyproject_without_tool_dbos_is_no_config(tmp_path: Path) -> None:
    write(tmp_path, "[project]\nname = 'pkg'\n[tool.ruff]\nline-length = 100\n", "pyproject.toml")
    assert find_config_file(tmp_path) is None
    settings = resolve(cwd=tmp_path, environ={})
    assert settings.config_file is None
    assert settings.name == tmp_path.name


def test_dbos_toml_wins_over_pyproject(tmp_path: Path) -> None:
    dbos = write(tmp_path, "[app]\nname = 'from-dbos-toml'\n")
    # Even an invalid [tool.dbos] is ignored: pyproject.toml is not read at all.
    write(
        tmp_path,
        "[tool.dbos.app]\nname = 'from-pyproject'\n[tool.dbos.bogus]\nx = 1\n",
        "pyproject.toml",
    )
    assert find_config_file(tmp_path) == dbos
    settings = resolve(cwd=tmp_path, environ={})
    assert settings.name == "from-dbos-toml"
    assert settings.config_file == dbos


def test_pyproject_tool_dbos_is_read(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "[project]\nname = 'pkg'\n\n"
        "[tool.dbos.app]\nname = 'shop'\nmodule = 'shop.app'\n"
        f"[tool.dbos.database]\nurl = '{URL_FILE}'\n"
        "[tool.dbos.runtime]\nexecutor_id = 'e1'\nmax_executor_threads = 8\n",
        "pyproject.toml",
    )
    settings = resolve(cwd=tmp_path, environ={})
    assert settings.config_file == path
    assert (settings.name, settings.module, settings.database_url) == ("shop", "shop.app", URL_FILE)
    assert (settings.executor_id, settings.max_executor_threads) == ("e1", 8)


# --- defaults and precedence ---------------------------------------------------------------------


def test_defaults_without_any_source(tmp_path: Path) -> None:
    settings = resolve(cwd=tmp_path, environ={})
    assert settings == Settings(
        name=tmp_path.name,
        database_url=None,
        system_database_url=None,
        executor_id="local",
        application_version=None,
        max_executor_threads=64,
        executor_lease_seconds=10,
        module=None,
        project_dir=tmp_path.resolve(),
        config_file=None,
    )


def test_project_dir_is_the_folder_of_the_config_file(tmp_path: Path) -> None:
    path = write(tmp_path, "[app]\nname = 'shop'\n")
    settings = resolve(cwd=tmp_path, environ={})
    assert settings.project_dir == tmp_path.resolve()
    assert settings.config_file == path.resolve()


def test_resolve_defaults_to_cwd_and_os_environ(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path, "[app]\nname = 'shop'\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DBOS__VMID", "from-os-environ")
    settings = resolve()
    assert settings.name == "shop"
    assert settings.executor_id == "from-os-environ"
    assert settings.project_dir == tmp_path.resolve()


# (override key, environment variable or None, file section, file key, file/env/arg values)
PRECEDENCE_CASES: list[tuple[str, str | None, str, str, tuple[Any, Any, Any]]] = [
    ("name", None, "app", "name", ("file-name", None, "arg-name")),
    ("database_url", "DBOS_DATABASE_URL", "database", "url", (URL_FILE, URL_ENV, URL_ARG)),
    (
        "system_database_url",
        "DBOS_SYSTEM_DATABASE_URL",
        "database",
        "system_url",
        (URL_FILE, URL_ENV, URL_ARG),
    ),
    ("executor_id", "DBOS__VMID", "runtime", "executor_id", ("file-ex", "env-ex", "arg-ex")),
    (
        "application_version",
        "DBOS__APPVERSION",
        "runtime",
        "application_version",
        ("v-file", "v-env", "v-arg"),
    ),
    ("max_executor_threads", None, "runtime", "max_executor_threads", (8, None, 16)),
]
DEFAULTS: dict[str, Any] = {
    "database_url": None,
    "system_database_url": None,
    "executor_id": "local",
    "application_version": None,
    "max_executor_threads": 64,
}


def _toml_value(value: Any) -> str:
    return str(value) if isinstance(value, int) else f'"{value}"'


@pytest.mark.parametrize(("key", "var", "section", "file_key", "values"), PRECEDENCE_CASES)
def test_precedence_argument_then_environment_then_file_then_default(
    tmp_path: Path,
    key: str,
    var: str | None,
    section: str,
    file_key: str,
    values: tuple[Any, Any, Any],
) -> None:
    file_value, env_value, arg_value = values
    default = DEFAULTS.get(key, tmp_path.name)
    environ = {var: env_value} if var is not None else {}
    overrides: Any = {key: arg_value}

    # Default only.
    assert getattr(resolve(cwd=tmp_path, environ={}), key) == default
    # The file beats the default.
    write(tmp_path, f"[{section}]\n{file_key} = {_toml_value(file_value)}\n")
    assert getattr(resolve(cwd=tmp_path, environ={}), key) == file_value
    # The environment beats the file.
    if var is not None:
        assert getattr(resolve(cwd=tmp_path, environ=environ), key) == env_value
    # The argument beats the environment and the file.
    assert getattr(resolve(overrides, cwd=tmp_path, environ=environ), key) == arg_value


def test_module_comes_from_the_file(tmp_path: Path) -> None:
    assert resolve(cwd=tmp_path, environ={}).module is None
    write(tmp_path, "[app]\nmodule = 'shop.app'\n")
    assert resolve(cwd=tmp_path, environ={}).module == "shop.app"


def test_settings_are_independent_per_key(tmp_path: Path) -> None:
    write(tmp_path, f"[database]\nurl = '{URL_FILE}'\n[runtime]\nexecutor_id = 'file-ex'\n")
    settings = resolve({"executor_id": "arg-ex"}, cwd=tmp_path, environ={})
    assert settings.executor_id == "arg-ex"
    assert settings.database_url == URL_FILE  # not shadowed by the unrelated override


def test_empty_environment_variable_counts_as_unset(tmp_path: Path) -> None:
    write(tmp_path, f"[database]\nurl = '{URL_FILE}'\n[runtime]\nexecutor_id = 'file-ex'\n")
    settings = resolve(cwd=tmp_path, environ={"DBOS_DATABASE_URL": "", "DBOS__VMID": ""})
    assert settings.database_url == URL_FILE
    assert settings.executor_id == "file-ex"


def test_invalid_environment_url_names_the_variable(tmp_path: Path) -> None:
    with pytest.raises(DBOSConfigError) as info:
        resolve(cwd=tmp_path, environ={"DBOS_DATABASE_URL": "mysql://u:hunter2@h/db"})
    message = str(info.value)
    assert "DBOS_DATABASE_URL" in message
    assert "postgresql://" in message
    assert "hunter2" not in message


def test_shadowed_environment_value_is_not_checked(tmp_path: Path) -> None:
    settings = resolve(
        {"database_url": URL_ARG}, cwd=tmp_path, environ={"DBOS_DATABASE_URL": "mysql://h/db"}
    )
    assert settings.database_url == URL_ARG


def test_postgres_scheme_is_accepted(tmp_path: Path) -> None:
    url = "postgres://u@h/db"
    assert resolve({"database_url": url}, cwd=tmp_path, environ={}).database_url == url


# --- overrides -----------------------------------------------------------------------------------


def test_override_non_string_url(tmp_path: Path) -> None:
    bad: Any = {"database_url": 5432}
    with pytest.raises(DBOSConfigError, match=r"config\['database_url'\]: expected a string"):
        resolve(bad, cwd=tmp_path, environ={})


def test_override_none_is_not_a_string(tmp_path: Path) -> None:
    bad: Any = {"executor_id": None}
    with pytest.raises(DBOSConfigError, match=r"config\['executor_id'\]: expected a string"):
        resolve(bad, cwd=tmp_path, environ={})


def test_override_unknown_keys_are_named(tmp_path: Path) -> None:
    bad: Any = {"databse_url": URL_ARG, "name": "ok", "threads": 3}
    with pytest.raises(DBOSConfigError) as info:
        resolve(bad, cwd=tmp_path, environ={})
    message = str(info.value)
    assert "'databse_url'" in message and "'threads'" in message
    assert "database_url" in message.split("expected one of:")[1]


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"database_url": "mysql://h/db"}, "config['database_url']: expected a URL starting"),
        ({"system_database_url": ""}, "config['system_database_url']: expected a non-empty"),
        ({"max_executor_threads": 0}, "config['max_executor_threads']: expected a positive"),
        ({"max_executor_threads": True}, "expected a positive integer, got bool"),
        ({"max_executor_threads": "8"}, "expected a positive integer, got str"),
        ({"name": "  "}, "config['name']: expected a non-empty string"),
    ],
)
def test_override_invalid_values(tmp_path: Path, overrides: Any, expected: str) -> None:
    with pytest.raises(DBOSConfigError) as info:
        resolve(overrides, cwd=tmp_path, environ={})
    assert expected in str(info.value)


def test_override_must_be_a_mapping(tmp_path: Path) -> None:
    bad: Any = [("name", "x")]
    with pytest.raises(DBOSConfigError, match="config: expected a dict, got list"):
        resolve(bad, cwd=tmp_path, environ={})


def test_override_error_masks_password(tmp_path: Path) -> None:
    bad: DBOSConfig = {"database_url": "mysql://u:hunter2@h/db"}
    with pytest.raises(DBOSConfigError) as info:
        resolve(bad, cwd=tmp_path, environ={})
    assert "hunter2" not in str(info.value)


# --- substitution --------------------------------------------------------------------------------


def test_substitution_of_variables(tmp_path: Path) -> None:
    write(
        tmp_path,
        "[app]\nname = '${APP}-${STAGE}'\n"
        "[database]\nurl = 'postgresql://u:${PW}@${HOST:-localhost}:5432/db'\n",
    )
    settings = resolve(cwd=tmp_path, environ={"APP": "shop", "STAGE": "prod", "PW": "s3"})
    assert settings.name == "shop-prod"
    assert settings.database_url == "postgresql://u:s3@localhost:5432/db"


def test_substitution_default_used_when_unset_or_empty(tmp_path: Path) -> None:
    write(tmp_path, "[runtime]\nexecutor_id = '${VMID:-fallback}'\n")
    assert resolve(cwd=tmp_path, environ={}).executor_id == "fallback"
    assert resolve(cwd=tmp_path, environ={"VMID": ""}).executor_id == "fallback"
    assert resolve(cwd=tmp_path, environ={"VMID": "set"}).executor_id == "set"


def test_substitution_is_not_recursive_and_escapes(tmp_path: Path) -> None:
    write(tmp_path, "[runtime]\napplication_version = '${V}/$${V}'\n")
    settings = resolve(cwd=tmp_path, environ={"V": "${OTHER}"})
    assert settings.application_version == "${OTHER}/${V}"


def test_substitution_uses_os_environ_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, "[app]\nname = '${MY_APP_NAME}'\n")
    monkeypatch.setenv("MY_APP_NAME", "from-env")
    assert load_file(path)["app"] == {"name": "from-env"}


def test_missing_variable_names_file_key_and_variable(tmp_path: Path) -> None:
    message = config_error(tmp_path, "[database]\nurl = 'postgresql://u:${DB_PASSWORD}@h/db'\n")
    assert "dbos.toml: [database] url: environment variable DB_PASSWORD is not set" in message


def test_missing_variable_in_pyproject_names_the_table(tmp_path: Path) -> None:
    message = config_error(
        tmp_path, "[tool.dbos.runtime]\nexecutor_id = '${NOPE}'\n", "pyproject.toml"
    )
    assert "pyproject.toml: [tool.dbos.runtime] executor_id:" in message
    assert "NOPE" in message


def test_malformed_reference_is_an_error(tmp_path: Path) -> None:
    message = config_error(tmp_path, "[app]\nname = 'a${DB NAME}'\n")
    assert "dbos.toml: [app] name: malformed variable reference" in message


def test_substituted_url_is_checked(tmp_path: Path) -> None:
    message = config_error(tmp_path, "[database]\nurl = '${URL}'\n", URL="mysql://h/db")
    assert "dbos.toml: [database] url: expected a URL starting with postgresql://" in message


def test_load_file_returns_all_sections(tmp_path: Path) -> None:
    path = write(tmp_path, "[app]\nname = '${N:-shop}'\n[runtime]\nmax_executor_threads = 3\n")
    assert load_file(path, environ={}) == {
        "app": {"name": "shop"},
        "database": {},
        "runtime": {"max_executor_threads": 3},
    }


def test_load_file_pyproject_without_tool_dbos(tmp_path: Path) -> None:
    path = write(tmp_path, "[project]\nname = 'pkg'\n", "pyproject.toml")
    with pytest.raises(DBOSConfigError, match=r"pyproject.toml: no \[tool.dbos\] table"):
        load_file(path, environ={})


# --- validation of the file ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "[database]\nurl = 5432\n",
            "dbos.toml: [database] url: expected a string, got integer",
        ),
        (
            "[databse]\nurl = 'x'\n",
            "dbos.toml: unknown section [databse] (expected one of: app, database, runtime)",
        ),
        (
            "[database]\nuri = 'x'\n",
            "dbos.toml: unknown key 'uri' in [database] "
            "(expected one of: url, system_url, system_schema)",
        ),
        (
            "name = 'shop'\n",
            "dbos.toml: unknown key 'name' at top level (expected one of the sections: app, "
            "database, runtime)",
        ),
        ("app = 'shop'\n", "dbos.toml: [app]: expected a table, got string"),
        (
            "[database]\nurl = 'mysql://h/db'\n",
            "dbos.toml: [database] url: expected a URL starting with postgresql:// or "
            "postgres://, got 'mysql://h/db'",
        ),
        (
            "[database]\nsystem_url = 'localhost:5432'\n",
            "dbos.toml: [database] system_url: expected a URL starting with postgresql://",
        ),
        (
            "[runtime]\nmax_executor_threads = 0\n",
            "dbos.toml: [runtime] max_executor_threads: expected a positive integer, got 0",
        ),
        (
            "[runtime]\nmax_executor_threads = -3\n",
            "dbos.toml: [runtime] max_executor_threads: expected a positive integer, got -3",
        ),
        (
            "[runtime]\nmax_executor_threads = true\n",
            "dbos.toml: [runtime] max_executor_threads: expected a positive integer, got boolean",
        ),
        (
            "[runtime]\nmax_executor_threads = '8'\n",
            "dbos.toml: [runtime] max_executor_threads: expected a positive integer, got string",
        ),
        (
            "[runtime]\nmax_executor_threads = 2.5\n",
            "dbos.toml: [runtime] max_executor_threads: expected a positive integer, got float",
        ),
        (
            "[runtime]\nexecutor_id = ['a']\n",
            "dbos.toml: [runtime] executor_id: expected a string, got array",
        ),
        (
            "[runtime]\napplication_version = 2024-01-01\n",
            "dbos.toml: [runtime] application_version: expected a string, got date",
        ),
        ("[app]\nname = ''\n", "dbos.toml: [app] name: expected a non-empty string"),
        (
            "[app]\nmodule = 'shop/app.py'\n",
            "dbos.toml: [app] module: expected a dotted module name such as 'shop.app', "
            "got 'shop/app.py'",
        ),
    ],
)
def test_invalid_file_messages(tmp_path: Path, text: str, expected: str) -> None:
    assert expected in config_error(tmp_path, text)


def test_invalid_pyproject_messages_name_the_table(tmp_path: Path) -> None:
    message = config_error(tmp_path, "[tool.dbos.databse]\nurl = 'x'\n", "pyproject.toml")
    assert "pyproject.toml: unknown section [tool.dbos.databse]" in message
    message = config_error(tmp_path, "[tool.dbos.database]\nurl = 1\n", "pyproject.toml")
    assert "pyproject.toml: [tool.dbos.database] url: expected a string, got integer" in message
    message = config_error(tmp_path, "[tool]\ndbos = 1\n", "pyproject.toml")
    assert "pyproject.toml: [tool.dbos]: expected a table, got integer" in message


def test_file_url_error_masks_password(tmp_path: Path) -> None:
    message = config_error(tmp_path, "[database]\nurl = 'mysql://u:hunter2@h/db'\n")
    assert "[database] url" in message
    assert "hunter2" not in message


def test_toml_syntax_error_names_file_and_position(tmp_path: Path) -> None:
    message = config_error(tmp_path, "[app]\nname = \n")
    assert "dbos.toml: invalid TOML:" in message
    assert "line 2" in message and "column" in message


def test_toml_syntax_error_in_pyproject(tmp_path: Path) -> None:
    message = config_error(tmp_path, "[project\n", "pyproject.toml")
    assert "pyproject.toml: invalid TOML:" in message and "line 1" in message


def test_invalid_utf8_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "dbos.toml").write_bytes(b"[app]\nname = '\xff'\n")
    with pytest.raises(DBOSConfigError, match=r"dbos.toml: not valid UTF-8"):
        resolve(cwd=tmp_path, environ={})


def test_error_names_the_file_relative_to_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    message = config_error(tmp_path, "[database]\nurl = 5432\n")
    assert message == "dbos.toml: [database] url: expected a string, got integer"


# --- redact_url ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://u:secret@h:5432/db", "postgresql://u:***@h:5432/db"),
        (
            "postgres://u:secret@h/db?sslmode=require",
            "postgres://u:***@h/db?sslmode=require",
        ),
        ("postgresql://u@h:5432/db", "postgresql://u@h:5432/db"),
        ("postgresql://h:5432/db", "postgresql://h:5432/db"),
        ("postgresql://u:@h/db", "postgresql://u:***@h/db"),
        (
            "postgresql:///db?host=/tmp&password=secret&sslmode=disable",
            "postgresql:///db?host=/tmp&password=***&sslmode=disable",
        ),
        ("postgresql://h/db?PASSWORD=secret", "postgresql://h/db?PASSWORD=***"),
        ("postgresql://h/db?sslpassword=secret", "postgresql://h/db?sslpassword=***"),
        ("postgresql://u:secret@[::1]:5432/db", "postgresql://u:***@[::1]:5432/db"),
        ("postgresql://u:secret@h1:5432,h2:5433/db", "postgresql://u:***@h1:5432,h2:5433/db"),
        ("postgresql://u:se%40cret@h/db", "postgresql://u:***@h/db"),
        ("postgresql://u:se@cret@h/db", "postgresql://u:***@h/db"),
        ("postgresql://u:se/cret@h/db", "postgresql://u:***@h/db"),
        ("postgresql://u:se?cret@h/db", "postgresql://u:***@h/db"),
        ("postgresql://u:12#34@h/db", "postgresql://u:***@h/db"),
        ("postgresql://u:1234/56@h/db", "postgresql://u:***@h/db"),
        ("postgresql://h:5432/db?user=me@corp", "postgresql://h:5432/db?user=me@corp"),
        ("postgresql://me@corp:secret@h/db", "postgresql://me@corp:***@h/db"),
        ("u:secret@h/db", "u:***@h/db"),
        ("host=h user=u password=secret dbname=db", "host=h user=u password=*** dbname=db"),
        ("host=h password='sec ret' dbname=db", "host=h password=*** dbname=db"),
        ("", ""),
    ],
)
def test_redact_url(url: str, expected: str) -> None:
    assert redact_url(url) == expected


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://user:secret@host/db",
        "postgresql://user:secret@",
        "postgresql://:secret@host",
        "postgresql://user:secret@[::1",
        "postgresql://user:secret@host:notaport/db",
        "postgresql://user:pa:secret@host/db",
        "postgresql://user:secret/x?y#z@host/db?password=secret",
        "postgresql://h/db?a=1&password=secret",
        "postgresql:user:secret@host",
        "://user:secret@",
        "not a url but user:secret@here",
        "password=secret",
        "postgresql://user:sec\nret@host/db",
    ],
)
def test_redact_url_never_shows_the_password(url: str) -> None:
    redacted = redact_url(url)
    assert "secret" not in redacted
    assert "***" in redacted


@pytest.mark.parametrize("url", ["", "://", "postgresql://", "postgresql://[", "@@::@@", "%zz"])
def test_redact_url_never_raises(url: str) -> None:
    assert isinstance(redact_url(url), str)


def test_redact_url_tolerates_a_non_string() -> None:
    not_a_string: Any = b"postgresql://u:secret@h/db"
    assert "secret" not in redact_url(not_a_string)


def test_settings_repr_masks_passwords(tmp_path: Path) -> None:
    settings = resolve(
        {
            "database_url": "postgresql://u:hunter2@h/db",
            "system_database_url": "postgresql://u:swordfish@h/sys",
        },
        cwd=tmp_path,
        environ={},
    )
    text = repr(settings)
    assert "hunter2" not in text and "swordfish" not in text
    assert "postgresql://u:***@h/db" in text
    assert settings.database_url == "postgresql://u:hunter2@h/db"  # the value itself is intact


def test_executor_lease_from_file_and_environment(tmp_path: Path) -> None:
    write(tmp_path, "[runtime]\nexecutor_lease_seconds = 30\n")
    assert resolve(cwd=tmp_path, environ={}).executor_lease_seconds == 30
    env = {"DBOS_EXECUTOR_LEASE_SECONDS": "4"}
    assert resolve(cwd=tmp_path, environ=env).executor_lease_seconds == 4
    with pytest.raises(DBOSConfigError, match="DBOS_EXECUTOR_LEASE_SECONDS"):
        resolve(cwd=tmp_path, environ={"DBOS_EXECUTOR_LEASE_SECONDS": "soon"})
    write(tmp_path, "[runtime]\nexecutor_lease_seconds = 0\n")
    with pytest.raises(DBOSConfigError, match="executor_lease_seconds"):
        resolve(cwd=tmp_path, environ={})

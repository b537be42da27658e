"""The schema of the system tables (``dbos_system_schema``), applied to every statement at once.

The statements of the runtime (``queries``, ``system_db``, ``migrate``, the migrations) name the
system tables as ``dbos.<table>``. When the configured schema is another one, a connection of the
system database gets a cursor class that rewrites each statement's text before it is sent: every
``dbos.`` qualifier outside string literals and quoted identifiers becomes the quoted schema name
(and so does a literal cast to ``regclass``, ``'dbos.owner_epoch_seq'::regclass``, which names
one of our relations).
The rewritten text is cached per statement, so a statement is rewritten once per process, not once
per call; with the default schema nothing is installed and statements run exactly as written.

User SQL (``DBOS.sql_session`` inside a transaction) runs on a connection of the same pool when
the application and system databases are one: ``user_statements`` turns the rewriting off around
it, since a user's own ``dbos`` schema or a ``'dbos.'`` literal is not ours to touch.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any, ClassVar

import psycopg
from psycopg import sql

__all__ = [
    "DEFAULT_SCHEMA",
    "install",
    "qualified",
    "rewrite",
    "user_statements",
]

DEFAULT_SCHEMA = "dbos"

# A comment, a string literal ('...' with '' escapes; E'...' with backslash escapes) or a quoted
# identifier, kept as is (a comment's apostrophe must not open a literal); or a `dbos.` qualifier
# that is not part of a longer name, rewritten. Dollar-quoted bodies (the trigger functions of
# the migrations) are code naming our tables, so they are rewritten like the rest.
_TOKENS = re.compile(
    r"""(?P<regclass>'dbos\.(?P<relation>\w+)'::regclass)"""
    r"""|(?P<keep>--[^\n]*|/\*.*?\*/|[eE]'(?:[^'\\]|\\.|'')*'|'(?:[^']|'')*'|"(?:[^"]|"")*")"""
    r"""|(?<![\w$."])(?P<qualifier>dbos)(?=\.)""",
    re.DOTALL,
)
# `CREATE SCHEMA IF NOT EXISTS dbos` and `DROP SCHEMA dbos`: the schema named without a dot.
_SCHEMA_STATEMENT = re.compile(r"(\bSCHEMA\s+(?:IF\s+(?:NOT\s+)?EXISTS\s+)?)dbos\b", re.IGNORECASE)


def qualified(schema: str) -> str:
    """``schema`` as a quoted SQL identifier (``"my schema"``)."""
    return '"' + schema.replace('"', '""') + '"'


@functools.lru_cache(maxsize=4096)
def rewrite(text: str, schema: str) -> str:
    """``text`` with its ``dbos.`` qualifiers (and the schema of ``CREATE``/``DROP SCHEMA``)
    naming ``schema`` instead; string literals and quoted identifiers are left alone."""
    if schema == DEFAULT_SCHEMA:
        return text
    name = qualified(schema)

    def replace(match: re.Match[str]) -> str:
        if match.group("regclass") is not None:
            # ``'dbos.owner_epoch_seq'::regclass``: a relation of ours named in a literal, the
            # only way SQL names a sequence; the one kind of literal that is rewritten.
            return "'" + name.replace("'", "''") + "." + match.group("relation") + "'::regclass"
        return match.group("keep") if match.group("keep") is not None else name

    renamed = _TOKENS.sub(replace, text)
    return _SCHEMA_STATEMENT.sub(lambda m: m.group(1) + name, renamed)


class _SchemaCursor(psycopg.Cursor[Any]):
    """A cursor that sends its statements with the system schema substituted."""

    schema: ClassVar[str] = DEFAULT_SCHEMA

    def _text(self, query: Any) -> Any:
        if isinstance(query, str):
            return rewrite(query, self.schema)
        if isinstance(query, bytes):
            return rewrite(query.decode(), self.schema).encode()
        if isinstance(query, sql.Composable):
            return rewrite(query.as_string(self.connection), self.schema)
        return query

    def execute(
        self,
        query: Any,
        params: Any = None,
        *,
        prepare: bool | None = None,
        binary: bool | None = None,
    ) -> Any:
        return super().execute(self._text(query), params, prepare=prepare, binary=binary)

    def executemany(
        self, query: Any, params_seq: Iterable[Any], *, returning: bool = False
    ) -> None:
        super().executemany(self._text(query), params_seq, returning=returning)


@functools.lru_cache(maxsize=64)
def _cursor_class(schema: str) -> type[psycopg.Cursor[Any]]:
    return type(f"SchemaCursor[{schema}]", (_SchemaCursor,), {"schema": schema})


def install(conn: psycopg.Connection[Any], schema: str) -> None:
    """Have ``conn`` run its statements against ``schema``; nothing to do for ``dbos``."""
    if schema != DEFAULT_SCHEMA:
        conn.cursor_factory = _cursor_class(schema)


@contextmanager
def user_statements(conn: psycopg.Connection[Any]) -> Iterator[None]:
    """Send the statements of the block exactly as written (user SQL), then rewrite again."""
    factory = conn.cursor_factory
    if factory is psycopg.Cursor:
        yield
        return
    conn.cursor_factory = psycopg.Cursor
    try:
        yield
    finally:
        conn.cursor_factory = factory

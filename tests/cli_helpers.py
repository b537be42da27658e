"""Run the real `dbos` executable in a subprocess, as an operator would."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

DBOS = str(Path(sys.executable).with_name("dbos"))


def clean_env(**extra: str) -> dict[str, str]:
    """The environment minus any DBOS setting of the developer's shell, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DBOS")}
    env["COLUMNS"] = "200"
    env.update(extra)
    return env


def dbos(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run `dbos ARGS...` and capture its output."""
    return subprocess.run(
        [DBOS, *args],
        cwd=cwd,
        env=env if env is not None else clean_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def free_port() -> int:
    """A TCP port on loopback that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def dashboard(
    db_url: str, *args: str, port: int | None = None, cwd: Path | None = None
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A real `dbos ui --port P ARGS... --db-url DB_URL` process, once it accepts connections:
    yields its base URL and the process; stopped (SIGINT, then killed) on exit."""
    port = port or free_port()
    proc = subprocess.Popen(
        [DBOS, "ui", "--port", str(port), *args, "--db-url", db_url],
        cwd=cwd,
        env=clean_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                assert time.monotonic() < deadline and proc.poll() is None, "dbos ui did not start"
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}", proc
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

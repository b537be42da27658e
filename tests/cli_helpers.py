"""Run the real `dbos` executable in a subprocess, as an operator would."""

from __future__ import annotations

import os
import subprocess
import sys
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

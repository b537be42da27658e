"""The embedded Postgres servers this user has started, wherever they are: one small file per
server in the user's state folder (``$XDG_STATE_HOME/dbos/embedded-servers``, else
``~/.local/state/dbos/embedded-servers``), written when a server is started or reused and removed
when it is stopped. ``dbos postgres status`` lists those still running and forgets the others, so
a server left running by a project folder long forgotten can be found and stopped.

Bookkeeping only: a folder that cannot be written (a read-only home) never stops a server from
starting, it just goes unlisted.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path


def registry_dir() -> Path:
    """The folder holding one file per known server."""
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "dbos" / "embedded-servers"


def _entry(base_dir: Path) -> Path:
    import hashlib  # here: loading OpenSSL costs every `dbos` start ~8 ms

    digest = hashlib.sha256(str(base_dir.resolve()).encode()).hexdigest()[:20]
    return registry_dir() / f"{digest}.json"


def remember(base_dir: Path) -> None:
    """Note that the server whose data is in ``base_dir/pgdata`` runs. Never raises."""
    # The list only helps `dbos postgres status` find servers: an unwritable cache directory
    # must not stop a server from starting.
    with contextlib.suppress(OSError):
        entry = _entry(base_dir)
        entry.parent.mkdir(parents=True, exist_ok=True)
        entry.write_text(json.dumps({"base_dir": str(base_dir.resolve())}) + "\n")


def forget(base_dir: Path) -> None:
    """Drop the note of a stopped server. Never raises."""
    with contextlib.suppress(OSError):
        _entry(base_dir).unlink(missing_ok=True)


def known() -> list[Path]:
    """The folders (each holding ``pgdata``) of every server noted as started, sorted; whether
    each still runs is for the caller to check (``EmbeddedPostgres.status``)."""
    found: set[Path] = set()
    try:
        entries = list(registry_dir().glob("*.json"))
    except OSError:
        return []
    for entry in entries:
        try:
            base = json.loads(entry.read_text()).get("base_dir")
        except (OSError, ValueError, AttributeError):
            continue
        if isinstance(base, str):
            found.add(Path(base))
    return sorted(found)

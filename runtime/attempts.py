"""A retried step's failed attempts, as they are stored with its outcome.

A step with ``retries_allowed`` may fail several attempts before it succeeds or gives up. The
engine keeps each failed attempt's number, times and error while the step runs, and its one
checkpoint write stores them beside the outcome (``operation_outputs.attempts``, migration 14), so
an operator sees every attempt (the dashboard, ``dbos workflow steps --json``) at no extra round
trip. Stored as JSON text: a list of ``{"attempt": n, "started_at": ms, "completed_at": ms,
"error": "Type: message"}``, the error cut at ``MAX_ERROR_CHARS`` and the list at its last
``MAX_KEPT`` entries (a step allowed thousands of attempts must not grow its row without bound).
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["MAX_ERROR_CHARS", "MAX_KEPT", "decode", "encode", "failure"]

MAX_ERROR_CHARS = 2000
MAX_KEPT = 100


def failure(attempt: int, started_ms: int, ended_ms: int, error: BaseException) -> dict[str, Any]:
    """One failed attempt (1-based number, epoch ms times) as stored."""
    text = f"{type(error).__name__}: {error}"
    if len(text) > MAX_ERROR_CHARS:
        text = text[: MAX_ERROR_CHARS - 1] + "…"
    return {"attempt": attempt, "started_at": started_ms, "completed_at": ended_ms, "error": text}


def encode(failures: list[dict[str, Any]]) -> str | None:
    """The stored text of a step's failed attempts; None when it had none."""
    if not failures:
        return None
    return json.dumps(failures[-MAX_KEPT:], ensure_ascii=False)


def decode(text: str | None) -> list[dict[str, Any]]:
    """The failed attempts stored with a step (empty for none). Entries not of the stored shape
    are left out: a listing must not break on one odd row."""
    if text is None:
        return []
    try:
        value = json.loads(text)
    except ValueError:
        return []
    if not isinstance(value, list):
        return []
    return [a for a in value if _well_formed(a)]


def _well_formed(entry: Any) -> bool:
    if not isinstance(entry, dict) or not isinstance(entry.get("error"), str):
        return False
    numbers = (entry.get(k) for k in ("attempt", "started_at", "completed_at"))
    return all(isinstance(n, int) and not isinstance(n, bool) for n in numbers)

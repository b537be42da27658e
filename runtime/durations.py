"""Durations written the way operators write them (``30d``, ``12h``, ``90m``, ``45s``, ``1w``):
one parser for the retention setting of the configuration and the CLI's ``--older-than``. Apart
from both so that neither imports the other."""

from __future__ import annotations

import math
import re

__all__ = ["DURATION_UNITS", "parse_duration"]

#: Seconds per unit letter.
DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}

# A positive number (integer or decimal) and one unit letter; spaces around it are forgiven.
_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", re.IGNORECASE)


def parse_duration(text: object) -> float:
    """``text`` (``"30d"``, ``"12h"``, ``"90m"``, ``"45s"``, ``"1w"``, ``"1.5h"``) in seconds.
    Raises ``ValueError`` with one line saying what is expected for anything else, for zero and
    for a value too large to be a date offset (over 100 years)."""
    match = _DURATION.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise ValueError(
            f"invalid duration {text!r}: expected a number and a unit, such as 30d, 12h, 90m, "
            "45s or 1w"
        )
    seconds = float(match.group(1)) * DURATION_UNITS[match.group(2).lower()]
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"invalid duration {text!r}: it must be more than zero")
    if seconds > 100 * 365 * 86_400:
        raise ValueError(f"invalid duration {text!r}: at most 100 years")
    return seconds

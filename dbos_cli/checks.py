"""The one place the CLI checks numbers and times: parsers that every numeric and time option and
argument uses (``typer.Option(parser=...)``), so that a bad value is refused while the command line
is parsed (one line, exit 1: see ``app.main``), before anything reaches the database.

Times are ISO 8601 (``2026-11-21``, ``2026-11-21T14:30``, ``2026-11-21T14:30:00Z``) or, written
explicitly, epoch numbers: ``@1732199400`` is seconds since 1970 (as GNU ``date -d @N``) and
``@1732199400000ms`` is milliseconds. A bare number is refused: it is a date to some programs,
seconds to others and milliseconds to others (a wrong guess once read 1700000000 as the year 1710).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any, NoReturn, TypeVar

import typer

from runtime.config import parse_duration

T = TypeVar("T")

# Postgres bigint: the largest count, offset or step number the system tables can hold.
MAX_BIGINT = 2**63 - 1
# Times the system tables can order, and that people write: nothing ran before 1970.
FIRST_YEAR, LAST_YEAR = 1970, 9999
_EPOCH = re.compile(r"@(\d{1,16})(\.\d+)?(ms)?")
TIME_FORMS = (
    "an ISO 8601 date or time (2026-11-21, 2026-11-21T14:30, 2026-11-21T14:30:00Z), "
    "or @SECONDS / @MILLISECONDSms since 1970"
)
# Set on every parser made here (tests check that no option of the CLI parses numbers or
# times any other way).
CHECKED = "__dbos_checked__"


class RefusedValue(typer.BadParameter):
    """A value this module refuses: ``invalid OPTION VALUE: why`` and exit 1, as for any other
    bad input (a usage error proper, such as an unknown option, exits 2)."""

    exit_code = 1

    def __init__(self, option: str, detail: str) -> None:
        super().__init__(detail, param_hint=f"'{option}'")
        self.option, self.detail = option, detail

    def format_message(self) -> str:
        return f"invalid {self.option} {self.detail}"


def _refuse(option: str, detail: str) -> NoReturn:
    raise RefusedValue(option, detail)


def _checked(parse: Callable[[Any], T], metavar: str) -> Callable[[Any], T]:
    setattr(parse, CHECKED, True)
    parse.__name__ = metavar  # what --help shows as the value's kind
    return parse


def whole_number(
    option: str, minimum: int = 0, maximum: int | Callable[[], int] = MAX_BIGINT
) -> Callable[[Any], int]:
    """A parser of an integer from ``minimum`` to ``maximum`` (by default what a bigint holds)
    for ``option``. ``maximum`` may be a function, called only when a value is parsed: a limit
    that lives in the runtime then costs no import at every `dbos` start."""

    def parse(value: Any) -> int:
        most = maximum() if callable(maximum) else maximum
        top = "2**63-1" if most == MAX_BIGINT else str(most)
        if isinstance(value, int) and not isinstance(value, bool):
            number = value
        elif isinstance(value, str) and re.fullmatch(r"\s*[+-]?\d{1,30}\s*", value):
            number = int(value)
        else:
            _refuse(option, f"{value!r}: expected a whole number")
        if not minimum <= number <= most:
            _refuse(option, f"{number}: out of range, expected {minimum} to {top}")
        return number

    return _checked(parse, "integer")


def seconds(option: str, minimum: float = 0.0, maximum: float = 86_400.0) -> Callable[[Any], float]:
    """A parser of a finite number of seconds above ``minimum``, at most ``maximum``."""

    def parse(value: Any) -> float:
        try:
            number = float(value)
        except (TypeError, ValueError):
            _refuse(option, f"{value!r}: expected a number of seconds")
        if not (math.isfinite(number) and minimum < number <= maximum):
            _refuse(
                option,
                f"{value!r}: out of range, expected more than {minimum:g} and at most "
                f"{maximum:g} seconds",
            )
        return number

    return _checked(parse, "seconds")


def duration(option: str) -> Callable[[Any], float]:
    """A parser of a duration (``30d``, ``12h``, ``90m``, ``45s``, ``1w``), in seconds."""

    def parse(value: Any) -> float:
        try:
            return parse_duration(str(value).strip())
        except ValueError:
            _refuse(
                option,
                f"{value!r}: expected a number and a unit, such as 30d, 12h, 90m, "
                "45s or 1w (more than zero, at most 100 years)",
            )

    return _checked(parse, "duration")


# The statuses of a finished workflow, the only ones garbage collection deletes (the runtime
# checks again: runtime.retention).
FINISHED = ("SUCCESS", "ERROR", "CANCELLED", "MAX_RECOVERY_ATTEMPTS_EXCEEDED")


def finished_status(option: str) -> Callable[[Any], str]:
    """A parser of a finished workflow status (any case), upper-cased; an unfinished one is
    refused saying that garbage collection never deletes it."""

    def parse(value: Any) -> str:
        text = str(value).strip().upper()
        if text not in FINISHED:
            _refuse(
                option,
                f"{value!r}: gc never deletes unfinished workflows (PENDING, ENQUEUED, DELAYED); "
                f"expected one of {', '.join(FINISHED)}",
            )
        return text

    return _checked(parse, "status")


def database_url(option: str) -> Callable[[Any], str]:
    """A parser of a database URL that refuses an empty one: ``-D "$URL"`` with the variable
    unset must not fall back to the configuration's database (another one) without a word."""

    def parse(value: Any) -> str:
        text = str(value)
        if not text.strip():
            _refuse(
                option, "'': empty (an unset variable?); omit the option to use the configuration"
            )
        return text

    return _checked(parse, "URL")


def choice(option: str, values: tuple[str, ...]) -> Callable[[Any], str]:
    """A parser of one of ``values`` (any case), lower-cased."""

    def parse(value: Any) -> str:
        text = str(value).strip().lower()
        if text not in values:
            _refuse(option, f"{value!r}: expected one of {', '.join(values)}")
        return text

    return _checked(parse, "|".join(values))


def moment(option: str, naive_utc: bool = False) -> Callable[[Any], datetime]:
    """A parser of a point in time (see the module's docstring) as an aware datetime. An ISO
    8601 time without an offset is local time, or UTC when ``naive_utc``."""

    def parse(value: Any) -> datetime:
        if isinstance(value, datetime):
            return value
        try:
            found = _moment(str(value).strip(), naive_utc)
            # A well-formed time whose UTC moment falls outside the years is out of range too.
            if not FIRST_YEAR <= found.astimezone(timezone.utc).year <= LAST_YEAR:
                raise _OutOfRange(str(value))
        except (_OutOfRange, OverflowError):  # OverflowError: astimezone past year 9999
            _refuse(option, f"{value!r}: out of range, expected {FIRST_YEAR} to {LAST_YEAR}")
        except (ValueError, OSError):
            _refuse(option, f"{value!r}: expected {TIME_FORMS}")
        return found

    return _checked(parse, "time")


class _OutOfRange(ValueError):
    """A well-formed time too early or late to convert (``0001-01-01`` in local time)."""


def _moment(text: str, naive_utc: bool) -> datetime:
    epoch = _EPOCH.fullmatch(text)
    if epoch is not None:
        whole, fraction, millis = epoch.groups()
        count = float(whole + (fraction or "")) / (1000 if millis else 1)
        try:
            return datetime.fromtimestamp(count, timezone.utc)
        except (ValueError, OverflowError, OSError) as exc:  # well-formed, past year 9999
            raise _OutOfRange(text) from exc
    if re.fullmatch(r"[+-]?\d+(\.\d*)?", text):
        raise ValueError("a bare number is ambiguous")
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"  # Python 3.10's fromisoformat does not read "Z"
    found = datetime.fromisoformat(text)
    if not FIRST_YEAR <= found.year <= LAST_YEAR:
        raise _OutOfRange(text)
    if found.tzinfo is not None:
        return found
    if naive_utc:
        return found.replace(tzinfo=timezone.utc)
    return found.astimezone()  # local time, as the CLI shows times

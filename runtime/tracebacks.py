"""The traceback stored with a recorded error, so that an operator sees where it was raised.

``serialize_exception`` stores ``tail(exc)`` under the record's ``"traceback"`` key and
``deserialize_exception`` sets it back as the exception's ``dbos_traceback`` attribute (``str``, or
``None`` for a record stored without one, e.g. by an older version). Formatting happens only when
an error is recorded, inside the write that records it: no statement is added to any step.
"""

from __future__ import annotations

import contextlib
import traceback

#: At most this many characters of a traceback are stored: its end (the innermost frames and the
#: exception line), which is what tells where it was raised.
LIMIT = 8192

#: At most this many characters of one piece of it (an exception's message line, one frame).
PART_LIMIT = 1000

#: The attribute of a deserialized exception holding its stored traceback.
ATTRIBUTE = "dbos_traceback"


def tail(exc: BaseException) -> str | None:
    """The traceback to store for ``exc``: the one it already carries from a stored record (an
    error replayed from its checkpoint keeps the place it was first raised), else its own
    formatted traceback (with its causes), cut to its last ``LIMIT`` characters. None when it
    was never raised (no ``__traceback__``) and carries none. ``exc`` gets it as
    ``dbos_traceback`` too, so that the exception a local ``get_result()`` raises reads like one
    read back from the database. Never raises."""
    carried = getattr(exc, ATTRIBUTE, None)
    if isinstance(carried, str) and carried:
        return carried[-LIMIT:]
    if exc.__traceback__ is None:
        return None
    try:
        parts = traceback.TracebackException(type(exc), exc, exc.__traceback__).format()
        text = "".join(_capped(part) for part in parts)
    except Exception:  # a broken __str__ or frame: the error is stored without its traceback
        return None
    text = text if len(text) <= LIMIT else "...\n" + text[-(LIMIT - 4) :]
    attach(exc, text)
    return text


def _capped(part: str) -> str:
    """One piece of a formatted traceback (a frame, a header, an exception's line), its middle
    left out past ``PART_LIMIT``: a 200 kB message (stored whole with the error anyway) must not
    push every frame out of the stored tail."""
    if len(part) <= PART_LIMIT:
        return part
    kept = PART_LIMIT // 2
    return f"{part[:kept]} ... [{len(part) - 2 * kept} characters left out] ... {part[-kept:]}"


def attach(exc: BaseException, stored: object) -> BaseException:
    """Set ``exc.dbos_traceback`` to the stored traceback (None when there is none or it is not
    text); returns ``exc``. Never raises (an exception class may refuse new attributes)."""
    # An exception class with __slots__ or a read-only __setattr__ refuses it: the error is then
    # raised without its stored traceback, never replaced by this failure.
    with contextlib.suppress(Exception):
        setattr(exc, ATTRIBUTE, stored if isinstance(stored, str) else None)
    return exc

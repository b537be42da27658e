"""The one JSON codec for stored data: workflow inputs, step outputs, errors, messages and events.

Stored data is JSON text, never pickle: whoever can write the database must not be able to run code
in a worker by planting a payload. Decoding only ever builds plain JSON values, a fixed set of
standard-library types, and instances of dataclasses, enums and exception classes importable in the
worker (see "What decoding may run" below).

Tag format
----------
JSON's own values (``None``, ``bool``, ``int``, finite ``float``, ``str``, ``list`` and ``dict``
with ``str`` keys) are stored as themselves. Every other supported value becomes a *tagged object*:
a JSON object with the reserved key ``"__dbos__"`` naming the kind, and ``"v"`` holding the
payload::

    tuple                   {"__dbos__": "tuple", "v": [...]}
    set / frozenset         {"__dbos__": "set" / "frozenset", "v": [...]}  (items sorted by their
                                                                  JSON text: equal sets, equal text)
    float nan / inf / -inf  {"__dbos__": "float", "v": "nan" / "inf" / "-inf"}
    datetime.datetime       {"__dbos__": "datetime", "v": "<isoformat>"}  (+ "tz": "<IANA key>" for
                                                                  a ZoneInfo, + "fold": 1 if set)
    datetime.date           {"__dbos__": "date", "v": "<isoformat>"}
    datetime.time           {"__dbos__": "time", "v": "<isoformat>"}  (+ "fold": 1 if set)
    datetime.timedelta      {"__dbos__": "timedelta", "v": [days, seconds, microseconds]}
    uuid.UUID               {"__dbos__": "uuid", "v": "<hex with dashes>"}
    decimal.Decimal         {"__dbos__": "decimal", "v": "<str(d)>"}   (exact)
    bytes                   {"__dbos__": "bytes", "v": "<base64>"}
    dataclass instance      {"__dbos__": "dataclass", "module": m, "qualname": q, "v": {fields}}
    Enum member             {"__dbos__": "enum", "module": m, "qualname": q, "name": n, "v": value}
    other dict              {"__dbos__": "map", "v": [[key, value], ...]}

The last line is also the escape: a ``dict`` is stored as a ``"map"`` when any key is not a ``str``
*or* when it contains the key ``"__dbos__"`` itself, so a user dict can never be mistaken for a tag
and every dict round-trips unchanged. Aware datetimes and times keep their UTC offset and
microseconds; a ``zoneinfo.ZoneInfo`` zone comes back as the same zone, any other ``tzinfo`` as a
fixed-offset ``datetime.timezone``.

Only the exact types above are encoded: a subclass of ``dict``, ``list``, ``str``, ``datetime`` and
so on (``OrderedDict``, ``defaultdict``, a ``NamedTuple``...) is refused rather than silently stored
as its base type, because it would not come back as the same type. Enum members (``IntEnum`` and
``StrEnum`` included) and dataclass instances are the exceptions, by rule.

What decoding may run
---------------------
To rebuild a dataclass, an enum member or an exception, decoding looks the class up by module and
qualified name: ``sys.modules`` first, else ``importlib.import_module`` (any import failure is
caught). A dataclass is rebuilt only if the class found really is a dataclass, by calling its
constructor with the stored init fields (``__post_init__`` runs) and setting ``init=False`` fields
with ``object.__setattr__``; an enum member only if the class is an ``Enum``. If the class cannot be
found (renamed, deleted, defined inside a function) or is not what the tag says, decoding returns
the plain decoded value instead of failing: the ``dict`` of fields for a dataclass, the member's
value for an enum. Exceptions: see ``deserialize_exception``.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import decimal
import enum
import importlib
import json
import math
import sys
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Final
from zoneinfo import ZoneInfo

from runtime import tracebacks
from runtime.errors import DBOSException, DBOSSerializationError

__all__ = [
    "deserialize",
    "deserialize_args",
    "deserialize_exception",
    "exception_summary",
    "nesting_checked",
    "serialize",
    "serialize_args",
    "serialize_exception",
]

TAG: Final = "__dbos__"
"""The reserved key of a tagged object (see the module docstring)."""

# Measured (CPython 3.11 on the dev VM, best of 3 x 300k calls): serialize(42) 0.95 us;
# serialize({"a": 1, "b": "x", "c": [1, 2, 3], "d": None, "e": 1.5}) 3.4 us, of which the final
# encode is 2.0 us (json.dumps with these options alone: 2.9 us, because it builds an encoder per
# call); the same dict plus a tuple and a datetime 6.0 us; deserialize of the small dict 1.5 us.
_ENCODER: Final = json.JSONEncoder(
    ensure_ascii=False, allow_nan=False, check_circular=False, separators=(",", ":")
)
# Lone surrogates ("\ud800") cannot be written to a UTF-8 text column; ASCII escapes can, and
# json decoding gives the same string back.
_ASCII_ENCODER: Final = json.JSONEncoder(
    ensure_ascii=True, allow_nan=False, check_circular=False, separators=(",", ":")
)

_NoneType: Final = type(None)
# Values stored as themselves, with no check at all (float needs the finiteness check).
_PLAIN: Final[frozenset[type]] = frozenset({str, int, bool, _NoneType})


# ---------------------------------------------------------------------------------------------
# Encoding
# ---------------------------------------------------------------------------------------------


class _Unencodable(Exception):
    """Internal: raised deep inside ``_encode``; each container on the way up adds its path
    segment, and the top level turns it into a ``DBOSSerializationError``."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.path: list[str] = []  # innermost segment first


def _type_name(t: type) -> str:
    if t.__module__ == "builtins":
        return t.__qualname__
    return f"{t.__module__}.{t.__qualname__}"


def _short_repr(value: object) -> str:
    try:
        text = repr(value)
    except Exception:
        return "<key>"
    return text if len(text) <= 60 else text[:57] + "..."


def _circular(value: object) -> _Unencodable:
    return _Unencodable(
        f"circular reference: object of type {_type_name(type(value))!r} contains itself"
    )


def _encode(value: Any, active: set[int]) -> Any:
    """``value`` as a JSON-native structure (tags included). ``active`` holds the ids of the
    mutable containers on the current path, to refuse circular structures."""
    t = type(value)
    if t in _PLAIN:
        return value
    if t is float:
        return value if math.isfinite(value) else _encode_float(value)
    if t is dict:
        return _encode_dict(value, active)
    if t is list:
        vid = id(value)
        if vid in active:
            raise _circular(value)
        active.add(vid)
        try:
            return _encode_items(value, active)
        finally:
            active.discard(vid)
    if t is tuple:  # a tuple can only be in a cycle through a mutable container, tracked there
        return {TAG: "tuple", "v": _encode_items(value, active)}
    handler = _HANDLERS.get(t)
    if handler is not None:
        return handler(value, active)
    if isinstance(value, enum.Enum):
        return _encode_enum(value, active)
    if hasattr(t, "__dataclass_fields__"):
        return _encode_dataclass(value, active)
    raise _Unencodable(f"object of type {_type_name(t)!r} is not JSON-serializable")


def _encode_items(value: list[Any] | tuple[Any, ...], active: set[int]) -> list[Any]:
    out: list[Any] = []
    try:
        for item in value:
            out.append(item if type(item) in _PLAIN else _encode(item, active))
    except _Unencodable as err:
        err.path.append(f"[{len(out)}]")  # the index of the item that failed
        raise
    return out


def _encode_float(value: float) -> dict[str, Any]:
    text = "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return {TAG: "float", "v": text}


def _encode_dict(value: dict[Any, Any], active: set[int]) -> Any:
    vid = id(value)
    if vid in active:
        raise _circular(value)
    active.add(vid)
    try:
        if TAG in value:
            return _encode_pairs(value, active)
        out: dict[str, Any] = {}
        key: Any = None
        try:
            for key, item in value.items():
                if type(key) is not str:
                    break
                out[key] = item if type(item) in _PLAIN else _encode(item, active)
            else:
                return out
        except _Unencodable as err:
            err.path.append(f"[{key!r}]")
            raise
        return _encode_pairs(value, active)  # a non-str key: store as a list of pairs
    finally:
        active.discard(vid)


def _encode_pairs(value: dict[Any, Any], active: set[int]) -> dict[str, Any]:
    pairs: list[list[Any]] = []
    for i, (key, item) in enumerate(value.items()):
        try:
            enc_key = _encode(key, active)
        except _Unencodable as err:
            err.path.append(f"[<key #{i}>]")
            raise
        try:
            enc_item = _encode(item, active)
        except _Unencodable as err:
            err.path.append(f"[{_short_repr(key)}]")
            raise
        pairs.append([enc_key, enc_item])
    return {TAG: "map", "v": pairs}


def _encode_set(value: set[Any] | frozenset[Any], active: set[int]) -> dict[str, Any]:
    items: list[Any] = []
    try:
        for item in value:
            items.append(_encode(item, active))
    except _Unencodable as err:
        err.path.append("[<set item>]")
        raise
    # Iteration order of a set of str differs between processes (hash randomization); sorting by
    # the encoded text makes equal sets store as equal text.
    if len(items) > 1:
        items.sort(key=_ENCODER.encode)
    return {TAG: "set" if type(value) is set else "frozenset", "v": items}


def _with_fold(out: dict[str, Any], value: datetime.datetime | datetime.time) -> dict[str, Any]:
    if value.fold:
        out["fold"] = 1
    return out


def _encode_datetime(value: datetime.datetime, active: set[int]) -> dict[str, Any]:
    out: dict[str, Any] = {TAG: "datetime", "v": value.isoformat()}
    tz = value.tzinfo
    if type(tz) is ZoneInfo and isinstance(tz.key, str):
        # The offset alone would turn the zone into a fixed offset, and arithmetic on the decoded
        # value would differ from arithmetic on the original across a DST change.
        out["tz"] = tz.key
    return _with_fold(out, value)


def _encode_time(value: datetime.time, active: set[int]) -> dict[str, Any]:
    return _with_fold({TAG: "time", "v": value.isoformat()}, value)


def _findable(cls: type) -> None:
    """A class stored by name must be found again by name (on recovery, and each time a parked
    workflow wakes): one defined inside a function cannot be, so its values are refused."""
    if "<locals>" in cls.__qualname__.split("."):
        raise _Unencodable(
            f"class {_type_name(cls)!r} is defined inside a function, so a stored value could not "
            "be turned back into it when the workflow is replayed; define it at module level"
        )


def _encode_enum(value: enum.Enum, active: set[int]) -> dict[str, Any]:
    cls = type(value)
    _findable(cls)
    try:
        enc_value = _encode(value.value, active)
    except _Unencodable as err:
        err.path.append(".value")
        raise
    out: dict[str, Any] = {
        TAG: "enum",
        "module": cls.__module__,
        "qualname": cls.__qualname__,
        "v": enc_value,
    }
    if isinstance(value.name, str):  # a composite Flag member may have no name
        out["name"] = value.name
    return out


_MISSING: Final = object()


def _encode_dataclass(value: Any, active: set[int]) -> dict[str, Any]:
    _findable(type(value))
    vid = id(value)
    if vid in active:
        raise _circular(value)
    active.add(vid)
    fields: dict[str, Any] = {}
    name = ""
    try:
        for field in dataclasses.fields(value):
            name = field.name
            item = getattr(value, name, _MISSING)
            if item is _MISSING:  # an init=False field without default that was never set
                continue
            fields[name] = item if type(item) in _PLAIN else _encode(item, active)
    except _Unencodable as err:
        err.path.append(f".{name}")
        raise
    finally:
        active.discard(vid)
    cls = type(value)
    enc_fields: Any = fields
    if TAG in fields:  # a field named like the tag key: escape like any dict
        enc_fields = {TAG: "map", "v": [[k, v] for k, v in fields.items()]}
    return {
        TAG: "dataclass",
        "module": cls.__module__,
        "qualname": cls.__qualname__,
        "v": enc_fields,
    }


_HANDLERS: Final[dict[type, Callable[[Any, set[int]], Any]]] = {
    set: _encode_set,
    frozenset: _encode_set,
    datetime.datetime: _encode_datetime,
    datetime.date: lambda v, _a: {TAG: "date", "v": v.isoformat()},
    datetime.time: _encode_time,
    datetime.timedelta: lambda v, _a: {TAG: "timedelta", "v": [v.days, v.seconds, v.microseconds]},
    uuid.UUID: lambda v, _a: {TAG: "uuid", "v": str(v)},
    decimal.Decimal: lambda v, _a: {TAG: "decimal", "v": str(v)},
    bytes: lambda v, _a: {TAG: "bytes", "v": base64.b64encode(v).decode("ascii")},
}


@contextmanager
def nesting_checked(what: str) -> Iterator[None]:
    """Run a walk over a value (checking or encoding it), a value nested deeper than Python
    recurses (about a thousand levels) raising ``DBOSSerializationError`` naming ``what``
    instead of ``RecursionError``: the one place every stored value (workflow arguments and
    results, events, streams, attributes) is refused for its depth."""
    try:
        yield
    except RecursionError:
        raise DBOSSerializationError(f"cannot serialize {what}: it is nested too deeply") from None


def _encode_root(value: Any, what: str, root: str, active: set[int]) -> Any:
    """``_encode`` with its internal errors turned into ``DBOSSerializationError``."""
    try:
        with nesting_checked(f"{what} (at {root})"):
            return _encode(value, active)
    except _Unencodable as err:
        path = root + "".join(reversed(err.path))
        raise DBOSSerializationError(f"cannot serialize {what} (at {path}): {err.reason}") from None


# Postgres keeps at most 1 GB in one value (and in one protocol message); past that the server
# drops the connection, which would look like an outage and be retried forever. Refused here.
MAX_STORED_BYTES: Final = 1_000_000_000


def _dumps(encoded: Any, what: str) -> str:
    """Text of an already-encoded (JSON-native) structure."""
    try:
        text = _ENCODER.encode(encoded)
    except (ValueError, RecursionError) as err:  # e.g. an int beyond the int->str digit limit
        raise DBOSSerializationError(f"cannot serialize {what}: {err}") from None
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate: escape it instead
            text = _ASCII_ENCODER.encode(encoded)
    # A character is at most 4 bytes of UTF-8: only a long text needs its bytes counted.
    if len(text) > MAX_STORED_BYTES // 4:
        size = len(text) if text.isascii() else len(text.encode("utf-8"))
        if size > MAX_STORED_BYTES:
            raise DBOSSerializationError(
                f"cannot store {what}: its JSON is {size:,} bytes, more than Postgres keeps in one "
                f"value ({MAX_STORED_BYTES:,})"
            )
    return text


# Identifiers (workflow IDs, event keys, topics, queue names, deduplication IDs) are indexed and
# sent as NOTIFY payloads: Postgres refuses an index entry over about 2.7 kB and a payload of 8 kB.
# Two of them together (an event's workflow ID and key) must fit, with room to spare.
MAX_IDENTIFIER_BYTES: Final = 1000


def check_text(value: str | None, what: str, *, max_bytes: int | None = None) -> None:
    """Refuse an identifier that the system tables cannot hold, naming it, before anything is
    written: a NUL character, an unpaired surrogate (not valid Unicode, so not UTF-8 text), or
    more than ``max_bytes`` (default ``MAX_IDENTIFIER_BYTES``) bytes of UTF-8. ``None`` passes (a
    column that may be NULL).

    Raises:
        DBOSException: e.g. ``event key 'a\\x00b' holds a NUL character (\\x00), which Postgres
            text cannot store``.
    """
    if value is None:
        return
    if not isinstance(value, str):
        raise DBOSException(f"{what} must be a string, not {type(value).__name__}")
    shown = repr(value if len(value) <= 60 else value[:57] + "...")
    if "\x00" in value:
        raise DBOSException(
            f"{what} {shown} holds a NUL character (\\x00), which Postgres text cannot store"
        )
    if value.isascii():
        size = len(value)
    else:
        try:
            size = len(value.encode("utf-8"))
        except UnicodeEncodeError:
            raise DBOSException(
                f"{what} {shown} holds an unpaired surrogate, which is not valid Unicode text"
            ) from None
    limit = MAX_IDENTIFIER_BYTES if max_bytes is None else max_bytes
    if size > limit:
        raise DBOSException(f"{what} {shown} is {size} bytes long; at most {limit} are allowed")


def serialize(value: object, what: str = "value") -> str:
    """Encode ``value`` as compact JSON text (see the module docstring for the types kept).

    ``what`` names the value in error messages, e.g. ``"output of step 'fetch'"``.

    Raises:
        DBOSSerializationError: ``value`` holds something with no rule (a function, a socket, an
            ``object()``, a subclass of a builtin...) or is circular. The message names ``what``,
            the path inside the value and the offending type, e.g.
            ``cannot serialize value (at value[2].foo): object of type 'function' is not
            JSON-serializable``.
    """
    t = type(value)
    if t is str or t is int or t is bool or value is None:
        return _dumps(value, what)
    return _dumps(_encode_root(value, what, "value", set()), what)


def serialize_args(
    args: tuple[Any, ...], kwargs: dict[str, Any], param_names: list[str] | None = None
) -> str:
    """Encode workflow inputs as ``{"args": [...], "kwargs": {...}}``.

    On failure the error names the argument: positional argument ``i`` is called
    ``param_names[i]`` when given (else ``args[i]``), a keyword argument by its key, e.g.
    ``cannot serialize argument 'x' (at x[2].foo): object of type 'function' is not
    JSON-serializable``.
    """
    active: set[int] = set()
    enc_args: list[Any] = []
    for i, arg in enumerate(args):
        if param_names is not None and i < len(param_names):
            name = param_names[i]
        else:
            name = f"args[{i}]"
        enc_args.append(_encode_root(arg, f"argument {name!r}", name, active))
    enc_kwargs: dict[str, Any] = {}
    for key, arg in kwargs.items():
        enc_kwargs[key] = _encode_root(arg, f"argument {key!r}", key, active)
    enc_kw: Any = enc_kwargs
    if TAG in enc_kwargs:
        enc_kw = {TAG: "map", "v": [[k, v] for k, v in enc_kwargs.items()]}
    return _dumps({"args": enc_args, "kwargs": enc_kw}, "workflow arguments")


# ---------------------------------------------------------------------------------------------
# Decoding
# ---------------------------------------------------------------------------------------------


def _find_class(module: object, qualname: object) -> type | None:
    """The class ``module.qualname`` if it can be found, else ``None`` (never raises)."""
    if not isinstance(module, str) or not isinstance(qualname, str) or not module or not qualname:
        return None
    parts = qualname.split(".")
    if "<locals>" in parts:
        return None
    mod = sys.modules.get(module)
    if mod is None:
        try:
            mod = importlib.import_module(module)
        except Exception:
            return None
    obj: Any = mod
    try:
        for part in parts:
            obj = getattr(obj, part)
    except Exception:
        return None
    return obj if isinstance(obj, type) else None


def _decode_dataclass(tagged: dict[str, Any]) -> Any:
    values = tagged["v"]
    if not isinstance(values, dict):
        raise DBOSSerializationError("malformed stored dataclass: fields are not an object")
    cls = _find_class(tagged.get("module"), tagged.get("qualname"))
    if cls is None or not dataclasses.is_dataclass(cls):
        return values
    fields = dataclasses.fields(cls)
    init_kwargs = {f.name: values[f.name] for f in fields if f.init and f.name in values}
    try:
        obj = cls(**init_kwargs)
    except Exception:
        # The constructor refused (a custom __init__, a validating __post_init__...). The stored
        # fields came from a real instance, so set them directly if they are all there.
        if not all(f.name in values for f in fields):
            return values
        try:
            obj = cls.__new__(cls)
            for f in fields:
                object.__setattr__(obj, f.name, values[f.name])
        except Exception:
            return values
        return obj
    for f in fields:
        if not f.init and f.name in values:
            try:
                object.__setattr__(obj, f.name, values[f.name])
            except Exception:
                pass
    return obj


def _decode_enum(tagged: dict[str, Any]) -> Any:
    value = tagged["v"]
    cls = _find_class(tagged.get("module"), tagged.get("qualname"))
    if cls is None or not issubclass(cls, enum.Enum):
        return value
    try:
        return cls(value)
    except Exception:
        pass
    name = tagged.get("name")
    if isinstance(name, str):
        try:
            return cls[name]
        except Exception:
            pass
    return value


def _decode_float(tagged: dict[str, Any]) -> float:
    text = tagged["v"]
    if text not in ("nan", "inf", "-inf"):
        raise DBOSSerializationError(f"malformed stored float {text!r}")
    return float(text)


def _decode_map(tagged: dict[str, Any]) -> dict[Any, Any]:
    return {key: item for key, item in tagged["v"]}


def _decode_datetime(tagged: dict[str, Any]) -> datetime.datetime:
    value = datetime.datetime.fromisoformat(tagged["v"])
    key = tagged.get("tz")
    if isinstance(key, str) and value.tzinfo is not None:
        # Same wall time, zone and fold as the original; if the zone is unknown here, keep the
        # fixed offset (same instant).
        try:
            value = value.replace(tzinfo=ZoneInfo(key))
        except Exception:
            pass
    if tagged.get("fold"):
        value = value.replace(fold=1)
    return value


def _decode_time(tagged: dict[str, Any]) -> datetime.time:
    value = datetime.time.fromisoformat(tagged["v"])
    return value.replace(fold=1) if tagged.get("fold") else value


def _decode_timedelta(tagged: dict[str, Any]) -> datetime.timedelta:
    days, seconds, microseconds = tagged["v"]
    return datetime.timedelta(days=days, seconds=seconds, microseconds=microseconds)


_DECODERS: Final[dict[str, Callable[[dict[str, Any]], Any]]] = {
    "tuple": lambda d: tuple(d["v"]),
    "set": lambda d: set(d["v"]),
    "frozenset": lambda d: frozenset(d["v"]),
    "float": _decode_float,
    "map": _decode_map,
    "datetime": _decode_datetime,
    "date": lambda d: datetime.date.fromisoformat(d["v"]),
    "time": _decode_time,
    "timedelta": _decode_timedelta,
    "uuid": lambda d: uuid.UUID(d["v"]),
    "decimal": lambda d: decimal.Decimal(d["v"]),
    "bytes": lambda d: base64.b64decode(d["v"], validate=True),
    "dataclass": _decode_dataclass,
    "enum": _decode_enum,
}


def _object_hook(obj: dict[str, Any]) -> Any:
    # json calls this bottom-up, so the payload of a tag is already decoded.
    if TAG not in obj:
        return obj
    tag = obj[TAG]
    decoder = _DECODERS.get(tag) if isinstance(tag, str) else None
    if decoder is None:
        raise DBOSSerializationError(f"stored value has an unknown tag {tag!r}")
    return decoder(obj)


_DECODER: Final = json.JSONDecoder(object_hook=_object_hook)


def deserialize(text: str | None) -> Any:
    """Decode text written by ``serialize`` (``None`` gives ``None``).

    A dataclass or enum whose class cannot be found, or is no longer a dataclass / Enum, comes
    back as its plain decoded fields ``dict`` / member value instead of failing.

    Raises:
        DBOSSerializationError: ``text`` is not valid JSON or holds a malformed tagged object.
    """
    if text is None:
        return None
    try:
        return _DECODER.decode(text)
    except DBOSSerializationError:
        raise
    except (ValueError, TypeError, KeyError, AttributeError, decimal.InvalidOperation) as err:
        raise DBOSSerializationError(f"cannot deserialize stored value: {err}") from None


def deserialize_args(text: str) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """Decode text written by ``serialize_args`` into ``(args, kwargs)``."""
    obj = deserialize(text)
    if (
        not isinstance(obj, dict)
        or not isinstance(obj.get("args"), list)
        or not isinstance(obj.get("kwargs"), dict)
    ):
        raise DBOSSerializationError(
            'stored workflow inputs are malformed: expected {"args": [...], "kwargs": {...}}'
        )
    return tuple(obj["args"]), dict(obj["kwargs"])


# ---------------------------------------------------------------------------------------------
# Exceptions
# ---------------------------------------------------------------------------------------------


def _safe_str(exc: BaseException) -> str | None:
    try:
        return str(exc)
    except Exception:
        return None


def serialize_exception(exc: BaseException) -> str:
    """Encode an exception as ``{"type", "module", "message", "args", "attrs", "traceback"}``.

    ``type`` and ``module`` are the class's ``__qualname__`` and ``__module__``, ``message`` is
    ``str(exc)``, ``args`` is ``exc.args`` encoded with the ``serialize`` rules, or ``null`` when
    any of them cannot be encoded. ``attrs`` holds the instance attributes (``exc.__dict__``, e.g.
    ``workflow_id``) that can be encoded, the others left out; ``traceback``: its traceback's end.
    Never fails.
    """
    cls = type(exc)
    message = _safe_str(exc)
    if message is None:
        message = f"<{cls.__qualname__} object: str() failed>"
    record: dict[str, Any] = {
        "type": cls.__qualname__,
        "module": cls.__module__,
        "message": message,
        "args": None,
    }
    try:
        record["args"] = _encode(list(exc.args), set())
    except Exception:
        pass
    attrs: dict[str, Any] = {}
    trace = tracebacks.tail(exc)
    if trace is not None:
        record["traceback"] = trace
    try:
        for key, item in vars(exc).items():
            if key == tracebacks.ATTRIBUTE:
                continue  # stored as "traceback"
            try:
                attrs[key] = _encode(item, set())
            except Exception:
                pass
    except Exception:
        pass
    if attrs:
        record["attrs"] = (
            {TAG: "map", "v": [[k, v] for k, v in attrs.items()]} if TAG in attrs else attrs
        )
    try:
        return _dumps(record, "exception")
    except Exception:  # e.g. an int arg too large to print: keep what is sure to encode
        record["args"] = None
        record.pop("attrs", None)
        record.pop("traceback", None)
        return _dumps(record, "exception")


def _fallback_exception(module: str, qualname: str, message: str) -> DBOSException:
    exc = DBOSException(f"{module}.{qualname}: {message}")
    exc.__dict__.update(original_type=qualname, original_module=module)
    return exc


def deserialize_exception(text: str) -> BaseException:
    """Re-create an exception stored by ``serialize_exception``. Never raises.

    The same class is re-created only when it can be found (``sys.modules``, then
    ``importlib.import_module``) and is a subclass of ``Exception``: a ``BaseException``-only class
    such as ``KeyboardInterrupt`` or ``SystemExit`` is never raised again from stored data. It is
    built as ``cls(*args)`` if that works and gives the stored message; otherwise as
    ``cls.__new__(cls)`` with ``.args`` set. Stored attributes are then restored. When the class
    was re-created, ``str()`` of the result is the stored message (for any class whose ``__str__``
    depends only on its args and attributes).

    In every other case the result is a ``DBOSException("module.Type: message")`` with attributes
    ``original_type`` and ``original_module``. Either way ``dbos_traceback`` holds the stored
    traceback text (None when stored without one).
    """
    record, exc = _rebuild(text)
    return tracebacks.attach(exc, record.get("traceback") if isinstance(record, dict) else None)


def _rebuild(text: str) -> tuple[Any, BaseException]:
    try:
        record = deserialize(text)
    except Exception:
        record = None
    if not isinstance(record, dict):
        try:
            record = json.loads(text)  # the args may be what is broken
        except Exception:
            record = None
    if not isinstance(record, dict):
        unreadable = f"unreadable error record {text!r}"
        return record, _fallback_exception("<unknown>", "<unknown>", unreadable)
    qualname, module, message = (record.get(k) for k in ("type", "module", "message"))
    qualname = qualname if isinstance(qualname, str) else "<unknown>"
    module = module if isinstance(module, str) else "<unknown>"
    message = message if isinstance(message, str) else ""
    args, attrs = record.get("args"), record.get("attrs")
    cls = _find_class(module, qualname)
    if cls is None or not issubclass(cls, Exception):
        return record, _fallback_exception(module, qualname, message)
    exc: BaseException | None = None
    if isinstance(args, list):
        try:
            candidate = cls(*args)
            if isinstance(candidate, cls) and _safe_str(candidate) == message:
                exc = candidate
        except Exception:
            pass
    if exc is None:
        try:
            exc = cls.__new__(cls)
            exc.args = tuple(args) if isinstance(args, list) else (message,)
        except Exception:
            return record, _fallback_exception(module, qualname, message)
    if isinstance(attrs, dict):
        for key, item in attrs.items():
            try:
                setattr(exc, key, item)
            except Exception:
                pass
    return record, exc


def exception_summary(text: str) -> str:
    """``"ValueError: message"`` for an exception stored by ``serialize_exception``, for display.

    Never raises: text that is not such a record is returned as it is.
    """
    try:
        record = json.loads(text)
    except Exception:
        return text
    if not isinstance(record, dict) or not isinstance(record.get("type"), str):
        return text
    message = record.get("message")
    if isinstance(message, str) and message:
        return f"{record['type']}: {message}"
    return str(record["type"])

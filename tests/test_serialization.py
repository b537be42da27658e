"""The JSON codec for stored data (no database needed)."""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import json
import math
import uuid
from typing import Any

import pytest

from runtime.errors import (
    DBOSException,
    DBOSNonExistentWorkflowError,
    DBOSSerializationError,
)
from runtime.serialization import (
    TAG,
    deserialize,
    deserialize_args,
    deserialize_exception,
    exception_summary,
    serialize,
    serialize_args,
    serialize_exception,
)


@dataclasses.dataclass
class Point:
    x: int
    y: float


@dataclasses.dataclass
class Shape:
    name: str
    points: list[Point]
    origin: Point | None = None
    tags: tuple[str, ...] = ()
    area: float = dataclasses.field(init=False, default=0.0)


@dataclasses.dataclass(frozen=True)
class Frozen:
    key: str
    when: datetime.date


@dataclasses.dataclass
class Holder:
    foo: Any


class Color(enum.Enum):
    RED = "red"
    GREEN = (0, 255, 0)


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


class NotADataclass:
    pass


class PairError(Exception):
    """A custom exception whose __init__ takes two arguments and passes both on."""

    def __init__(self, code: int, detail: str) -> None:
        super().__init__(code, detail)
        self.code = code
        self.detail = detail

    def __str__(self) -> str:
        return f"[{self.code}] {self.detail}"


class FormattedError(Exception):
    """A custom exception whose __init__ takes two arguments but passes on one message: rebuilding
    it from its stored args (one string) cannot go through __init__."""

    def __init__(self, table: str, row: int) -> None:
        super().__init__(f"row {row} missing from {table}")
        self.table = table
        self.row = row


def assert_same(actual: Any, expected: Any) -> None:
    """Equal, and of the same type at every level (a tuple must not come back as a list)."""
    assert type(actual) is type(expected), (actual, expected)
    if isinstance(expected, float) and math.isnan(expected):
        assert math.isnan(actual)
        return
    assert actual == expected
    if isinstance(expected, list | tuple):
        for a, e in zip(actual, expected, strict=True):
            assert_same(a, e)
    elif isinstance(expected, dict):
        assert list(actual) == list(expected)  # same keys, same order
        for key in expected:
            assert_same(actual[key], expected[key])
    elif dataclasses.is_dataclass(expected):
        for field in dataclasses.fields(expected):
            assert_same(getattr(actual, field.name), getattr(expected, field.name))


def roundtrip(value: Any) -> Any:
    text = serialize(value)
    assert isinstance(text, str)
    json.loads(text)  # always valid JSON
    return deserialize(text)


UTC_PLUS_0530 = datetime.timezone(datetime.timedelta(hours=5, minutes=30))

ROUNDTRIP_CASES: list[Any] = [
    None,
    True,
    False,
    0,
    -7,
    10**30,
    1.5,
    -0.0,
    "",
    "héllo ✓ \x00 \n",
    [],
    {},
    [1, "a", None, [2.5, {"k": [True]}]],
    {"a": 1, "b": {"c": [1, 2]}},
    (),
    (1, "two", 3.0),
    ((1, 2), [3, (4,)]),
    {1, 2, 3},
    set(),
    frozenset({"a", "b"}),
    datetime.datetime(2024, 2, 29, 13, 45, 1, 123456),
    datetime.datetime(2024, 2, 29, 13, 45, 1, 7, tzinfo=datetime.timezone.utc),
    datetime.datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC_PLUS_0530),
    datetime.date(2020, 1, 2),
    datetime.time(4, 5, 6, 789),
    datetime.time(4, 5, 6, tzinfo=UTC_PLUS_0530),
    datetime.timedelta(days=-3, seconds=5, microseconds=17),
    uuid.UUID("12345678-1234-5678-1234-567812345678"),
    decimal.Decimal("3.14159265358979323846264338327950288419"),
    decimal.Decimal("-0.00"),
    decimal.Decimal("NaN").copy_abs(),  # compared by type + str below
    b"",
    b"\x00\xffbinary\x80",
    Point(1, 2.5),
    Shape("tri", [Point(0, 0.0), Point(1, 1.0)], origin=Point(5, 5.0), tags=("a", "b")),
    Frozen("k", datetime.date(2021, 5, 6)),
    Color.RED,
    Color.GREEN,
    Level.HIGH,
    {1: "one", 2.5: "two and a half", None: "none", (1, "x"): "tuple", Level.LOW: "enum"},
    {"nested": {frozenset({1}): [Point(1, 1.0)], "plain": (None,)}},
]


@pytest.mark.parametrize("value", ROUNDTRIP_CASES, ids=lambda v: type(v).__name__)
def test_roundtrip_keeps_value_and_type(value: Any) -> None:
    result = roundtrip(value)
    if isinstance(value, decimal.Decimal) and value.is_nan():
        assert type(result) is decimal.Decimal and str(result) == str(value)
        return
    assert_same(result, value)


def test_output_is_compact_json_without_ascii_escapes() -> None:
    assert serialize({"a": [1, 2], "b": "é"}) == '{"a":[1,2],"b":"é"}'
    assert serialize(42) == "42"
    assert serialize("x") == '"x"'
    assert serialize(None) == "null"


def test_tuple_is_tagged_not_listified() -> None:
    assert json.loads(serialize((1, 2))) == {TAG: "tuple", "v": [1, 2]}
    assert deserialize(serialize({"t": (1, 2)})) == {"t": (1, 2)}
    assert type(deserialize(serialize([(1,)]))[0]) is tuple


def test_negative_zero_keeps_its_sign() -> None:
    assert math.copysign(1.0, roundtrip(-0.0)) == -1.0


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_floats_roundtrip(value: float) -> None:
    text = serialize([value])
    assert "NaN" not in text and "Infinity" not in text  # stays strict JSON
    (result,) = deserialize(text)
    assert type(result) is float
    if math.isnan(value):
        assert math.isnan(result)
    else:
        assert result == value


def test_aware_datetime_keeps_offset_and_microseconds() -> None:
    value = datetime.datetime(2024, 6, 1, 8, 0, 0, 42, tzinfo=UTC_PLUS_0530)
    result = roundtrip(value)
    assert result == value
    assert result.microsecond == 42
    assert result.utcoffset() == datetime.timedelta(hours=5, minutes=30)
    naive = roundtrip(datetime.datetime(2024, 6, 1, 8, 0))
    assert naive.tzinfo is None


def test_zoneinfo_datetime_keeps_its_zone() -> None:
    zoneinfo = pytest.importorskip("zoneinfo")
    try:
        paris = zoneinfo.ZoneInfo("Europe/Paris")
    except zoneinfo.ZoneInfoNotFoundError:
        pytest.skip("no time zone database on this machine")
    value = datetime.datetime(2024, 3, 30, 12, 0, tzinfo=paris)
    result = roundtrip(value)
    assert result == value and result.tzinfo == paris
    # Arithmetic across the DST change gives the same wall time as on the original.
    assert (result + datetime.timedelta(days=1)).hour == (value + datetime.timedelta(days=1)).hour
    assert (result + datetime.timedelta(days=1)).utcoffset() == datetime.timedelta(hours=2)


def test_fold_roundtrips() -> None:
    value = datetime.datetime(2024, 11, 3, 1, 30, fold=1)
    assert roundtrip(value).fold == 1
    assert roundtrip(datetime.time(1, 30, fold=1)).fold == 1


def test_user_dict_holding_the_tag_key_roundtrips_unchanged() -> None:
    tricky = {TAG: "tuple", "v": [1, 2]}
    assert_same(roundtrip(tricky), tricky)
    also = {TAG: "dataclass", "module": "os", "qualname": "system", "v": {"x": 1}}
    assert_same(roundtrip(also), also)
    nested = {"outer": [{TAG: "bytes", "v": "AAAA"}], "t": ({TAG: None},)}
    assert_same(roundtrip(nested), nested)
    assert_same(roundtrip({TAG: {TAG: "map"}}), {TAG: {TAG: "map"}})


def test_unknown_tag_is_an_error() -> None:
    with pytest.raises(DBOSSerializationError, match="unknown tag 'nope'"):
        deserialize(json.dumps({TAG: "nope", "v": 1}))


def test_malformed_text_is_an_error() -> None:
    with pytest.raises(DBOSSerializationError, match="cannot deserialize"):
        deserialize("{not json")
    with pytest.raises(DBOSSerializationError):
        deserialize(json.dumps({TAG: "bytes", "v": "***"}))


def test_none_text_is_none() -> None:
    assert deserialize(None) is None


def test_sets_store_as_the_same_text_whatever_their_order() -> None:
    a = {"pear", "apple", "fig", "kiwi"}
    b = set(sorted(a, reverse=True))
    assert serialize(a) == serialize(b)
    assert json.loads(serialize(a))["v"] == ["apple", "fig", "kiwi", "pear"]


def test_lone_surrogate_roundtrips_and_stays_valid_utf8() -> None:
    value = {"s": "bad \ud800 char é"}
    text = serialize(value)
    text.encode("utf-8")  # storable in a UTF-8 text column
    assert deserialize(text) == value


def test_dataclass_nested_frozen_and_init_false_fields() -> None:
    shape = Shape("sq", [Point(0, 0.0)], origin=Point(1, 1.0))
    shape.area = 4.0  # an init=False field
    result = roundtrip(shape)
    assert type(result) is Shape and type(result.points[0]) is Point
    assert type(result.origin) is Point
    assert result.area == 4.0
    assert result == shape
    frozen = roundtrip(Frozen("k", datetime.date(2000, 1, 1)))
    assert type(frozen) is Frozen and frozen.when == datetime.date(2000, 1, 1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        frozen.key = "other"  # type: ignore[misc]


def test_dataclass_tag_names_module_and_qualname() -> None:
    stored = json.loads(serialize(Point(1, 2.0)))
    assert stored[TAG] == "dataclass"
    assert stored["module"] == __name__ and stored["qualname"] == "Point"
    assert stored["v"] == {"x": 1, "y": 2.0}


def test_dataclass_whose_class_is_gone_decodes_to_its_fields() -> None:
    stored = json.loads(serialize(Point(1, 2.0)))
    stored["module"] = "no_such_module_for_dbos_tests"
    assert deserialize(json.dumps(stored)) == {"x": 1, "y": 2.0}
    stored["module"], stored["qualname"] = __name__, "NotADataclass"
    assert deserialize(json.dumps(stored)) == {"x": 1, "y": 2.0}
    stored["qualname"] = "Point.<locals>.Gone"
    assert deserialize(json.dumps(stored)) == {"x": 1, "y": 2.0}


def test_enum_members_come_back_as_members() -> None:
    assert roundtrip(Color.GREEN) is Color.GREEN
    assert roundtrip(Level.LOW) is Level.LOW  # an IntEnum, not a bare int
    assert roundtrip({"c": [Color.RED]})["c"][0] is Color.RED
    stored = json.loads(serialize(Level.HIGH))
    assert stored == {
        TAG: "enum",
        "module": __name__,
        "qualname": "Level",
        "v": 2,
        "name": "HIGH",
    }
    stored["module"] = "no_such_module_for_dbos_tests"
    assert deserialize(json.dumps(stored)) == 2


def test_non_str_keys_roundtrip_and_int_keys_are_not_stringified() -> None:
    value = {1: "a", "1": "b"}
    result = roundtrip(value)
    assert result == value and 1 in result and "1" in result


@pytest.mark.parametrize(
    ("value", "path", "type_name"),
    [
        (lambda: 0, "value", "function"),
        (object(), "value", "object"),
        ([1, 2, {"k": object()}], "value[2]['k']", "object"),
        ((1, (2, print)), "value[1][1]", "builtin_function_or_method"),
        (Holder(foo=[0, lambda: 1]), "value.foo[1]", "function"),
        ({1: object()}, "value[1]", "object"),
        ({"s": {1, 2, NotADataclass()}}, "value['s'][<set item>]", f"{__name__}.NotADataclass"),
    ],
)
def test_unencodable_values_are_refused_with_path_and_type(
    value: Any, path: str, type_name: str
) -> None:
    with pytest.raises(DBOSSerializationError) as info:
        serialize(value)
    assert str(info.value) == (
        f"cannot serialize value (at {path}): object of type {type_name!r} is not JSON-serializable"
    )


def test_what_names_the_value_in_the_error() -> None:
    with pytest.raises(DBOSSerializationError, match=r"^cannot serialize output of step 'f' "):
        serialize(object(), what="output of step 'f'")


def test_circular_list_is_refused() -> None:
    loop: list[Any] = [1, 2]
    loop.append(loop)
    with pytest.raises(DBOSSerializationError) as info:
        serialize_args((loop,), {}, ["x"])
    assert str(info.value).startswith("cannot serialize argument 'x' (at x[2]): circular reference")


def test_circular_dict_and_dataclass_are_refused() -> None:
    d: dict[str, Any] = {}
    d["self"] = d
    with pytest.raises(DBOSSerializationError, match=r"\(at value\['self'\]\): circular"):
        serialize(d)
    h = Holder(foo=None)
    h.foo = [h]
    with pytest.raises(DBOSSerializationError, match=r"\(at value\.foo\[0\]\): circular"):
        serialize(h)


def test_shared_but_not_circular_values_are_fine() -> None:
    shared = [1, 2]
    assert roundtrip([shared, shared, {"a": shared}]) == [[1, 2], [1, 2], {"a": [1, 2]}]


def test_builtin_subclasses_are_refused_not_silently_converted() -> None:
    from collections import OrderedDict

    with pytest.raises(DBOSSerializationError, match="'collections.OrderedDict'"):
        serialize(OrderedDict(a=1))


def test_serialize_args_names_the_parameter_in_errors() -> None:
    bad = [1, 2, Holder(foo=lambda: 0)]
    with pytest.raises(DBOSSerializationError) as info:
        serialize_args((5, bad), {}, ["n", "x"])
    assert str(info.value) == (
        "cannot serialize argument 'x' (at x[2].foo): object of type 'function' is not "
        "JSON-serializable"
    )
    with pytest.raises(DBOSSerializationError, match=r"argument 'args\[1\]' \(at args\[1\]\)"):
        serialize_args((5, object()), {})
    with pytest.raises(DBOSSerializationError, match=r"argument 'limit' \(at limit\['a'\]\)"):
        serialize_args((), {"limit": {"a": object()}}, ["n"])


def test_args_roundtrip() -> None:
    args = (1, (2, 3), Point(1, 1.0))
    kwargs = {"when": datetime.date(2024, 1, 1), TAG: "kw named like the tag", "s": {1}}
    text = serialize_args(args, kwargs, ["a", "b", "c"])
    assert set(json.loads(text)) == {"args", "kwargs"}
    result_args, result_kwargs = deserialize_args(text)
    assert_same(result_args, args)
    assert_same(result_kwargs, kwargs)
    assert deserialize_args(serialize_args((), {})) == ((), {})


def test_deserialize_args_rejects_other_shapes() -> None:
    with pytest.raises(DBOSSerializationError, match="malformed"):
        deserialize_args(serialize([1, 2]))


# --- exceptions ---------------------------------------------------------------------------------


def test_value_error_roundtrips_to_same_class_and_message() -> None:
    text = serialize_exception(ValueError("bad value 42"))
    stored = json.loads(text)
    assert stored["type"] == "ValueError" and stored["module"] == "builtins"
    assert stored["message"] == "bad value 42" and stored["args"] == ["bad value 42"]
    exc = deserialize_exception(text)
    assert type(exc) is ValueError
    assert str(exc) == "bad value 42"
    assert exc.args == ("bad value 42",)
    assert exception_summary(text) == "ValueError: bad value 42"


def test_custom_two_arg_exception_roundtrips() -> None:
    exc = deserialize_exception(serialize_exception(PairError(404, "not found")))
    assert type(exc) is PairError
    assert str(exc) == "[404] not found"
    assert exc.code == 404 and exc.detail == "not found"


def test_exception_whose_init_does_not_take_its_args_keeps_class_message_and_attributes() -> None:
    exc = deserialize_exception(serialize_exception(FormattedError("users", 7)))
    assert type(exc) is FormattedError
    assert str(exc) == "row 7 missing from users"
    assert exc.table == "users" and exc.row == 7


def test_runtime_error_with_formatting_init_keeps_its_message() -> None:
    original = DBOSNonExistentWorkflowError("wf-1")
    exc = deserialize_exception(serialize_exception(original))
    assert type(exc) is DBOSNonExistentWorkflowError
    assert str(exc) == str(original) == "workflow 'wf-1' does not exist"
    assert exc.workflow_id == "wf-1"


def test_exception_with_unencodable_args_still_serializes() -> None:
    text = serialize_exception(TypeError(object(), "second"))
    stored = json.loads(text)
    assert stored["args"] is None
    exc = deserialize_exception(text)
    assert type(exc) is TypeError
    assert str(exc) == stored["message"]


def test_exception_of_unimportable_class_becomes_dbos_exception() -> None:
    stored = json.loads(serialize_exception(ValueError("boom")))
    stored["module"], stored["type"] = "no_such_module_for_dbos_tests", "VanishedError"
    exc = deserialize_exception(json.dumps(stored))
    assert type(exc) is DBOSException
    assert "VanishedError" in str(exc) and "boom" in str(exc)
    assert str(exc) == "no_such_module_for_dbos_tests.VanishedError: boom"
    assert exc.original_type == "VanishedError"  # type: ignore[attr-defined]
    assert exc.original_module == "no_such_module_for_dbos_tests"  # type: ignore[attr-defined]


def test_keyboard_interrupt_is_not_recreated() -> None:
    text = serialize_exception(KeyboardInterrupt("stop"))
    exc = deserialize_exception(text)
    assert not isinstance(exc, KeyboardInterrupt)
    assert isinstance(exc, DBOSException)
    assert "KeyboardInterrupt" in str(exc)
    exc = deserialize_exception(serialize_exception(SystemExit(3)))
    assert not isinstance(exc, SystemExit) and isinstance(exc, DBOSException)


def test_non_exception_class_named_in_record_is_not_called() -> None:
    stored = {"type": "system", "module": "os", "message": "echo hi", "args": ["echo hi"]}
    exc = deserialize_exception(json.dumps(stored))
    assert type(exc) is DBOSException
    assert str(exc) == "os.system: echo hi"


def test_deserialize_exception_never_raises_on_garbage() -> None:
    exc = deserialize_exception("not json at all")
    assert isinstance(exc, DBOSException)
    assert exception_summary("not json at all") == "not json at all"


def test_exception_summary_without_message() -> None:
    assert exception_summary(serialize_exception(KeyError())) == "KeyError"


def test_a_class_defined_in_a_function_is_refused_since_a_replay_could_not_rebuild_it() -> None:
    @dataclasses.dataclass
    class Local:
        cents: int

    class Color(enum.Enum):
        RED = 1

    for value in (Local(5), [Color.RED]):
        with pytest.raises(DBOSSerializationError, match="defined inside a function"):
            serialize(value, "workflow input")

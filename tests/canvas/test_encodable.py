"""The walker that names the value a serializer cannot carry, wherever it sits."""

from __future__ import annotations

import datetime

import pytest

from flowq.canvas.encodable import arguments_error, encode_error, unencodable
from flowq.exceptions import EncodeError

from .tasks import add


def json_like(value: object) -> bool:
    if isinstance(value, dict):
        return all(isinstance(key, str) for key in value)
    return value is None or isinstance(value, (str, int, float, bool))


def test_the_path_of_the_first_piece_refused_is_found() -> None:
    assert unencodable({"a": [1, {"b": {2}}]}, json_like) == ("['a'][1]['b']", {2}, False)
    assert unencodable([1, (2, {3: "x"})], json_like) == ("[1][1]", 3, True)  # a key
    assert unencodable({"a": [1, "b"]}, json_like) is None


def test_deep_values_are_walked_without_recursion() -> None:
    deep: list[object] = [object()]
    for _ in range(50_000):
        deep = [deep]
    found = unencodable(deep, json_like)
    assert found is not None and found[0].count("[0]") == 50_001


@pytest.mark.parametrize("value, advice", [
    ({1, 2}, "pass a list (sorted(value)) instead"),
    (datetime.date(2024, 1, 2), "pass value.isoformat()"),
    (add.s(1, 1), "call self.replace(workflow)"),
    (object(), "docs/runtime.md"),
])
def test_the_error_says_what_to_do_for_each_kind_of_value(value, advice) -> None:
    error = encode_error("task 't.x'", "the return value", {"v": value}, "json", json_like)
    assert isinstance(error, EncodeError) and isinstance(error, TypeError)
    assert str(error).startswith("task 't.x': the return value['v'] is a")
    assert "which the json serializer cannot carry" in str(error) and advice in str(error)


def test_arguments_are_named_by_position_or_keyword() -> None:
    error = arguments_error("task 't.x'", (1, [2, {3}]), {}, "json", json_like)
    assert "argument 1[1] is a set" in str(error)
    error = arguments_error("task 't.x'", (1,), {"when": datetime.datetime(2024, 1, 1)},
                            "json", json_like, first=1)
    assert "keyword argument 'when' is a datetime" in str(error)
    error = arguments_error("task 't.x'", (object(),), {}, "json", json_like, first=1)
    assert "argument 1 is an object" in str(error)

"""Segment results to JSON and back, generically: any frozen dataclass of plain values, tuples, optionals and
nested dataclasses round-trips by its own type hints. A field added to SegmentResult (word timings, say)
is stored and read back by jobs with no change here; results stored before the field existed read back with
its default."""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from functools import cache
from typing import Any, TypeVar, Union

from app.engine.pipeline import SegmentResult

T = TypeVar("T")


def to_plain(value: Any) -> Any:
    """Dataclasses -> dicts, tuples -> lists, recursively."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (tuple, list)):
        return [to_plain(item) for item in value]
    if isinstance(value, dict):
        return {key: to_plain(item) for key, item in value.items()}
    return value


def from_plain(kind: Any, value: Any) -> Any:
    """The inverse of to_plain for the type `kind`."""
    if value is None:
        return None
    origin = typing.get_origin(kind)
    if origin in (Union, types.UnionType):
        options = [arg for arg in typing.get_args(kind) if arg is not type(None)]
        return from_plain(options[0], value) if len(options) == 1 else value
    if origin is tuple:
        args = typing.get_args(kind)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(from_plain(args[0], item) for item in value)
        return tuple(from_plain(arg, item) for arg, item in zip(args, value))
    if origin is list:
        return [from_plain(typing.get_args(kind)[0], item) for item in value]
    if origin is dict:
        return {key: from_plain(typing.get_args(kind)[1], item) for key, item in value.items()}
    if isinstance(kind, type) and dataclasses.is_dataclass(kind):
        hints = _hints(kind)
        known = {f.name for f in dataclasses.fields(kind) if f.init}
        return kind(**{name: from_plain(hints[name], item) for name, item in value.items() if name in known})
    if kind is float and isinstance(value, int):
        return float(value)
    return value


@cache
def _hints(kind: type) -> dict[str, Any]:
    return typing.get_type_hints(kind)


def encode_result(result: SegmentResult) -> str:
    return json.dumps(to_plain(result), ensure_ascii=False, allow_nan=False)


def decode_result(text: str) -> SegmentResult:
    return from_plain(SegmentResult, json.loads(text))

"""Reading a funcspec's JSON as the server holds it: each reader checks one value's type and
raises `SpecError` naming the field (its dotted path) and what was expected instead."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

JSON_TYPES: Final = {bool: "bool", int: "int", float: "float", str: "string", list: "list", dict: "object"}


class SpecError(ValueError):
    """A funcspec this executor will not run. `field` is the dotted path of the culprit;
    the message names it too, so `str(err)` alone is what the user reads."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"invalid funcspec: {message}")
        self.field = field
        self.message = message


def got(value: Any) -> str:
    if value is None:
        return "null"
    text = repr(value)
    text = text if len(text) <= 40 else text[:37] + "..."
    return f"{JSON_TYPES.get(type(value), type(value).__name__)} ({text})"


def obj(value: Any, field: str, expected: str) -> Mapping[str, Any]:
    """An optional JSON object; null reads as empty."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise SpecError(field, f"{field} must be an object ({expected}), got {got(value)}")
    return value


def string(value: Any, field: str) -> str:
    if not isinstance(value, str):
        raise SpecError(field, f"{field} must be a string, got {got(value)}")
    return value


def strings(value: Any, field: str) -> tuple[str, ...]:
    """An optional list of strings; null reads as empty."""
    if value is None:
        return ()
    if not isinstance(value, list):
        raise SpecError(field, f"{field} must be a list of strings, got {got(value)}")
    return tuple(string(item, f"{field}[{i}]") for i, item in enumerate(value))


def integer(value: Any, field: str) -> int:
    """An optional JSON integer; null reads as 0. Bools and floats are refused, as the
    server's Go types would refuse them."""
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int):
        raise SpecError(field, f"{field} must be an integer, got {got(value)}")
    return value


def non_negative(value: Any, field: str, cap: int | None, unit: str) -> int:
    number = integer(value, field)
    if number < 0:
        raise SpecError(field, f"{field} must not be negative, got {number}")
    if cap is not None and number > cap:
        raise SpecError(field, f"{field} {number} is over this executor's limit of {cap} {unit}")
    return number


def boolean(value: Any, field: str) -> bool:
    """An optional JSON boolean; null reads as false."""
    if value is None:
        return False
    if not isinstance(value, bool):
        raise SpecError(field, f"{field} must be true or false, got {got(value)}")
    return value


def objects(value: Any, field: str, expected: str) -> list[Mapping[str, Any]]:
    """An optional list of JSON objects; null reads as empty."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise SpecError(field, f"{field} must be a list of objects ({expected}), got {got(value)}")
    return [obj(item, f"{field}[{i}]", expected) or {} for i, item in enumerate(value)]

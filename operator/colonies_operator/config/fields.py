"""What every part of a ColonyExecutor's spec is read with: `ConfigError`, which names the
field, and the readers of quantities, Secret references, seconds and whole numbers."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from colonies_operator.jobs import quantity


class ConfigError(ValueError):
    def __init__(self, field_: str, message: str) -> None:
        super().__init__(f"spec.{field_}: {message}")
        self.field = field_


def truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class SecretRef:
    name: str
    key: str


def amount(spec: Mapping[str, Any], path: str, parse: Any, default: Any = None) -> int | None:
    section, _, key = path.rpartition(".")
    value = (spec.get(section) or {}).get(key, default) if section else spec.get(key, default)
    if value is None:
        return None
    try:
        return parse(value)
    except (quantity.QuantityError, ValueError) as exc:
        raise ConfigError(path, str(exc)) from None


def secret_ref(value: Any, path: str, default_key: str) -> SecretRef | None:
    if value is None:
        return None
    if not isinstance(value, Mapping) or not value.get("name"):
        raise ConfigError(path, "must name a Secret: {name: <secret>, key: <key>}")
    return SecretRef(str(value["name"]), str(value.get("key") or default_key))


def seconds(spec: Mapping[str, Any], key: str, default: float, low: float, high: float) -> float:
    value = spec.get(key)
    if value is None:
        return default
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(key, f"must be a number of seconds, got {value!r}") from None
    if not low <= number <= high:
        raise ConfigError(key, f"must be between {low:g} and {high:g} seconds, got {number:g}")
    return number


def whole(section: Mapping[str, Any], path: str, default: int, low: int, high: int) -> int:
    value = section.get(path.rpartition(".")[2])
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value):
        raise ConfigError(path, f"must be a whole number, got {value!r:.40}")
    if not low <= value <= high:
        raise ConfigError(path, f"must be between {low} and {high}, got {int(value)}")
    return int(value)

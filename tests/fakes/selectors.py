"""Label and field selectors, as the apiserver reads them from a list or watch query.

Labels: comma-separated requirements `k=v`, `k==v`, `k!=v`, `k` (exists), `!k` (absent).
Fields: `path=value` / `path!=value` over the object's dotted paths (`involvedObject.name`,
`reason`, `type`, `metadata.name`...), the ones the apiserver supports for Events.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def _requirements(selector: str) -> list[tuple[str, str, str | None]]:
    """(key, operator, value) for every comma-separated requirement."""
    out: list[tuple[str, str, str | None]] = []
    for part in (p.strip() for p in selector.split(",")):
        if not part:
            continue
        for op in ("!=", "==", "="):
            if op in part:
                key, value = part.split(op, 1)
                out.append((key.strip(), "!=" if op == "!=" else "=", value.strip()))
                break
        else:
            out.append((part[1:].strip(), "absent", None) if part.startswith("!") else (part, "exists", None))
    return out


def _holds(actual: str | None, op: str, value: str | None) -> bool:
    if op == "exists":
        return actual is not None
    if op == "absent":
        return actual is None
    return (actual == value) if op == "=" else (actual != value)


def matches_labels(obj: Mapping[str, Any], selector: str) -> bool:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return all(_holds(labels.get(k), op, v) for k, op, v in _requirements(selector or ""))


def field_value(obj: Mapping[str, Any], path: str) -> str | None:
    value: Any = obj
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return None if value is None else str(value)


def matches_fields(obj: Mapping[str, Any], selector: str) -> bool:
    """Field selectors compare with "" where the field is unset, as the apiserver does."""
    return all(_holds(field_value(obj, k) or "", op, v) for k, op, v in _requirements(selector or ""))

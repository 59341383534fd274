"""How the Go server reads quantities, times and JSON: small pure functions the fake server uses.

Each follows the v1.9.12 source it names, quirks included, because the operator must cope
with exactly these readings (a cpu string without "m" is zero, memory units are matched
case-insensitively but trimmed case-sensitively, NaN is not JSON).
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any

MAX_INT64 = 2**63 - 1
MIB = 1024 * 1024

# pkg/parsers/parser.go ConvertMemoryToBytes
_MEMORY_UNITS = {
    "Ki": 1024, "KiB": 1024, "Mi": MIB, "MiB": MIB, "Gi": 1024**3, "GiB": 1024**3, "TiB": 1024**4,
    "K": 1000, "KB": 1000, "Kb": 1000, "M": 1000**2, "MB": 1000**2, "Mb": 1000**2,
    "G": 1000**3, "Gb": 1000**3, "TB": 1000**4, "Tb": 1000**4,
}


class QuantityError(ValueError):
    """The server's own error text for a quantity it cannot read (it answers 400 with it)."""


def _parse_int(text: str) -> int:
    """Go's strconv.ParseInt(text, 10, 64), with its error text."""
    body = text[1:] if text[:1] in "+-" else text
    if not body.isascii() or not body.isdigit():
        raise QuantityError(f'strconv.ParseInt: parsing "{text}": invalid syntax')
    value = int(text)
    if not -(2**63) <= value <= MAX_INT64:
        raise QuantityError(f'strconv.ParseInt: parsing "{text}": value out of range')
    return value


def cpu_millis(text: str) -> int:
    """ConvertCPUToInt: only "<n>m" counts ("-1m" too); anything else is 0, not an error."""
    if not text.endswith("m"):
        return 0
    try:
        return _parse_int(text[:-1])
    except QuantityError:
        raise QuantityError("Error converting CPU to int") from None


def memory_bytes(text: str) -> int:
    """ConvertMemoryToBytes. The unit is found by a case-insensitive suffix match but cut
    off case-sensitively, so "1GB" (found as "Gb") fails. Go tries the units in random map
    order, so an ambiguous spelling ("1MB": "MB" or "Mb") may pass or fail there; this fake
    tries the exact spelling first, which makes it pass. "-1Mi" is read as -1 MiB."""
    if not text:
        return 0
    units = sorted((u for u in _MEMORY_UNITS if text.upper().endswith(u.upper())), key=lambda u: not text.endswith(u))
    unit = units[0] if units else ""
    number = (text[: -len(unit)] if text.endswith(unit) else text) if unit else ""
    try:
        return _parse_int(number) * _MEMORY_UNITS[unit]
    except QuantityError as exc:
        raise QuantityError(f"error converting memory to int: {exc}") from None


def cpu_text(millis: int) -> str:
    return f"{millis}m"  # ConvertCPUToString


def memory_text(nbytes: int) -> str:
    """ConvertMemoryToString: whole MiB, Go's division truncating toward zero."""
    return f"{-(-nbytes // MIB) if nbytes < 0 else nbytes // MIB}Mi"


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not JSON")


def decode(text: str) -> Any:
    """What Go's encoding/json accepts: no NaN or Infinity (Python's json writes them)."""
    return json.loads(text, parse_constant=_not_json)


class ServerTime:
    """The server's time.Time values as JSON: local time with its offset, RFC 3339 with up
    to 9 fractional digits (trailing zeros dropped, as Go's RFC3339Nano does)."""

    def __init__(self, utc_offset_minutes: int) -> None:
        self.zone = timezone(timedelta(minutes=utc_offset_minutes))
        hours, minutes = divmod(abs(utc_offset_minutes), 60)
        sign = "+" if utc_offset_minutes > 0 else "-"
        self.suffix = f"{sign}{hours:02d}:{minutes:02d}" if utc_offset_minutes else "Z"
        # Go's zero time printed in the server's location: what an unset start/end time reads
        before = 24 * 60 - abs(utc_offset_minutes)  # west of UTC, the zero time falls in year 0
        self.zero = (f"0001-01-01T{hours:02d}:{minutes:02d}:00{self.suffix}" if utc_offset_minutes >= 0
                     else f"0000-12-31T{before // 60:02d}:{before % 60:02d}:00{self.suffix}")

    def format(self, nanos: int) -> str:
        if nanos == 0:
            return self.zero
        seconds, fraction = divmod(nanos, 1_000_000_000)
        digits = f"{fraction:09d}".rstrip("0")
        local = datetime.fromtimestamp(seconds, tz=self.zone).replace(tzinfo=None).isoformat(timespec="seconds")
        return local + (f".{digits}" if digits else "") + self.suffix

    @staticmethod
    def parse(text: Any) -> int:
        """Nanoseconds of an RFC 3339 time a client sent; 0 for Go's zero time or nonsense."""
        if not isinstance(text, str) or text.startswith("0001-01-01"):
            return 0
        main, _, rest = text.replace("Z", "+00:00").partition(".")
        digits = rest[: len(rest) - len(rest.lstrip("0123456789"))]
        try:
            base = datetime.fromisoformat(main + rest[len(digits):])
        except ValueError:
            return 0
        return int(base.timestamp()) * 1_000_000_000 + int((digits + "0" * 9)[:9])

"""Kubernetes-style cpu and memory quantities, parsed strictly.

`parse_cpu` gives whole millicores and `parse_memory` whole bytes; anything that does not
denote exactly such a number raises `QuantityError` (a `ValueError`) with a message that
says which forms are accepted. The parser never guesses: "1GB" is refused rather than
read as 10^9 or 2^30 bytes, and "0.0005" cpu is refused rather than rounded.

The Colonies server normalises what it stores (cpu "<n>m", memory "<n>Mi"), so values
read back from it are already in the simplest form; raw values, as a user writes them,
go through the same rules. Zero is a valid quantity here; whether it means "not set" is
the caller's decision.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Final


class QuantityError(ValueError):
    """A value that is not a quantity of the expected kind."""


# ASCII digits only: `\d` would also admit other scripts' digits, which Kubernetes refuses.
_NUMBER: Final = re.compile(r"(?P<number>[0-9]+(?:\.[0-9]+)?|\.[0-9]+)(?P<suffix>[A-Za-z]*)")

# Memory suffixes exactly as Kubernetes spells them: binary (Ki..Ei) and decimal (k..E).
# "K" and the "KB"/"GB" spellings the Colonies server also reads are not Kubernetes
# quantities, so a Job built from them would be refused by the apiserver later.
_MEMORY_FACTORS: Final = {
    "": 1,
    "Ki": 1024, "Mi": 1024**2, "Gi": 1024**3, "Ti": 1024**4, "Pi": 1024**5, "Ei": 1024**6,
    "k": 1000, "M": 1000**2, "G": 1000**3, "T": 1000**4, "P": 1000**5, "E": 1000**6,
}

_CPU_FORMS: Final = "expected millicores like '500m', or cores like '2', '0.5' or '1.5'"
_MEMORY_FORMS: Final = (
    "expected bytes like '123', or a number with a Kubernetes suffix: "
    "Ki, Mi, Gi, Ti, Pi, Ei (powers of 1024) or k, M, G, T, P, E (powers of 1000), "
    "e.g. '512Mi', '1Gi', '1G'"
)


def _split(value: object, kind: str, forms: str) -> tuple[Decimal, str]:
    """(number, suffix) of an int or a quantity string; bools and floats are not quantities."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise QuantityError(f"invalid {kind} quantity {value!r}: {forms}")
    if isinstance(value, int):
        if value < 0:
            raise QuantityError(f"invalid {kind} quantity {value!r}: must not be negative")
        return Decimal(value), ""
    match = _NUMBER.fullmatch(value.strip())
    if not match:
        raise QuantityError(f"invalid {kind} quantity {value!r}: {forms}")
    try:
        return Decimal(match["number"]), match["suffix"]
    except InvalidOperation:  # the pattern only admits decimals; this is a safety net
        raise QuantityError(f"invalid {kind} quantity {value!r}: {forms}") from None


def _whole(amount: Decimal, value: object, kind: str, unit: str) -> int:
    if amount != amount.to_integral_value():
        raise QuantityError(f"invalid {kind} quantity {value!r}: not a whole number of {unit}")
    return int(amount)


def parse_cpu(value: str | int) -> int:
    """Millicores of "500m", "2", "0.5", "1.5" or an int number of cores."""
    number, suffix = _split(value, "cpu", _CPU_FORMS)
    if suffix == "m":
        return _whole(number, value, "cpu", "millicores")
    if suffix:
        raise QuantityError(f"invalid cpu quantity {value!r}: {_CPU_FORMS}")
    return _whole(number * 1000, value, "cpu", "millicores")


def parse_memory(value: str | int) -> int:
    """Bytes of "512Mi", "1Gi", "1G", "1000M", "1024Ki", "123", "1Ti" or an int of bytes."""
    number, suffix = _split(value, "memory", _MEMORY_FORMS)
    factor = _MEMORY_FACTORS.get(suffix)
    if factor is None:
        raise QuantityError(f"invalid memory quantity {value!r}: {_MEMORY_FORMS}")
    return _whole(number * factor, value, "memory", "bytes")


def format_cpu(millis: int) -> str:
    """The canonical Kubernetes form of a cpu amount: always millicores, "500m"."""
    if millis < 0:
        raise QuantityError(f"cpu must not be negative, got {millis}m")
    return f"{millis}m"


def format_memory(size: int) -> str:
    """The simplest exact form: "<n>Mi" when whole MiB, else "<n>Ki", else plain bytes."""
    if size < 0:
        raise QuantityError(f"memory must not be negative, got {size} bytes")
    if size % 1024**2 == 0:
        return f"{size // 1024**2}Mi"
    if size % 1024 == 0:
        return f"{size // 1024}Ki"
    return str(size)

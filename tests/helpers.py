"""Small helpers shared by the tests."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


async def wait_for(predicate: Callable[[], T | Awaitable[T]], timeout: float, what: str,
                   interval: float = 0.1) -> T:
    """Poll `predicate` (sync or async) until it returns something truthy, and return that.

    Tests wait for outcomes, never for fixed times: this is the only way they wait. On timeout
    the assertion names what was awaited and the last value (or exception) seen.
    """
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            value = predicate()
            if inspect.isawaitable(value):
                value = await value
            last = value
            if value:
                return value
        except AssertionError:
            raise
        except Exception as e:  # e.g. 404 until the object exists: keep polling, remember why
            last = e
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}; last seen: {last!r}")
        await asyncio.sleep(interval)

"""Small helpers shared by the tests."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from teststack import stack as teststack
from teststack.state import StackState

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


@contextlib.contextmanager
def fresh_stack(request: pytest.FixtureRequest) -> Iterator[StackState]:
    """A new stack in a temporary run dir, stopped (by pid) when the block ends."""
    run_dir = Path(tempfile.mkdtemp(prefix="colonies-it-"))
    state = None
    try:
        state = teststack.start(run_dir)
        yield state
    finally:
        if state is not None:
            teststack.stop(state)
        else:
            teststack.stop_run_dir(run_dir)
        if request.session.testsfailed:
            print(f"\nstack run dir kept for its logs: {run_dir / 'logs'}")
        else:
            shutil.rmtree(run_dir, ignore_errors=True)

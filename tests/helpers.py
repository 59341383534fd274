"""Small helpers shared by the tests."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from teststack import audit
from teststack import stack as teststack
from teststack.state import StackState

T = TypeVar("T")
# The clients that are the operator: its own KubeApi, and kopf's client (which only the
# operator uses in these tests).
OPERATOR_AGENTS = ("colonies-operator/", "kopf/")
# What the operator asked of the stacks already stopped in this session (tests/integration/test_zz_rbac.py).
STOPPED_STACKS_REQUESTS = pytest.StashKey[set[audit.Request]]()
# Why this session is not the whole integration suite (modules left out, tests deselected); empty when it is.
SUITE_GAPS = pytest.StashKey[list[str]]()


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


def scrape_total(url: str, name: str, **labels: str) -> float:
    """The sum of a metric's samples at a Prometheus `url` whose labels include `labels`."""
    import httpx
    wanted = [f'{k}="{v}"' for k, v in labels.items()]
    total = 0.0
    for line in httpx.get(url, timeout=10).text.splitlines():
        if line.startswith(name) and all(w in line for w in wanted):
            total += float(line.rpartition(" ")[2])
    return total


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
            keep_operator_requests(request.config, state)
        else:
            teststack.stop_run_dir(run_dir)
        if request.session.testsfailed or os.environ.get("COLONIES_IT_KEEP_LOGS"):
            print(f"\nstack run dir kept for its logs: {run_dir / 'logs'}")
        else:
            shutil.rmtree(run_dir, ignore_errors=True)


def keep_operator_requests(config: pytest.Config, state: StackState) -> None:
    """Keep what the operator asked of a stopped stack before its run dir goes."""
    if state.kube.audit_dir:
        kept = config.stash.setdefault(STOPPED_STACKS_REQUESTS, set())
        kept.update(audit.requests(state.kube.audit_dir, OPERATOR_AGENTS))


def colonies_cli(stack: StackState, *args: str) -> str:
    """The Go `colonies` CLI against the stack's server, as a colony member: its stdout."""
    done = subprocess.run([str(Path(stack.bin_dir) / "colonies"), *args, "--insecure"], capture_output=True,
                          text=True, env=dict(os.environ) | stack.env(), timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout

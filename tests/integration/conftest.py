"""The real test stack for integration tests, started once per session.

A fresh stack in a temporary run dir, always stopped at the end (also on failure). Set
COLONIES_OPERATOR_STACK_DIR to the run dir of a stack you started yourself
(`python3 -m teststack start --run-dir DIR`) to reuse it: the session then leaves it running.
A failed session keeps the temporary run dir (its logs/ say what the components saw).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from teststack import stack as teststack
from teststack.state import StackState
from tests.helpers import SUITE_GAPS, fresh_stack

STACK_DIR_ENV = "COLONIES_OPERATOR_STACK_DIR"
HERE = Path(__file__).parent
_DESELECTED = pytest.StashKey[int]()


def _integration(item: pytest.Item) -> bool:
    return HERE in Path(str(item.fspath)).parents


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "after_all: runs after every other test of the session (it reads what "
                                       "they did)")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if _integration(item):
            item.add_marker(pytest.mark.integration)
    # Whatever order the command line names files in; a stable sort keeps the rest as it was.
    items.sort(key=lambda item: item.get_closest_marker("after_all") is not None)


def pytest_deselected(items: list[pytest.Item]) -> None:
    integration = [item for item in items if _integration(item)]
    if integration:
        config = integration[0].config
        config.stash[_DESELECTED] = config.stash.get(_DESELECTED, 0) + len(integration)


def pytest_collection_finish(session: pytest.Session) -> None:
    ran = {Path(str(item.fspath)).name for item in session.items if _integration(item)}
    gaps = [f"{name} left out" for name in sorted({p.name for p in HERE.glob("test_*.py")} - ran)]
    if session.config.stash.get(_DESELECTED, 0):
        gaps.append(f"{session.config.stash[_DESELECTED]} integration test(s) deselected")
    session.config.stash[SUITE_GAPS] = gaps


@pytest.fixture(scope="session")
def stack(request: pytest.FixtureRequest) -> Iterator[StackState]:
    external = os.environ.get(STACK_DIR_ENV)
    if external:
        state = teststack.load_state(external)
        if state is None or not teststack.healthy(state):
            pytest.fail(f"{STACK_DIR_ENV}={external} holds no healthy stack; start one with "
                        f"`python3 -m teststack start --run-dir {external}`")
        yield state
        return
    with fresh_stack(request) as state:
        yield state

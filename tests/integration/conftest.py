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
from tests.helpers import fresh_stack

STACK_DIR_ENV = "COLONIES_OPERATOR_STACK_DIR"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.integration)


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

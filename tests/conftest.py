"""Test-wide set-up: import paths, and the marker for tests that need the real stack."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# `teststack` and `tests` live at the repo root; the package under operator/ (when it is not
# installed, e.g. a bare `python3 -m pytest` outside the project venv).
for p in (ROOT, ROOT / "operator"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

pytest_plugins = ["tests.fixtures.colonies", "tests.fixtures.kube", "tests.fixtures.kueue", "tests.fixtures.operator",
                  "tests.fixtures.tls"]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "integration: needs the real test stack (Colonies server + Kubernetes control plane)")

"""The README's troubleshooting table is the user's map from an error to a fix: every
failure reason the operator reports has a row there."""

from __future__ import annotations

import re
from pathlib import Path

from colonies_operator.jobs.diagnosis import Reason

README = Path(__file__).resolve().parents[2] / "README.md"


def troubleshooting_first_cells() -> list[str]:
    section = README.read_text().split("## Troubleshooting", 1)[1].split("\n## ", 1)[0]
    return [line.split("|")[1] for line in section.splitlines() if line.startswith("| `")]


def test_every_failure_reason_has_a_row_in_the_readmes_troubleshooting_table():
    cells = troubleshooting_first_cells()
    missing = [r.value for r in Reason if not any(re.search(rf"`{r.value}\b", cell) for cell in cells)]
    assert missing == []

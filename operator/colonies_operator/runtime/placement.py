"""`capacity.elastic`: which of this executor's processes have no node yet, and how many more
the assign loop may take.

A process counts from its admission (the assign answered, or its Job was adopted) until
every pod of its Job has a node (or the Job finished), or until its supervisor ends. With
`elastic: N` at most N count at once: the assign loop takes nothing new while N wait, so
a cluster that is full gets exactly N Jobs pending (the demand a cluster autoscaler sees),
and the rest of the queue stays WAITING in Colonies, where any other executor may take it.
Counting from the assignment, not from the scheduler's verdict, is what makes the bound
exact: Jobs created in one burst are all unplaced for a moment, whatever the cluster holds.
`elastic: 0` turns this off (no bound; Unschedulable after pendingGraceSeconds).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from colonies_operator.jobs import statuses


def job_placed(job: Mapping[str, Any], pods: Sequence[Mapping[str, Any]]) -> bool:
    """Every pod the Job runs at once has a node (or has finished)."""
    wanted = int((job.get("spec") or {}).get("parallelism") or 1)
    placed = [p for p in pods if (p.get("spec") or {}).get("nodeName")
              or statuses.phase(p) in ("Succeeded", "Failed")]
    return len(placed) >= wanted


class Placement:
    def __init__(self, elastic: int = 0, on_change: Callable[[], None] = lambda: None) -> None:
        self.elastic = elastic
        self._unplaced: set[object] = set()  # supervisors (by identity: attempts of a process may overlap)
        self._on_change = on_change

    @property
    def unplaced(self) -> int:
        return len(self._unplaced)

    def slots(self) -> int | None:
        """How many more processes may be taken now; None without a bound."""
        return None if self.elastic <= 0 else self.elastic - len(self._unplaced)

    def admitted(self, who: object) -> None:
        self._unplaced.add(who)

    def placed(self, who: object) -> None:
        """`who`'s Job has its nodes, or `who` ended: its slot is free."""
        if who in self._unplaced:
            self._unplaced.discard(who)
            self._on_change()

"""Kueue admission of an executor's Jobs (spec.kueue): what a Job carries for Kueue, and how
to read whether Kueue has admitted it.

A Job for Kueue is created suspended, with the LocalQueue it waits in as a label (and, when
the executor maps the process's priority to one, a WorkloadPriorityClass). Kueue admits it by
setting `spec.suspend` to false; until then it is *queued*: no pod exists, nothing of the
executor's capacity is held for it. Label names are Kueue's (v0.17:
pkg/controller/constants/constants.go).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

QUEUE_LABEL: Final = "kueue.x-k8s.io/queue-name"
PRIORITY_CLASS_LABEL: Final = "kueue.x-k8s.io/priority-class"
DEFAULT_MAX_QUEUED: Final = 10
# Colonies refuses priorities outside this range on submit.
PRIORITY_RANGE: Final = (-50000, 50000)

_NAME: Final = re.compile(r"[a-z0-9]([-a-z0-9.]{0,61}[a-z0-9])?")  # a LocalQueue / class name, a label value


class KueueError(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class PriorityClass:
    min_priority: int  # processes with priority >= this (and below the next class's) get `name`
    name: str          # a WorkloadPriorityClass


@dataclass(frozen=True)
class KueueSettings:
    queue_name: str                # the LocalQueue, in the executor's namespace
    max_queued: int = DEFAULT_MAX_QUEUED  # Jobs waiting for admission at most; then no new assigns
    priority_classes: tuple[PriorityClass, ...] = ()  # highest min_priority first

    def priority_class(self, priority: int) -> str:
        """The WorkloadPriorityClass of a process of `priority`: the class with the highest
        minPriority at or below it; "" (Kueue's default priority) below every minPriority."""
        return next((c.name for c in self.priority_classes if priority >= c.min_priority), "")


def parse(section: Any) -> KueueSettings | None:
    """spec.kueue → KueueSettings (None without it), or KueueError naming the field."""
    if section is None:
        return None
    if not isinstance(section, Mapping):
        raise KueueError("kueue", "must be an object: {queueName, maxQueued, priorityClasses}")
    queue = section.get("queueName")
    if not isinstance(queue, str) or not _NAME.fullmatch(queue):
        raise KueueError("kueue.queueName", f"must name a LocalQueue of the executor's namespace, got {queue!r:.80}")
    max_queued = section.get("maxQueued", DEFAULT_MAX_QUEUED)
    if isinstance(max_queued, bool) or not isinstance(max_queued, int) or not 1 <= max_queued <= 10000:
        raise KueueError("kueue.maxQueued", f"must be a whole number from 1 to 10000, got {max_queued!r:.40}")
    classes = section.get("priorityClasses") or []
    if not isinstance(classes, list):
        raise KueueError("kueue.priorityClasses", "must be a list of {minPriority, name}")
    parsed = [_priority_class(c, f"kueue.priorityClasses[{i}]") for i, c in enumerate(classes)]
    seen: dict[int, str] = {}
    for i, c in enumerate(parsed):
        if c.min_priority in seen:
            raise KueueError(f"kueue.priorityClasses[{i}].minPriority",
                             f"{c.min_priority} is also the minPriority of {seen[c.min_priority]!r}")
        seen[c.min_priority] = c.name
    ordered = tuple(sorted(parsed, key=lambda c: c.min_priority, reverse=True))
    return KueueSettings(queue_name=queue, max_queued=max_queued, priority_classes=ordered)


def _priority_class(value: Any, field: str) -> PriorityClass:
    if not isinstance(value, Mapping):
        raise KueueError(field, "must be an object: {minPriority: <int>, name: <WorkloadPriorityClass>}")
    name = value.get("name")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise KueueError(f"{field}.name", f"must name a WorkloadPriorityClass, got {name!r:.80}")
    low = value.get("minPriority")
    if isinstance(low, bool) or not isinstance(low, int) or not PRIORITY_RANGE[0] <= low <= PRIORITY_RANGE[1]:
        raise KueueError(f"{field}.minPriority", f"must be a whole number from {PRIORITY_RANGE[0]} to "
                                                 f"{PRIORITY_RANGE[1]} (Colonies' priority range), got {low!r:.40}")
    return PriorityClass(low, name)


def job_labels(settings: KueueSettings, priority: int) -> dict[str, str]:
    """The labels that hand a Job to Kueue."""
    labels = {QUEUE_LABEL: settings.queue_name}
    if name := settings.priority_class(priority):
        labels[PRIORITY_CLASS_LABEL] = name
    return labels


def queued(job: Mapping[str, Any]) -> bool:
    """Whether `job` waits for Kueue: handed to Kueue and still suspended. (A Job Kueue admitted
    and later evicted is suspended again: it waits again, and holds no capacity meanwhile.)"""
    meta = job.get("metadata") or {}
    return bool((meta.get("labels") or {}).get(QUEUE_LABEL)) and bool((job.get("spec") or {}).get("suspend"))

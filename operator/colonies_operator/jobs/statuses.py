"""Reading Job and pod dicts as the apiserver returns them.

Small total functions over plain dicts: a missing or null field reads as empty, never as
an exception, because status is filled in piece by piece (a new pod has no
containerStatuses, a pending Job no conditions). Orders are made deterministic here, so
that what is derived from a list of pods never depends on the order a watch saw them in.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any, Final

COMPLETION_INDEX_ANNOTATION: Final = "batch.kubernetes.io/job-completion-index"

Obj = Mapping[str, Any]


def parse_time(value: Any) -> datetime | None:
    """An RFC 3339 timestamp ("2026-05-04T10:15:30Z"), or None when absent or malformed."""
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def seconds_overdue(since: Any, now: datetime, grace: float) -> float | None:
    """Seconds from the timestamp `since` to `now` when at least `grace`, else None (also
    when `since` is unknown: no timestamp, no verdict). A naive `now` is taken as UTC."""
    start = parse_time(since)
    if start is None:
        return None
    now = now if now.tzinfo else now.replace(tzinfo=timezone.utc)
    seconds = (now - start).total_seconds()
    return seconds if seconds >= grace else None


def status(obj: Obj) -> Obj:
    return obj.get("status") or {}


def metadata(obj: Obj) -> Obj:
    return obj.get("metadata") or {}


def phase(pod: Obj) -> str:
    return str(status(pod).get("phase", ""))


def true_condition(obj: Obj, *types: str) -> Obj | None:
    """The first condition of one of `types` whose status is "True"."""
    for cond in status(obj).get("conditions") or []:
        if cond.get("type") in types and cond.get("status") == "True":
            return cond
    return None


def completion_index(pod: Obj) -> str | None:
    """The pod's index in an Indexed (multi-node) Job; None in a single-node Job."""
    index = (metadata(pod).get("annotations") or {}).get(COMPLETION_INDEX_ANNOTATION)
    return None if index is None else str(index)


def ordered_pods(pods: Sequence[Obj]) -> list[Obj]:
    """Pods by completion index, then creation time, then name."""
    def key(pod: Obj) -> tuple[int, str, str]:
        index = completion_index(pod) or ""
        meta = metadata(pod)
        return (int(index) if index.isdigit() else 0, str(meta.get("creationTimestamp", "")), str(meta.get("name", "")))
    return sorted(pods, key=key)


def container_statuses(pod: Obj) -> list[Obj]:
    """Container statuses in the pod spec's container order (the API sorts them by name)."""
    order = [c.get("name") for c in (pod.get("spec") or {}).get("containers") or []]
    statuses = list(status(pod).get("containerStatuses") or [])
    return sorted(statuses, key=lambda s: order.index(s.get("name")) if s.get("name") in order else len(order))


def container_states(pods: Sequence[Obj], state: str) -> Iterator[tuple[Obj, str, Obj]]:
    """(pod, container name, details) of every container now in `state` ("waiting",
    "running" or "terminated"), pods and containers in their deterministic order."""
    for pod in ordered_pods(pods):
        for container in container_statuses(pod):
            details = (container.get("state") or {}).get(state)
            if details:
                yield pod, str(container.get("name", "")), details


def container_terminated(pod: Obj, name: str) -> bool:
    """Whether container `name` of `pod` has ended (its pod may still be running)."""
    return any(c.get("name") == name and (c.get("state") or {}).get("terminated")
               for c in status(pod).get("containerStatuses") or [])


def container_ran(pod: Obj, name: str) -> bool:
    """Whether container `name` of `pod` ever started (so it has a log to read). One that could
    not start ends with no start time, or the zero time (1970)."""
    for c in status(pod).get("containerStatuses") or []:
        if c.get("name") != name:
            continue
        state = c.get("state") or {}
        if state.get("running"):
            return True
        started = parse_time((state.get("terminated") or {}).get("startedAt"))
        return started is not None and started.year > 1970
    return False


def init_container_states(pods: Sequence[Obj], state: str) -> Iterator[tuple[Obj, str, Obj]]:
    """As `container_states`, for init containers and sidecars, in the spec's order."""
    for pod in ordered_pods(pods):
        order = [c.get("name") for c in (pod.get("spec") or {}).get("initContainers") or []]
        found = sorted(status(pod).get("initContainerStatuses") or [],
                       key=lambda s: order.index(s.get("name")) if s.get("name") in order else len(order))
        for container in found:
            details = (container.get("state") or {}).get(state)
            if details:
                yield pod, str(container.get("name", "")), details


def container_spec(pod: Obj, name: str) -> Obj:
    """The pod spec's entry for container or init container `name` (empty when not there)."""
    spec = pod.get("spec") or {}
    for container in [*(spec.get("containers") or []), *(spec.get("initContainers") or [])]:
        if container.get("name") == name:
            return container
    return {}


def describe_container(pod: Obj, name: str) -> str:
    """`container main`, or `container main of node 1` in a multi-node Job."""
    index = completion_index(pod)
    return f"container {name}" + (f" of node {index}" if index is not None else "")

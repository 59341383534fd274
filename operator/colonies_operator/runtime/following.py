"""Following one process's pod logs: a follower per running container, a drain per finished
one, resumable from a cursor after any disconnect, and after an operator restart from what
Colonies already holds.

Lines of a Job with more than one container in all (nodes × processespernode) carry a
`[<completion index>/<container>] ` prefix. Whether there is a prefix comes from the run spec,
never from which pods happen to be cached when a line arrives, so a restarted operator
counts the lines already shipped by the same rule they were shipped by.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from colonies_operator.colonies.client import ColoniesClient
from colonies_operator.jobs import spec, statuses
from colonies_operator.runtime import logs
from colonies_operator.runtime.kube import KubeApi, KubeError

log = logging.getLogger(__name__)

DRAIN_PATIENCE = 60.0   # how long reading the end of a finished container's log is retried
TERMINAL_PHASES = ("Succeeded", "Failed")

Key = tuple[str, str]  # (pod name, container name)


def prefixed(run: spec.RunSpec) -> bool:
    """Whether this process's log lines name their pod and container."""
    return run.nodes > 1 or run.processes_per_node > 1


def containers(pods: list[dict[str, Any]], many: bool) -> list[tuple[dict[str, Any], str, str]]:
    """(pod, container, line prefix) for every container of every pod, in index order."""
    out = []
    for pod in statuses.ordered_pods(pods):
        index = statuses.completion_index(pod) or "0"
        for container in pod.get("spec", {}).get("containers") or []:
            name = container["name"]
            out.append((pod, name, f"[{index}/{name}] " if many else ""))
    return out


def all_prefixes(run: spec.RunSpec) -> list[str]:
    """Every prefix this process's lines can carry, known before any pod exists."""
    if not prefixed(run):
        return [""]
    names = ["main"] if run.processes_per_node == 1 else [f"main-{i}" for i in range(run.processes_per_node)]
    return [f"[{i}/{name}] " for i in range(run.nodes) for name in names]


class LogFollower:
    def __init__(self, kube: KubeApi, namespace: str, run: spec.RunSpec, shipper: logs.LogShipper) -> None:
        self.kube = kube
        self.namespace = namespace
        self.run = run
        self.shipper = shipper
        self.many = prefixed(run)
        self._resume_counts: dict[str, int] | None = None
        self._cursors: dict[Key, logs.Cursor] = {}
        self._tasks: dict[Key, asyncio.Task[None]] = {}
        self._drained: set[Key] = set()

    async def load_resume_point(self, colonies: ColoniesClient, colony: str, process_id: str) -> None:
        """After a restart, Colonies is the record of what was shipped: count its lines per
        container, so each follower skips exactly those and nothing is lost or sent twice."""
        messages = [e.message for e in await colonies.get_all_logs(colony, process_id)]
        counts, size, truncated = logs.shipped_so_far(messages, all_prefixes(self.run))
        self._resume_counts = counts
        self.shipper.resume(size, truncated, lines=logs.lines_in(messages))

    def follow(self, pods: list[dict[str, Any]]) -> None:
        """Follow running containers; once a container or its pod has ended, replace its
        follower by a drain."""
        for pod, container, prefix in containers(pods, self.many):
            phase = statuses.phase(pod)
            if phase not in ("Running", *TERMINAL_PHASES):
                continue
            key = (pod["metadata"]["name"], container)
            cursor = self._cursors.get(key)
            if cursor is None:
                skip = self._resume_counts.pop(prefix, 0) if self._resume_counts else 0
                cursor = self._cursors[key] = logs.Cursor(skip=skip)
            task = self._tasks.get(key)
            # A container can end while its pod runs on (a sidecar still pushing): drain it then.
            if phase == "Running" and not statuses.container_terminated(pod, container):
                if task is None:
                    self._tasks[key] = asyncio.create_task(self._ship(key, cursor, prefix, follow=True))
            elif key not in self._drained:
                if task is not None:
                    task.cancel()  # a follow stream may never end by itself (kwok's never does)
                self._drained.add(key)
                ran = statuses.container_ran(pod, container)
                self._tasks[key] = asyncio.create_task(self._drain(task, key, cursor, prefix, ran))

    async def finish(self, pods: list[dict[str, Any]]) -> None:
        """Read every finished container's log to its end."""
        self.follow(pods)  # turns every follower of a terminal pod into a drain
        await asyncio.gather(*(t for k, t in self._tasks.items() if k in self._drained), return_exceptions=True)

    async def stop(self) -> None:
        # let go of the tasks: a cancelled one keeps its CancelledError, whose traceback holds
        # the follower, a cycle only a full collection (rare, see tune_gc) would free
        tasks, self._tasks = list(self._tasks.values()), {}
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _ship(self, key: Key, cursor: logs.Cursor, prefix: str, *, follow: bool, ran: bool = False) -> None:
        """Follow (until cancelled) or drain one container's log, resuming from the cursor
        after any failure. A drain that keeps failing gives up after DRAIN_PATIENCE seconds
        and says so in the log itself, rather than holding the result back forever.

        A 400 ends a drain at once only for a container that never `ran`: for one that did, it
        is a log source not ready yet (kwok's after an apiserver restart), and is asked again."""
        pod, container = key
        delay = 0.5
        give_up = asyncio.get_running_loop().time() + DRAIN_PATIENCE
        while True:
            try:
                # a follow waits (no polling) while too many streams are open; a drain never waits
                async with self.kube.follow_slots if follow else contextlib.nullcontext():
                    await logs.ship_container_log(self.kube, self.namespace, pod, container, cursor,
                                                  self.shipper, follow=follow, prefix=prefix)
                if not follow:
                    return
                failure = "the stream ended"
            except asyncio.CancelledError:
                raise
            except KubeError as exc:
                if not follow and (exc.status == 404 or (exc.status == 400 and not ran)):
                    return  # the pod is gone, or the container never started: nothing more to read
                failure = str(exc)
            except Exception as exc:  # a dropped stream: resume from the cursor
                failure = f"{type(exc).__name__}: {exc}"
            log.info("log stream of %s/%s: %s; resuming", pod, container, failure)
            if not follow and asyncio.get_running_loop().time() + delay > give_up:
                self.shipper.add(f"[colonies-operator: the rest of this log could not be read: {failure}]", prefix)
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)

    async def _drain(self, previous: asyncio.Task[None] | None, key: Key, cursor: logs.Cursor, prefix: str,
                     ran: bool) -> None:
        if previous is not None:
            await asyncio.gather(previous, return_exceptions=True)
        await self._ship(key, cursor, prefix, follow=False, ran=ran)

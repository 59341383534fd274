"""The Colonies server's process events, as `pkg/backends/gin/eventhandler.go` (v1.9.12) does them.

Listeners are keyed by a *target*, the string executortype + state + location. Two kinds
share the same targets:

- process listeners (`subscribeprocessmsg`) wait for one process id and get every event of it;
- general listeners wait for any process of the target: an assign long poll waiting for
  work (state WAITING, the executor's location) and a `subscribeprocessesmsg` subscription
  (any state, location "").

An event goes to every process listener of its process but to exactly ONE general
listener, chosen round-robin over the listener ids sorted as strings ("thundering-herd
prevention"). So a WAITING subscription and an assign long poll of the same executor type
compete for each submission, and of two subscribers of one type only one hears of a given
cancel. `broadcast=True` instead gives every general listener every event (not what the
real server does; for tests that do not care about that).

A process without a location is offered to every target with its executortype+state
prefix; Go walks them in random map order, this fake in registration order.
"""

from __future__ import annotations

import asyncio
import copy
from collections import deque
from dataclasses import dataclass, field
from typing import Any

CHANNEL_SIZE = 100  # Go's buffered channel per listener; a full one is skipped


@dataclass(eq=False)
class Listener:
    target: str
    id: str
    process_id: str = ""  # "" for a general listener
    events: deque[dict[str, Any]] = field(default_factory=deque)
    wake: asyncio.Event = field(default_factory=asyncio.Event)

    def offer(self, process: dict[str, Any]) -> bool:
        if len(self.events) >= CHANNEL_SIZE:
            return False
        self.events.append(copy.deepcopy(process))
        self.wake.set()
        return True

    def take(self) -> dict[str, Any] | None:
        if not self.events:
            self.wake.clear()
            return None
        return self.events.popleft()


def target(executor_type: str, state: int, location: str) -> str:
    return f"{executor_type}{state}{location}"


class EventHub:
    def __init__(self, *, broadcast: bool = False) -> None:
        self.broadcast = broadcast
        self._listeners: dict[str, dict[str, Listener]] = {}
        self._next: dict[str, int] = {}
        self._ids = 0

    def register(self, executor_type: str, state: int, location: str, process_id: str = "") -> Listener:
        t = target(executor_type, state, location)
        listener = Listener(t, str(self._ids), process_id)
        self._ids += 1
        self._listeners.setdefault(t, {})[listener.id] = listener
        return listener

    def unregister(self, listener: Listener) -> None:
        group = self._listeners.get(listener.target, {})
        group.pop(listener.id, None)
        if not group:
            self._listeners.pop(listener.target, None)

    def general_listeners(self, executor_type: str, state: int, location: str = "") -> int:
        group = self._listeners.get(target(executor_type, state, location), {})
        return sum(1 for listener in group.values() if not listener.process_id)

    def signal(self, process: dict[str, Any]) -> None:
        """Deliver a snapshot of `process` (its JSON) as the server would."""
        conditions = process["spec"]["conditions"]
        prefix = f"{conditions['executortype']}{process['state']}"
        location = conditions.get("locationname") or ""
        if location:
            targets = [prefix + location, prefix]
        else:
            targets = [t for t in self._listeners if t.startswith(prefix)]
        woken = False
        for t in targets:
            group = self._listeners.get(t)
            if not group:
                continue
            for listener in group.values():
                if listener.process_id and listener.process_id == process["processid"]:
                    listener.offer(process)
            general = sorted(lid for lid, listener in group.items() if not listener.process_id)
            if self.broadcast:
                for lid in general:
                    group[lid].offer(process)
                continue
            if woken or not general:
                continue
            start = self._next.get(t, 0) % len(general)
            for i in range(len(general)):
                if group[general[(start + i) % len(general)]].offer(process):
                    self._next[t] = (start + i + 1) % len(general)
                    woken = True
                    break

"""In-memory fakes of the runtime's two peers, for unit tests without a network.

- `colonies`: `FakeColoniesServer` (the v1.9.12 server's semantics) and `FakeConnection`,
  whose `.client(key)` is the real `ColoniesClient` talking to it.
- `kube`: `FakeKube`, the `KubeApi` surface over an in-memory apiserver, with a Job
  controller and TTL controller (`jobcontroller`) and a kubelet (`kubelet`) that tests drive.

Both fakes are plain asyncio (no threads) and take a clock, so a test decides when time
passes: `ManualClock` here, or the wall clock by default. Waits that the real peers bound
by seconds (assign long polls, subscriptions, watches, log reads) also have "end now"
knobs, so no test has to sleep.

This module holds what both fakes share: the manual clock and the fault-injection book.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter


class ManualClock:
    """Wall-clock seconds that move only when a test says so."""

    def __init__(self, start: float | None = None) -> None:
        self.now = time.time() if start is None else start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Faults:
    """Calls per method, and errors a test queued for the next calls of a method.

    Method names are the fake's own public names (`"assign"`, `"create_job"`); the
    Colonies fake also accepts the wire msgtype (`"assignprocessmsg"`).
    """

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self._queued: dict[str, list[BaseException]] = {}

    def fail_next(self, method: str, exc: BaseException, times: int = 1) -> None:
        self._queued.setdefault(method, []).extend([exc] * times)

    def enter(self, *names: str) -> None:
        """Count a call of the first name and raise what was queued under any of the names."""
        self.calls[names[0]] += 1
        for name in names:
            queued = self._queued.get(name)
            if queued:
                raise queued.pop(0)


async def first_of(wake: asyncio.Event, stop: asyncio.Event, deadline: float | None) -> bool:
    """Wait until `wake` is set (True), or `stop` is set or the loop time passes `deadline`
    (False): how the fakes' long polls and streams wait for news, an end, or their timeout."""
    waiters = [asyncio.ensure_future(wake.wait()), asyncio.ensure_future(stop.wait())]
    remaining = None if deadline is None else max(0.0, deadline - asyncio.get_running_loop().time())
    try:
        await asyncio.wait(waiters, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
    return wake.is_set() and not stop.is_set()

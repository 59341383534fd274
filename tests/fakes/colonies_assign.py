"""The fake server's assign long poll and `/pubsub` subscriptions (a mixin of FakeColoniesServer).

Assign follows `HandleAssignProcess` and `DistributedAssign` of v1.9.12:
membership (403), timeout 0 (400), the caller must be an executor, capacity parsed (400 on
a bad quantity), then a loop: mark the executor alive (the ONLY heartbeat, also while
paused or when nothing fits), answer 408/503 while the colony is paused, select and
assign one process, or wait for a WAITING event and try again until the timeout (404).

A subscription registers a general listener (see colonies_events.py) and yields what
reaches it until its timeout, `expire_waits()` or `set_subscriptions_down(True)`; the
real client sees the socket close and its iterator end without an error.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from colonies_operator.colonies import errors

from tests.fakes import colonies_quirks as go
from tests.fakes.colonies_records import RUNNING, WAITING, FakeExecutor, FakeProcess, Reply

if TYPE_CHECKING:
    from tests.fakes.colonies import FakeColoniesServer

MAX_SHAPE = 127  # nodes, processes and processespernode must not exceed this (math.MaxInt8)


class AssignHandlers:
    def __init__(self, server: FakeColoniesServer) -> None:
        self.server = server

    async def on_assignprocessmsg(self, caller: str, msg: dict[str, Any]) -> Any:
        colony, timeout = msg.get("colonyname", ""), msg.get("timeout", 0)
        self.server.require_member(caller, colony)
        if timeout == 0:
            raise Reply(400, "Invalid timeout value, timeout cannot be zero")
        ex = self.server.executor_by_id(caller)
        if ex is None:
            raise Reply(500, "Failed to assign process, executor not found")
        try:  # a missing or empty capacity means unlimited
            cpu = go.cpu_millis(msg["availablecpu"]) if msg.get("availablecpu") else go.MAX_INT64
            mem = go.memory_bytes(msg["availablemem"]) if msg.get("availablemem") else go.MAX_INT64
        except go.QuantityError as exc:
            raise Reply(400, str(exc)) from None
        deadline = self.server.deadline(timeout) if timeout > 0 else None
        while True:
            ex.lastheard_ns = self.server.now_ns()
            resumed = self.server.paused.get(colony)
            if resumed is not None:
                if deadline is None:
                    raise Reply(503, "No processes available: colony assignments are paused")
                if await self.server.wait(resumed, deadline):
                    continue
                raise Reply(408, "Assignment timeout: colony assignments are paused")
            process = self.select_and_assign(ex, colony, cpu, mem)
            if process is not None:
                return self.server.render(process)
            if deadline is None:
                break
            listener = self.server.events.register(ex.type, WAITING, ex.location)
            try:
                if not await self.server.wait(listener.wake, deadline):
                    break
            finally:
                self.server.events.unregister(listener)
        raise Reply(404, "No process available for assignment")

    def select_and_assign(self, ex: FakeExecutor, colony: str, cpu: int,
                          mem: int) -> FakeProcess | None:
        """SelectAndAssign's WHERE clause and ORDER BY prioritytime, on the records."""
        storage_limit = 0 if self.server.exclusive_assign else go.MAX_INT64

        def fits(p: FakeProcess) -> bool:
            c = p.spec["conditions"]
            names = c["executornames"] or []
            return (p.state == WAITING and not p.isassigned and p.colony == colony and p.executor_type == ex.type
                    and (not names or ex.name in names) and p.cpu <= cpu and p.mem <= mem
                    and p.storage <= storage_limit
                    and max(c["nodes"], c["processes"], c["processespernode"]) <= MAX_SHAPE
                    and (not p.location or p.location.lower() == ex.location.lower()))

        candidates = [p for p in self.server.processes.values() if fits(p)]
        if not candidates:
            return None
        p = min(candidates, key=lambda p: p.prioritytime)
        now = self.server.now_ns()
        p.isassigned, p.assigned, p.state, p.start_ns = True, ex.id, RUNNING, now
        if p.spec["maxexectime"] > 0:
            p.execdeadline_ns = now + p.spec["maxexectime"] * 1_000_000_000
        return p

    async def subscribe(self, msgtype: str, msg: dict[str, Any],
                        caller: str) -> AsyncIterator[dict[str, Any]]:
        """Process JSON events of `subscribeprocessesmsg` / `subscribeprocessmsg` until the timeout."""
        method = "subscribe_processes" if msgtype == "subscribeprocessesmsg" else "subscribe_process"
        self.server.faults.enter(method, msgtype)
        if self.server.subscriptions_down:
            raise errors.ColoniesUnreachable("ws://colonies.fake/pubsub", 1, 0.0, "connection refused")
        state, kind = int(msg.get("state", 0)), str(msg.get("executortype", ""))
        process_id, first = "", None
        if msgtype == "subscribeprocessesmsg":
            if self.server.executor_by_id(caller) is None:  # only executors, but of any colony or state
                raise errors.error_for(400, "executor not found", msgtype)  # as the real client reads an error frame
        else:
            target = self.server.processes.get(str(msg.get("processid", "")))
            if target is None:
                raise errors.error_for(400, f"Invalid process with Id {msg.get('processid', '')}", msgtype)
            process_id, kind = target.id, kind or target.executor_type
            first = self.server.render(target) if target.state == state else None
        listener = self.server.events.register(kind, state, "", process_id)
        deadline = self.server.deadline(float(msg.get("timeout", 0)))
        try:
            if first is not None:
                yield first
            while True:
                event = listener.take()
                if event is not None:
                    yield event
                elif not await self.server.wait(listener.wake, deadline):
                    return
        finally:
            self.server.events.unregister(listener)

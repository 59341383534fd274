"""An in-memory Colonies server with the v1.9.12 semantics the operator depends on.

`FakeColoniesServer.rpc(msgtype, json_text, caller_id)` answers one request as the real
`POST /api` handler does: the same checks in the same order, the same texts and HTTP
statuses (raised as the real client's error types, `errors.error_for`), and replies built
as the server's JSON. `FakeConnection` (colonies_client.py) feeds it from the real
`ColoniesClient`, so what a test gets back is parsed by the same code as in production.

Records: colonies (name → owner id), users, executors keyed by (colony, name), functions,
processes and logs. Processes are rendered from their record the way the server renders
them from its table (normalised cpu/mem, unknown spec keys gone, env from attributes).

Test knobs (not RPCs): `add_colony`, `add_user`, `add_executor` (set up without signing),
`unassign` / `sweep_timeouts` (maxexectime and maxwaittime passing), `cleanup_stale_executors`,
`pause_assignments` / `resume_assignments`, `expire_waits` (every long poll and subscription
ends now, as if its timeout passed), `set_subscriptions_down`, `fail_next`,
`lose_next_assign_reply`, `lose_next_reply`, `calls`, `lastheard`, `process`.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any

from colonies_operator.colonies import errors
from colonies_operator.colonies.crypto import Key
from colonies_operator.colonies.models import ExecutorState

from tests.fakes import Faults, first_of
from tests.fakes import colonies_quirks as go
from tests.fakes.colonies_assign import AssignHandlers
from tests.fakes.colonies_client import FakeColoniesClient, FakeConnection
from tests.fakes.colonies_events import EventHub
from tests.fakes.colonies_files import SnapshotHandlers
from tests.fakes.colonies_executors import ExecutorHandlers
from tests.fakes.colonies_processes import ProcessHandlers
from tests.fakes.colonies_records import CANCELLED, FAILED, RUNNING, SUCCESS, WAITING, FakeExecutor, FakeProcess, Reply

__all__ = ["FakeColoniesServer", "FakeConnection", "FakeColoniesClient", "Reply"]

STALE_SECONDS = 600   # COLONIES_STALE_EXECUTOR_DURATION's default

# client method name of each msgtype: counters and fail_next speak the test writer's names
METHODS = {
    "addcolonymsg": "add_colony", "addusermsg": "add_user", "addexecutormsg": "add_executor",
    "approveexecutormsg": "approve_executor", "rejectexecutormsg": "reject_executor",
    "removeexecutormsg": "remove_executor", "getexecutormsg": "get_executor", "getexecutorsmsg": "get_executors",
    "updateexecutormsg": "update_executor", "addfunctionmsg": "add_function", "getfunctionsmsg": "get_functions",
    "submitfuncspecmsg": "submit", "assignprocessmsg": "assign", "closesuccessfulmsg": "close_successful",
    "closefailedmsg": "close_failed", "setoutputmsg": "set_output", "addlogmsg": "add_log",
    "getlogsmsg": "get_logs", "getprocessmsg": "get_process", "getprocessesmsg": "get_processes",
    "cancelprocessmsg": "cancel", "pauseassignmentsmsg": "pause_assignments",
    "resumeassignmentsmsg": "resume_assignments", "subscribeprocessesmsg": "subscribe_processes",
    "subscribeprocessmsg": "subscribe_process", "getserverinfomsg": "server_info",
    "getsnapshotmsg": "snapshot", "removesnapshotmsg": "remove_snapshot",
}
# "Failed to <what>, invalid JSON" where the handler's words differ from the method name
_INVALID = {"submitfuncspecmsg": "submit process", "assignprocessmsg": "assign process", "getlogsmsg": "get logs",
            "getprocessesmsg": "get processes", "cancelprocessmsg": "cancel process", "getfunctionsmsg": "get function"}


def _id(who: Key | str) -> str:
    return who.id if isinstance(who, Key) else who


class FakeColoniesServer:
    """The server's state, knobs and request dispatch. The handlers are grouped by topic:
    colonies_processes.py, colonies_executors.py, colonies_assign.py (assign, subscriptions)."""

    def __init__(
        self, *, clock: Callable[[], float] = time.time, utc_offset_minutes: int = 60,
        allow_reregister: bool = False, exclusive_assign: bool = False, broadcast_events: bool = False,
        timeout_scale: float = 1.0, server_id: str = "",
        refuse_log: Callable[[str], bool] = lambda message: "\x00" in message,
    ) -> None:
        self.clock = clock
        self.time = go.ServerTime(utc_offset_minutes)
        self.allow_reregister = allow_reregister  # COLONIES_ALLOW_EXECUTOR_REREGISTER
        self.exclusive_assign = exclusive_assign  # COLONIES_EXCLUSIVE_ASSIGN: storage must be 0, "*" is no wildcard
        self.timeout_scale = timeout_scale        # server-side waits last timeout × this many seconds
        self.server_id = server_id
        self.refuse_log = refuse_log              # PostgreSQL refuses NUL in text columns
        self.events = EventHub(broadcast=broadcast_events)
        self.faults = Faults()
        self.colonies: dict[str, str] = {}                      # name → owner (colony) id
        self.users: dict[tuple[str, str], str] = {}             # (colony, id) → name
        self.executors: dict[tuple[str, str], FakeExecutor] = {}
        self.functions: list[dict[str, Any]] = []
        self.processes: dict[str, FakeProcess] = {}
        self.logs: list[dict[str, Any]] = []
        self.paused: dict[str, asyncio.Event] = {}             # colony → set on resume
        self._expiry = asyncio.Event()
        self.subscriptions_down = False
        self._lose_assign_replies = 0
        self._lost_replies: Counter[str] = Counter()  # client method → replies still to lose
        self.env_lands_late = False                            # submits store env only at land_env()
        self.late_env: dict[str, dict[str, str]] = {}          # process id → env not stored yet
        self._last_ns = 0
        self._assign = AssignHandlers(self)
        self.files = SnapshotHandlers(self)
        self._handlers = (ProcessHandlers(self), ExecutorHandlers(self), self._assign, self.files)

    # --- knobs -----------------------------------------------------------------------------

    @property
    def calls(self) -> Counter[str]:
        """Calls per client method name ("assign", "add_log", ...), refused ones included."""
        return self.faults.calls

    def fail_next(self, method: str, exc: BaseException, times: int = 1) -> None:
        """The next call(s) of `method` (client name or msgtype) raise `exc` unprocessed."""
        self.faults.fail_next(METHODS.get(method, method), exc, times)

    def lose_next_assign_reply(self) -> None:
        """The next assign is processed (a process may be assigned) but its reply is lost."""
        self._lose_assign_replies += 1

    def lose_next_reply(self, method: str) -> None:
        """The next call of `method` is processed, then fails as a request whose answer never
        came (a read timeout): the client cannot tell whether it was done."""
        self._lost_replies[METHODS.get(method, method)] += 1

    def land_env(self) -> None:
        """Store the env of every process submitted while `env_lands_late` was set.

        v1.9.12 stores a submission in two statements, the process row and then its env as
        attributes (postgresql/processes.go AddProcess): an assign that runs in between hands
        the process over with no env. `env_lands_late` holds that gap open."""
        for pid, env in self.late_env.items():
            self.processes[pid].spec["env"] = env
        self.late_env.clear()

    def expire_waits(self) -> None:
        """Every assign long poll and subscription open now ends as if its timeout passed."""
        self._expiry.set()
        self._expiry = asyncio.Event()

    def set_subscriptions_down(self, down: bool) -> None:
        """While down, subscribing fails (connection refused); open subscriptions end now."""
        self.subscriptions_down = down
        if down:
            self.expire_waits()

    def add_colony(self, name: str, owner: Key | str) -> None:
        self.colonies[name] = _id(owner)

    def add_user(self, colony: str, user: Key | str, name: str) -> None:
        self.users[(colony, _id(user))] = name

    def add_executor(self, colony: str, executor: Key | str, name: str, executor_type: str, *,
                     location: str = "", approved: bool = True) -> FakeExecutor:
        record = FakeExecutor(_id(executor), name, executor_type, colony, location=location,
                              state=ExecutorState.APPROVED if approved else ExecutorState.PENDING,
                              commission_ns=self.now_ns())
        self.executors[(colony, name)] = record
        return record

    def pause_assignments(self, colony: str) -> None:
        self.paused.setdefault(colony, asyncio.Event())

    def resume_assignments(self, colony: str) -> None:
        resumed = self.paused.pop(colony, None)
        if resumed is not None:
            resumed.set()

    def process(self, process_id: str) -> FakeProcess:
        return self.processes[process_id]

    def lastheard(self, executor_name: str, colony: str | None = None) -> int:
        """The executor's lastheardfromtime in Unix ns (0: never); only assign moves it."""
        return self._executor_named(executor_name, colony).lastheard_ns

    def unassign(self, process_id: str) -> None:
        """What the server does when a RUNNING process's maxexectime passed (TimeoutLoop):
        fail it at maxretries, else back to WAITING with retries+1 and a WAITING event.
        The event carries the process as the server held it in memory: retries NOT yet
        incremented and assignedexecutorid still set (the UPDATE only changed the table)."""
        p = self.processes[process_id]
        if p.state != RUNNING:
            raise ValueError(f"process {process_id[:12]} is not RUNNING")
        spec = p.spec
        if p.retries >= spec["maxretries"] and spec["maxretries"] > -1:
            self.mark_failed(p, ["Maximum execution time limit exceeded"])
            return
        now = self.now_ns()
        p.isassigned, p.state, p.end_ns = False, WAITING, now
        snapshot = self.render(p)
        p.retries += 1
        p.assigned = ""
        if spec["maxwaittime"] > 0:
            p.waitdeadline_ns = now + spec["maxwaittime"] * 1_000_000_000
        self.events.signal(snapshot)

    def sweep_timeouts(self) -> None:
        """One pass of the server's TimeoutLoop against the clock (whole seconds, as Go compares)."""
        now = int(self.clock())
        for p in [p for p in self.processes.values() if p.state == RUNNING]:
            if p.spec["maxexectime"] != -1 and now > p.execdeadline_ns // 1_000_000_000:
                self.unassign(p.id)
        for p in [p for p in self.processes.values() if p.state == WAITING]:
            if p.spec["maxwaittime"] not in (-1, 0) and now > p.waitdeadline_ns // 1_000_000_000:
                self.mark_failed(p, ["Maximum waiting time limit exceeded"])

    def cleanup_stale_executors(self, stale_seconds: float = STALE_SECONDS) -> None:
        """The leader's cleanup: executors silent for longer than `stale_seconds` are removed."""
        for ex in list(self.executors.values()):
            if ex.lastheard_ns and self.clock() - ex.lastheard_ns / 1e9 > stale_seconds:
                self.remove_executor_row(ex)

    def remove_executor_row(self, ex: FakeExecutor) -> None:
        """RemoveExecutorByName: the row stays, UNREGISTERED; its functions go; every process
        RUNNING on it returns to the queue by a bare UPDATE: retries unchanged, start time
        cleared, and no event (so no waiting assign is woken for it)."""
        ex.state = ExecutorState.UNREGISTERED
        self.functions = [f for f in self.functions
                          if (f["colonyname"], f["executorname"]) != (ex.colony, ex.name)]
        for p in self.processes.values():
            if p.assigned == ex.id and p.state == RUNNING:
                p.isassigned, p.start_ns, p.end_ns, p.assigned, p.state = False, 0, 0, "", WAITING

    def end(self, p: FakeProcess, state: int, refusals: dict[int, str], errs: list[str] | None = None) -> None:
        """Move a process to a final state, unless its current state is refused (400); the
        controller then signals the process as it now is."""
        refusal = refusals.get(p.state)
        if refusal:
            raise Reply(400, refusal)
        p.state, p.end_ns = state, self.now_ns()
        if errs is not None:
            p.errors = errs
        self.events.signal(self.render(p))

    def mark_failed(self, p: FakeProcess, errs: list[str]) -> None:
        self.end(p, FAILED, {SUCCESS: "Tried to set successful process as failed",
                             FAILED: "Tried to set failed process as failed",
                             CANCELLED: "Tried to set cancelled process as failed"}, errs)

    # --- plumbing ---------------------------------------------------------------------------

    def now_ns(self) -> int:
        """Server time in Unix ns, strictly increasing by at least 1 µs per reading, so start
        times and log timestamps order even under a clock that does not move."""
        self._last_ns = max(int(self.clock() * 1e9), self._last_ns + 1000)
        return self._last_ns

    def render(self, p: FakeProcess) -> dict[str, Any]:
        return p.to_json(self.time.format)

    async def rpc(self, msgtype: str, text: str, caller: str) -> Any:
        """One `POST /api` request: the decoded reply payload, or the client's typed error.
        Like a network round trip it lets other tasks run first."""
        await asyncio.sleep(0)
        method = METHODS.get(msgtype, msgtype)
        self.faults.enter(method, msgtype)
        handler = next((h for g in self._handlers if (h := getattr(g, f"on_{msgtype}", None))), None)
        try:
            if handler is None:
                raise Reply(403, f"invalid rpcMsg.PayloadType: {msgtype}")
            try:
                message = go.decode(text)
            except ValueError:
                what = _INVALID.get(msgtype, method.replace("_", " "))
                raise Reply(400, f"Failed to {what}, invalid JSON") from None
            result = handler(caller, message)
            if asyncio.iscoroutine(result):
                result = await result
        except Reply as reply:
            result = reply
        if msgtype == "assignprocessmsg" and self._lose_assign_replies:
            self._lose_assign_replies -= 1
            raise errors.ColoniesUnreachable("http://colonies.fake", 1, 0.0, "the reply was lost")
        if self._lost_replies[method]:
            self._lost_replies[method] -= 1
            raise errors.ColoniesUnreachable("http://colonies.fake", 1, 30.0, "ReadTimeout", maybe_delivered=True)
        if isinstance(result, Reply):
            raise errors.error_for(result.status, result.message, msgtype)
        return go.decode(json.dumps(result))

    async def wait(self, wake: asyncio.Event, deadline: float | None) -> bool:
        """Until `wake` is set (True) or the deadline (loop time) or expire_waits() (False)."""
        return await first_of(wake, self._expiry, deadline)

    def deadline(self, timeout: float) -> float:
        return asyncio.get_running_loop().time() + timeout * self.timeout_scale

    # --- authorisation (pkg/security/validator) ------------------------------------------------

    def executor_by_id(self, executor_id: str) -> FakeExecutor | None:
        return next((e for e in self.executors.values() if e.id == executor_id), None)

    def _executor_named(self, name: str, colony: str | None = None) -> FakeExecutor:
        found = [e for (c, n), e in self.executors.items() if n == name and colony in (None, c)]
        if len(found) != 1:
            raise KeyError(f"{len(found)} executors named {name!r}")
        return found[0]

    def require_member(self, caller: str, colony: str, approved: bool = True) -> None:
        if colony not in self.colonies:
            raise Reply(403, f"Colony with name <{colony}> does not exists")
        ex = self.executor_by_id(caller)
        if ex is not None and ex.colony == colony and (not approved or ex.state is ExecutorState.APPROVED):
            return
        if (colony, caller) not in self.users:
            raise Reply(403, f"Access denied, not a member of Colony with name <{colony}>")

    def require_owner(self, caller: str, colony: str) -> None:
        if colony not in self.colonies:
            raise Reply(403, f"Colony with name <{colony}> does not exists")
        if self.colonies[colony] != caller:
            raise Reply(403, "Access denied, not colony owner")

    def subscribe(self, msgtype: str, msg: dict[str, Any], caller: str) -> AsyncIterator[dict[str, Any]]:
        """A `/pubsub` subscription: process JSON events until it ends (colonies_assign.py)."""
        return self._assign.subscribe(msgtype, msg, caller)

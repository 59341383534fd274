"""The fake server's process handlers: submit, get, list, cancel, close, output and logs,
following `pkg/server/handlers/process` and `log` of v1.9.12 (checks in the server's order:
the process, membership, assignment, then state)."""

from __future__ import annotations

import hashlib
import uuid
from typing import TYPE_CHECKING, Any

from tests.fakes import colonies_quirks as go
from tests.fakes.colonies_records import (
    CANCELLED,
    FAILED,
    RUNNING,
    SUCCESS,
    WAITING,
    FakeProcess,
    Reply,
    normalised_spec,
)

if TYPE_CHECKING:
    from tests.fakes.colonies import FakeColoniesServer

MAX_COUNT = 100       # getprocessesmsg
MAX_LOG_COUNT = 500   # getlogsmsg
NUL_REFUSED = 'pq: invalid byte sequence for encoding "UTF8": 0x00'


class ProcessHandlers:
    def __init__(self, server: FakeColoniesServer) -> None:
        self.server = server

    def on_submitfuncspecmsg(self, caller: str, msg: dict[str, Any]) -> Any:
        spec = msg.get("spec")
        if spec is None:
            raise Reply(400, "Failed to submit process spec, msg.FunctionSpec is nil")
        try:
            normal, amounts = normalised_spec(spec)
        except TypeError:
            raise Reply(400, "Failed to submit process, invalid JSON") from None
        colony = normal["conditions"]["colonyname"]
        self.server.require_member(caller, colony)
        if not -50000 <= normal["priority"] <= 50000:
            raise Reply(400, "Failed to submit function spec, priority outside range [-50000, 50000]")
        try:
            cpu = go.cpu_millis(amounts["cpu"])
            mem, storage, gpu_mem = (go.memory_bytes(amounts[k]) for k in ("mem", "storage", "gpumem"))
        except go.QuantityError as exc:
            raise Reply(400, str(exc)) from None
        ex = self.server.executor_by_id(caller)
        now = self.server.now_ns()
        p = FakeProcess(
            id=hashlib.sha3_256(str(uuid.uuid4()).encode()).hexdigest(), spec=normal, cpu=cpu, mem=mem,
            storage=storage, gpu_mem=gpu_mem, initiator_id=caller,
            initiator_name=ex.name if ex is not None else self.server.users.get((colony, caller), ""),
            submission_ns=now, prioritytime=now - normal["priority"] * 86_400_000_000_000)
        if normal["maxwaittime"] > 0:
            p.waitdeadline_ns = now + normal["maxwaittime"] * 1_000_000_000
        self.server.processes[p.id] = p
        if self.server.env_lands_late and normal["env"]:
            self.server.late_env[p.id], p.spec["env"] = p.spec["env"], {}
        rendered = self.server.render(p)
        self.server.events.signal(rendered)
        return rendered

    def _process(self, msg: dict[str, Any], what: str) -> FakeProcess:
        p = self.server.processes.get(msg.get("processid", ""))
        if p is None:
            raise Reply(500, f"Failed to {what}, process is nil")
        return p

    def on_getprocessmsg(self, caller: str, msg: dict[str, Any]) -> Any:
        p = self.server.processes.get(msg.get("processid", ""))
        if p is None:
            raise Reply(404, "Failed to get process, process not found")
        self.server.require_member(caller, p.colony)
        return self.server.render(p)

    def on_getprocessesmsg(self, caller: str, msg: dict[str, Any]) -> Any:
        colony, state, count = msg.get("colonyname", ""), msg.get("state", 0), msg.get("count", 0)
        self.server.require_member(caller, colony)
        if count > MAX_COUNT:
            raise Reply(400, f"Count is larger than MaxCount limit <{MAX_COUNT}>")
        initiator, label, kind = msg.get("initiator", ""), msg.get("label", ""), msg.get("executortype", "")
        if initiator and initiator not in [n for (c, _), n in self.server.users.items() if c == colony]:
            raise Reply(400, f"User <{initiator}> does not exist")
        if state not in (WAITING, RUNNING, SUCCESS, FAILED, CANCELLED):
            raise Reply(400, "Failed to get processes, invalid msg.State")
        found = [p for p in self.server.processes.values() if p.colony == colony and p.state == state]
        if kind:  # the server filters by one of these, in this order of precedence
            found = [p for p in found if p.executor_type == kind]
        elif initiator:
            found = [p for p in found if p.initiator_name == initiator]
        elif label:
            found = [p for p in found if p.spec["label"] == label]
        if state == WAITING:
            found.sort(key=lambda p: p.prioritytime)
        elif state == RUNNING:
            found.sort(key=lambda p: p.start_ns)
        else:
            found.sort(key=lambda p: -p.end_ns)
        return [self.server.render(p) for p in found[:count]] or None

    def on_cancelprocessmsg(self, caller: str, msg: dict[str, Any]) -> Any:
        p = self._process(msg, "cancel process")
        self.server.require_member(caller, p.colony)
        # the executor stays assigned: its later calls get 400 (close) or 403 (logs, output)
        self.server.end(p, CANCELLED, {SUCCESS: "Tried to cancel successful process",
                                       FAILED: "Tried to cancel failed process",
                                       CANCELLED: "Tried to cancel already cancelled process"})
        return {}

    def _assigned_to_caller(self, caller: str, p: FakeProcess, verb: str) -> None:
        """The close handlers' checks after membership."""
        self.server.require_member(caller, p.colony)
        if not p.assigned:
            raise Reply(403, f"Failed to close process as {verb}, process is not assigned")
        if p.assigned != caller:
            raise Reply(403, f"Failed to close process as {verb}, not allowed to close process as {verb}")

    def on_closesuccessfulmsg(self, caller: str, msg: dict[str, Any]) -> Any:
        p = self._process(msg, "close process as successful")
        self._assigned_to_caller(caller, p, "successful")
        if msg.get("out"):
            p.out = list(msg["out"])  # CloseSuccessful stores the output before MarkSuccessful checks
        # SUCCESS again is fine: MarkSuccessful has no guard against it
        self.server.end(p, SUCCESS, {FAILED: "Tried to set failed process as successful",
                                     CANCELLED: "Tried to set cancelled process as successful",
                                     WAITING: "Tried to set waiting process as successful without being running"})
        return {}

    def on_closefailedmsg(self, caller: str, msg: dict[str, Any]) -> Any:
        p = self._process(msg, "close process as failed")
        self._assigned_to_caller(caller, p, "failed")
        self.server.mark_failed(p, [str(e) for e in msg.get("errors") or []])
        return {}

    def on_setoutputmsg(self, caller: str, msg: dict[str, Any]) -> Any:
        p = self._process(msg, "set output")
        self.server.require_member(caller, p.colony)
        if p.assigned != caller:
            raise Reply(403, "Failed to close process as successful, not allowed to close process as successful")
        if p.state != RUNNING:
            raise Reply(403, "Failed to set output, process is not running")
        if msg.get("out"):
            p.out = list(msg["out"])
        return {}

    def on_addlogmsg(self, caller: str, msg: dict[str, Any]) -> Any:
        p = self._process(msg, "add log")
        self.server.require_member(caller, p.colony)
        ex = self.server.executor_by_id(caller)
        if p.state != RUNNING:
            raise Reply(403, "Failed to set output, process is not running")  # sic: the server reuses this text
        if p.assigned != caller or ex is None:
            raise Reply(403, "Failed to add log, not allowed to add log, only the assigned Executor may att logs")
        message = str(msg.get("message", ""))
        if self.server.refuse_log(message):
            raise Reply(400, NUL_REFUSED)
        self.server.logs.append({"processid": p.id, "colonyname": p.colony, "executorname": ex.name,
                          "message": message, "timestamp": self.server.now_ns()})
        return {}

    def on_getlogsmsg(self, caller: str, msg: dict[str, Any]) -> Any:
        name, pid = msg.get("executorname", ""), msg.get("processid", "")
        if name:
            ex = self.server.executors.get((msg.get("colonyname", ""), name))
            if ex is None:
                raise Reply(500, "Failed to get logs, executor does not exist")
            self.server.require_member(caller, ex.colony)
            entries = [e for e in self.server.logs if e["executorname"] == name]
        else:
            p = self.server.processes.get(pid)
            if p is None:
                raise Reply(500, "Failed to get logs, process does not exist")
            self.server.require_member(caller, p.colony)
            entries = [e for e in self.server.logs if e["processid"] == pid]
        count, since = msg.get("count", 0), msg.get("since", 0)
        if count > MAX_LOG_COUNT:
            raise Reply(403, f"Count exceeds max log count ({MAX_LOG_COUNT})")
        if msg.get("latest"):
            return entries[max(len(entries) - count, 0):] if count > 0 else None
        return [e for e in entries if e["timestamp"] > since][:count] or None

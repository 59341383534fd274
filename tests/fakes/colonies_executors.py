"""The fake server's handlers for colonies, users, executors, functions and pausing
(a mixin of FakeColoniesServer), following `pkg/server/handlers/executor` and `function`.

Removal keeps the executor's row, UNREGISTERED (it stays listed by getexecutormsg), and a
name that exists in any state cannot be added again unless the server allows reregistering.
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Any

from colonies_operator.colonies.models import ExecutorState

from tests.fakes import colonies_quirks as go
from tests.fakes.colonies_records import FakeExecutor, Reply

if TYPE_CHECKING:
    from tests.fakes.colonies import FakeColoniesServer

class ExecutorHandlers:
    def __init__(self, server: FakeColoniesServer) -> None:
        self.server = server

    def on_addcolonymsg(self, caller: str, msg: dict[str, Any]) -> Any:
        if caller != self.server.server_id:
            raise Reply(403, "Access denied, not server owner")
        colony = msg.get("colony") or {}
        self.server.colonies[colony.get("name", "")] = colony.get("colonyid", "")
        return colony

    def on_addusermsg(self, caller: str, msg: dict[str, Any]) -> Any:
        user = msg.get("user") or {}
        self.server.require_owner(caller, user.get("colonyname", ""))
        self.server.users[(user.get("colonyname", ""), user.get("userid", ""))] = user.get("name", "")
        return user

    def on_addexecutormsg(self, caller: str, msg: dict[str, Any]) -> Any:
        sent = msg.get("executor")
        if not isinstance(sent, dict):
            raise Reply(400, "Failed to add executor, executor is nil")
        colony, name = sent.get("colonyname", ""), sent.get("executorname", "")
        self.server.require_owner(caller, colony)
        old = self.server.executors.get((colony, name))
        if old is not None:
            if not self.server.allow_reregister:
                raise Reply(400, f"Executor with name <{name}> in Colony <{colony}> already exists")
            self.server.remove_executor_row(old)  # and then AddExecutor reactivates the UNREGISTERED row
        elif self.server.executor_by_id(sent.get("executorid", "")) is not None:
            raise Reply(400, "Executor not unique, both Name and ExecutorId must be unique within a Colony")
        capabilities = sent.get("capabilities") or {}
        record = FakeExecutor(
            sent.get("executorid", ""), name, sent.get("executortype", ""), colony,
            location=sent.get("locationname") or "", commission_ns=self.server.now_ns(),
            lastheard_ns=go.ServerTime.parse(sent.get("lastheardfromtime")),
            capabilities={"hardware": capabilities.get("hardware"), "software": capabilities.get("software")},
            allocations=sent.get("allocations") or {"projects": None},
            requirefuncreg=bool(sent.get("requirefuncreg")))
        self.server.executors[(colony, name)] = record  # the server forces state PENDING
        return record.to_json(self.server.time.format)

    def _approve(self, caller: str, msg: dict[str, Any], verb: str, state: ExecutorState) -> Any:
        ex = self.server.executors.get((msg.get("colonyname", ""), msg.get("executorname", "")))
        if ex is None:
            raise Reply(500, f"Failed to {verb} executor, executor is nil")
        self.server.require_owner(caller, ex.colony)
        ex.state = state
        return {}

    def on_approveexecutormsg(self, caller: str, msg: dict[str, Any]) -> Any:
        return self._approve(caller, msg, "approve", ExecutorState.APPROVED)

    def on_rejectexecutormsg(self, caller: str, msg: dict[str, Any]) -> Any:
        return self._approve(caller, msg, "reject", ExecutorState.REJECTED)

    def on_removeexecutormsg(self, caller: str, msg: dict[str, Any]) -> Any:
        ex = self.server.executors.get((msg.get("colonyname", ""), msg.get("executorname", "")))
        if ex is None:
            raise Reply(500, "Failed to remove executor, executor is nil")
        self.server.require_owner(caller, ex.colony)
        self.server.remove_executor_row(ex)
        return {}

    def on_getexecutormsg(self, caller: str, msg: dict[str, Any]) -> Any:
        ex = self.server.executors.get((msg.get("colonyname", ""), msg.get("executorname", "")))
        if ex is None:
            raise Reply(500, "Failed to get executor, executor is nil")
        self.server.require_member(caller, ex.colony)
        return ex.to_json(self.server.time.format)

    def on_getexecutorsmsg(self, caller: str, msg: dict[str, Any]) -> Any:
        colony = msg.get("colonyname", "")
        self.server.require_member(caller, colony, approved=False)
        found = [e.to_json(self.server.time.format) for (c, _), e in self.server.executors.items() if c == colony]
        return found or None  # Go marshals an empty slice from the DB as null

    def on_updateexecutormsg(self, caller: str, msg: dict[str, Any]) -> Any:
        colony, name = msg.get("colonyname", ""), msg.get("executorname", "")
        self.server.require_member(caller, colony, approved=False)
        ex = self.server.executors.get((colony, name))
        if ex is None:
            raise Reply(400, f"Executor with name <{name}> does not exist")
        if ex.id != caller:
            raise Reply(400, "Only an executor can update its own capabilities")
        capabilities = msg.get("capabilities") or {}
        ex.capabilities = {"hardware": capabilities.get("hardware"), "software": capabilities.get("software")}
        return {}

    def on_addfunctionmsg(self, caller: str, msg: dict[str, Any]) -> Any:
        fun = msg.get("fun")
        if not isinstance(fun, dict):
            raise Reply(400, "Failed to add function, msg.Function is nil")
        self.server.require_member(caller, fun.get("colonyname", ""))
        ex = self.server.executors.get((fun.get("colonyname", ""), fun.get("executorname", "")))
        if ex is None:
            name = fun.get("executorname", "")
            raise Reply(400, f"Failed to add function, Executor with name <{name}> does not exist")
        if ex.id != caller:
            raise Reply(403, "Not allowed to add a function to another executor")
        stored = {"functionid": fun.get("functionid") or secrets.token_hex(32), "executorname": ex.name,
                  "executortype": fun.get("executortype", ""), "colonyname": ex.colony,
                  "funcname": fun.get("funcname", ""), "counter": 0, "minwaittime": 0.0, "maxwaittime": 0.0,
                  "minexectime": 0.0, "maxexectime": 0.0, "avgwaittime": 0.0, "avgexectime": 0.0}
        if ex.location:
            stored["locationname"] = ex.location
        self.server.functions.append(stored)
        return stored

    def on_getfunctionsmsg(self, caller: str, msg: dict[str, Any]) -> Any:
        colony, name = msg.get("colonyname", ""), msg.get("executorname", "")
        self.server.require_member(caller, colony)
        found = [f for f in self.server.functions if f["colonyname"] == colony and name in ("", f["executorname"])]
        return found or None

    def on_pauseassignmentsmsg(self, caller: str, msg: dict[str, Any]) -> Any:
        self.server.require_owner(caller, msg.get("colonyname", ""))
        self.server.pause_assignments(msg["colonyname"])
        return {}

    def on_resumeassignmentsmsg(self, caller: str, msg: dict[str, Any]) -> Any:
        self.server.require_owner(caller, msg.get("colonyname", ""))
        self.server.resume_assignments(msg["colonyname"])
        return {}

    def on_getserverinfomsg(self, caller: str, msg: dict[str, Any]) -> Any:
        return {"buildversion": "v1.9.12-fake", "buildtime": "", "backends": [{"type": "http", "port": 50080}]}

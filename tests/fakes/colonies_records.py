"""The fake Colonies server's rows, and how it renders them as the real server's JSON.

A process is stored the way the server stores it (quantities parsed to integers, times in
Unix ns, 0 = Go's zero time) and rendered the way the server renders a table row: the
spec rebuilt from columns, so keys the server does not know are gone, `cpu` reads "<n>m",
memory "<MiB>Mi", `args`/`kwargs`/`env` are never null, `executornames` may be.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from colonies_operator.colonies.models import ExecutorState, ProcessState

from tests.fakes import colonies_quirks as go

Format = Callable[[int], str]  # Unix ns → the server's time text
WAITING, RUNNING, SUCCESS, FAILED, CANCELLED = (int(s) for s in ProcessState)  # as the rows store them


class Reply(Exception):
    """An error answer of a handler: HTTP status and the server's message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status, self.message = status, message


@dataclass
class FakeExecutor:
    id: str
    name: str
    type: str
    colony: str
    state: ExecutorState = ExecutorState.PENDING
    location: str = ""
    commission_ns: int = 0
    lastheard_ns: int = 0
    capabilities: dict[str, Any] = field(default_factory=lambda: {"hardware": None, "software": None})
    allocations: dict[str, Any] = field(default_factory=lambda: {"projects": None})
    requirefuncreg: bool = False

    def to_json(self, fmt: Format) -> dict[str, Any]:
        out: dict[str, Any] = {
            "executorid": self.id, "executortype": self.type, "executorname": self.name,
            "colonyname": self.colony, "state": int(self.state), "requirefuncreg": self.requirefuncreg,
            "commissiontime": fmt(self.commission_ns), "lastheardfromtime": fmt(self.lastheard_ns),
            "capabilities": copy.deepcopy(self.capabilities), "allocations": copy.deepcopy(self.allocations),
        }
        if self.location:
            out["locationname"] = self.location
        return out


@dataclass
class FakeProcess:
    id: str
    spec: dict[str, Any]  # normalised, without the quantities (those are the ints below)
    cpu: int = 0
    mem: int = 0
    storage: int = 0
    gpu_mem: int = 0
    state: int = 0
    isassigned: bool = False
    assigned: str = ""
    retries: int = 0
    prioritytime: int = 0
    submission_ns: int = 0
    start_ns: int = 0
    end_ns: int = 0
    waitdeadline_ns: int = 0
    execdeadline_ns: int = 0
    errors: list[str] = field(default_factory=list)
    out: list[Any] = field(default_factory=list)
    input: list[Any] = field(default_factory=list)  # "in": a workflow child's parents' output
    initiator_id: str = ""
    initiator_name: str = ""

    @property
    def colony(self) -> str:
        return str(self.spec["conditions"]["colonyname"])

    @property
    def executor_type(self) -> str:
        return str(self.spec["conditions"]["executortype"])

    @property
    def location(self) -> str:
        return str(self.spec["conditions"].get("locationname") or "")

    def to_json(self, fmt: Format) -> dict[str, Any]:
        spec = copy.deepcopy(self.spec)
        conditions = spec["conditions"]
        conditions["cpu"] = go.cpu_text(self.cpu)
        conditions["mem"] = go.memory_text(self.mem)
        conditions["storage"] = go.memory_text(self.storage)
        conditions["gpu"]["mem"] = go.memory_text(self.gpu_mem)
        attributes = [{"attributeid": f"{self.id[:32]}{i:032x}", "targetid": self.id, "targetcolonyname": self.colony,
                       "targetprocessgraphid": "", "state": self.state, "attributetype": 3, "key": k, "value": v}
                      for i, (k, v) in enumerate(sorted(spec["env"].items()))]
        return {
            "processid": self.id, "initiatorid": self.initiator_id, "initiatorname": self.initiator_name,
            "assignedexecutorid": self.assigned, "isassigned": self.isassigned, "state": self.state,
            "prioritytime": self.prioritytime, "submissiontime": fmt(self.submission_ns),
            "starttime": fmt(self.start_ns), "endtime": fmt(self.end_ns), "waitdeadline": fmt(self.waitdeadline_ns),
            "execdeadline": fmt(self.execdeadline_ns), "retries": self.retries, "attributes": attributes,
            "spec": spec, "waitforparents": False, "parents": [], "children": [], "processgraphid": "",
            "in": copy.deepcopy(self.input), "out": copy.deepcopy(self.out), "errors": list(self.errors),
        }


# What Go's decoder accepts per field: a wrong type fails the whole message ("invalid JSON").
_STR, _INT, _LIST, _MAP = (str,), (int,), (list, type(None)), (dict, type(None))
_SPEC = {"nodename": _STR, "funcname": _STR, "args": _LIST, "kwargs": _MAP, "priority": _INT,
         "maxwaittime": _INT, "maxexectime": _INT, "maxretries": _INT, "conditions": _MAP, "label": _STR,
         "fs": _MAP, "env": _MAP, "channels": _LIST}
_CONDITIONS = {"colonyname": _STR, "executornames": _LIST, "executortype": _STR, "locationname": _STR,
               "dependencies": _LIST, "nodes": _INT, "cpu": _STR, "processes": _INT, "processespernode": _INT,
               "mem": _STR, "storage": _STR, "gpu": _MAP, "walltime": _INT}
_GPU = {"name": _STR, "mem": _STR, "count": _INT, "nodecount": _INT}


def _checked(obj: Any, schema: Mapping[str, tuple[type, ...]]) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise TypeError("not an object")
    for key, kinds in schema.items():
        value = obj.get(key)
        if key in obj and value is not None and (not isinstance(value, kinds) or isinstance(value, bool)):
            raise TypeError(f"{key}: {type(value).__name__}")
    return obj


def normalised_spec(sent: Any) -> tuple[dict[str, Any], dict[str, str]]:
    """(the spec as the server will echo it, without quantities; the quantity texts to parse)."""
    spec = _checked(sent, _SPEC)
    conditions = _checked(spec.get("conditions") or {}, _CONDITIONS)
    gpu = _checked(conditions.get("gpu") or {}, _GPU)
    env = spec.get("env") or {}
    names = conditions.get("executornames")
    if not all(isinstance(v, str) for v in env.values()) or not all(isinstance(n, str) for n in names or []):
        raise TypeError("env values and executornames must be strings")
    if names == ["*"]:
        names = []  # the row reader turns the wildcard back into an empty list
    fs = spec.get("fs") or {}
    normal_conditions: dict[str, Any] = {
        "colonyname": conditions.get("colonyname", ""), "executornames": names,
        "executortype": conditions.get("executortype", ""), "dependencies": list(conditions.get("dependencies") or []),
        "nodes": conditions.get("nodes", 0), "cpu": "", "processes": conditions.get("processes", 0),
        "processespernode": conditions.get("processespernode", 0), "mem": "", "storage": "",
        "gpu": {"name": gpu.get("name", ""), "mem": "", "count": gpu.get("count", 0), "nodecount": 0},
        "walltime": conditions.get("walltime", 0),
    }
    if conditions.get("locationname"):
        normal_conditions["locationname"] = conditions["locationname"]
    normal = {
        "nodename": spec.get("nodename", ""), "funcname": spec.get("funcname", ""),
        "args": list(spec.get("args") or []), "kwargs": dict(spec.get("kwargs") or {}),
        "priority": spec.get("priority", 0), "maxwaittime": spec.get("maxwaittime", 0),
        "maxexectime": spec.get("maxexectime", 0), "maxretries": spec.get("maxretries", 0),
        "conditions": normal_conditions, "label": spec.get("label", ""),
        "fs": {"mount": fs.get("mount", ""), "snapshots": fs.get("snapshots"), "dirs": fs.get("dirs")},
        "env": dict(env),
    }
    amounts = {"cpu": conditions.get("cpu", ""), "mem": conditions.get("mem", ""),
               "storage": conditions.get("storage", ""), "gpumem": gpu.get("mem", "")}
    return normal, amounts

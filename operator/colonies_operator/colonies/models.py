"""Typed views of the Colonies data model (v1.9.x).

Parsing is tolerant: the server echoes normalised forms ("1Gi" comes back "1024Mi", an
empty cpu comes back "0m", empty lists come back null) and unknown keys are ignored, so
a newer server does not break an older operator. Validation of what a *user* wrote is not
done here: that belongs to the funcspec parser, which reads `FunctionSpec.raw`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import IntEnum
from typing import Any, TypeVar

E = TypeVar("E", bound=IntEnum)


class ProcessState(IntEnum):
    WAITING = 0
    RUNNING = 1
    SUCCESS = 2
    FAILED = 3
    CANCELLED = 4


class ExecutorState(IntEnum):
    PENDING = 0
    APPROVED = 1
    REJECTED = 2
    UNREGISTERED = 3


_CPU = re.compile(r"(\d+)m")
_MEM = re.compile(r"(\d+)(Ki|KiB|Mi|MiB|Gi|GiB|TiB|K|KB|Kb|M|MB|Mb|G|Gb|TB|Tb)?")
_MEM_FACTOR = {
    None: 1, "Ki": 1024, "KiB": 1024, "Mi": 1024**2, "MiB": 1024**2, "Gi": 1024**3, "GiB": 1024**3,
    "TiB": 1024**4, "K": 1000, "KB": 1000, "Kb": 1000, "M": 1000**2, "MB": 1000**2, "Mb": 1000**2,
    "G": 1000**3, "Gb": 1000**3, "TB": 1000**4, "Tb": 1000**4,
}


def server_cpu_millis(value: str | None) -> int:
    """Millicores as the *server* reads them: only "<n>m" counts, anything else is 0."""
    m = _CPU.fullmatch((value or "").strip())
    return int(m.group(1)) if m else 0


def server_mem_bytes(value: str | None) -> int:
    """Bytes as the server reads a memory string ("1024Mi", "1Gi", "" → 0)."""
    text = (value or "").strip()
    if not text:
        return 0
    m = _MEM.fullmatch(text)
    if not m:
        raise ValueError(f"not a Colonies memory quantity: {text!r}")
    return int(m.group(1)) * _MEM_FACTOR[m.group(2)]


def parse_time(value: Any) -> datetime | None:
    """RFC 3339 with up to 9 fractional digits and the server's offset; Go's zero time → None."""
    if not isinstance(value, str) or not value or value.startswith("0001-01-01"):
        return None
    text = re.sub(r"(\.\d{6})\d+", r"\1", value.replace("Z", "+00:00"))
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


def same_instant(a: datetime | None, b: datetime | None) -> bool:
    """Whether two server times are one moment. The assign reply carries the server's clock
    in nanoseconds, the database (every later read) rounds it to microseconds, and parsing
    keeps microseconds: equal within a millisecond is the same assignment."""
    if a is None or b is None:
        return a is b
    return abs((a - b).total_seconds()) < 0.001


def _list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list) else []


def _map(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _enum(kind: type[E], value: Any, default: E) -> E:
    try:
        return kind(_int(value))
    except ValueError:
        return default


def _int(value: Any) -> int:
    """An int field, or 0 for anything the server would not have stored as one."""
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


@dataclass(frozen=True)
class Gpu:
    name: str = ""
    mem: str = ""
    count: int = 0
    nodecount: int = 0

    @classmethod
    def from_json(cls, d: Mapping[str, Any] | None) -> Gpu:
        d = _map(d)
        return cls(name=str(d.get("name") or ""), mem=str(d.get("mem") or ""),
                   count=_int(d.get("count")), nodecount=_int(d.get("nodecount")))

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "mem": self.mem, "count": self.count, "nodecount": self.nodecount}


@dataclass(frozen=True)
class Conditions:
    colonyname: str = ""
    executortype: str = ""
    executornames: tuple[str, ...] = ()
    locationname: str = ""
    dependencies: tuple[str, ...] = ()
    nodes: int = 0
    processes: int = 0
    processespernode: int = 0
    cpu: str = ""
    mem: str = ""
    storage: str = ""
    gpu: Gpu = field(default_factory=Gpu)
    walltime: int = 0

    @property
    def cpu_millis(self) -> int:
        return server_cpu_millis(self.cpu)

    @property
    def mem_bytes(self) -> int:
        return server_mem_bytes(self.mem)

    @classmethod
    def from_json(cls, d: Mapping[str, Any] | None) -> Conditions:
        d = _map(d)
        return cls(
            colonyname=str(d.get("colonyname") or ""),
            executortype=str(d.get("executortype") or ""),
            executornames=tuple(str(n) for n in _list(d.get("executornames"))),
            locationname=str(d.get("locationname") or ""),
            dependencies=tuple(str(n) for n in _list(d.get("dependencies"))),
            nodes=_int(d.get("nodes")),
            processes=_int(d.get("processes")),
            processespernode=_int(d.get("processespernode")),
            cpu=str(d.get("cpu") or ""),
            mem=str(d.get("mem") or ""),
            storage=str(d.get("storage") or ""),
            gpu=Gpu.from_json(d.get("gpu")),
            walltime=_int(d.get("walltime")),
        )

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "colonyname": self.colonyname, "executortype": self.executortype,
            "executornames": list(self.executornames) or None, "dependencies": list(self.dependencies),
            "nodes": self.nodes, "processes": self.processes, "processespernode": self.processespernode,
            "cpu": self.cpu, "mem": self.mem, "storage": self.storage, "gpu": self.gpu.to_json(),
            "walltime": self.walltime,
        }
        if self.locationname:
            out["locationname"] = self.locationname
        return out


@dataclass(frozen=True)
class FunctionSpec:
    """A function spec. `raw` keeps the JSON as the server holds it, for strict validation."""

    funcname: str = ""
    nodename: str = ""
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    env: Mapping[str, str] = field(default_factory=dict)
    conditions: Conditions = field(default_factory=Conditions)
    priority: int = 0
    maxwaittime: int = -1
    maxexectime: int = -1  # never 0: the server treats 0 as already expired
    maxretries: int = 0
    label: str = ""
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_json(cls, d: Mapping[str, Any] | None) -> FunctionSpec:
        d = _map(d)
        kwargs = d.get("kwargs")
        env = d.get("env")
        return cls(
            funcname=str(d.get("funcname") or ""),
            nodename=str(d.get("nodename") or ""),
            args=tuple(_list(d.get("args"))),
            kwargs=dict(kwargs) if isinstance(kwargs, Mapping) else {},
            env={str(k): str(v) for k, v in env.items()} if isinstance(env, Mapping) else {},
            conditions=Conditions.from_json(d.get("conditions")),
            priority=_int(d.get("priority")),
            maxwaittime=_int(d.get("maxwaittime")),
            maxexectime=_int(d.get("maxexectime")),
            maxretries=_int(d.get("maxretries")),
            label=str(d.get("label") or ""),
            raw=dict(d),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "funcname": self.funcname, "nodename": self.nodename, "args": list(self.args),
            "kwargs": dict(self.kwargs), "env": dict(self.env), "conditions": self.conditions.to_json(),
            "priority": self.priority, "maxwaittime": self.maxwaittime, "maxexectime": self.maxexectime,
            "maxretries": self.maxretries, "label": self.label,
        }


@dataclass(frozen=True)
class Process:
    processid: str
    state: ProcessState
    spec: FunctionSpec
    initiatorid: str = ""
    initiatorname: str = ""
    assignedexecutorid: str = ""
    isassigned: bool = False
    retries: int = 0
    errors: tuple[str, ...] = ()
    output: tuple[Any, ...] = ()
    input: tuple[Any, ...] = ()
    parents: tuple[str, ...] = ()
    children: tuple[str, ...] = ()
    processgraphid: str = ""
    waitforparents: bool = False
    submissiontime: datetime | None = None
    starttime: datetime | None = None
    endtime: datetime | None = None
    execdeadline: datetime | None = None

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Process:
        state = _enum(ProcessState, d.get("state"), ProcessState.WAITING)
        return cls(
            processid=str(d.get("processid") or ""),
            state=state,
            spec=FunctionSpec.from_json(d.get("spec")),
            initiatorid=str(d.get("initiatorid") or ""),
            initiatorname=str(d.get("initiatorname") or ""),
            assignedexecutorid=str(d.get("assignedexecutorid") or ""),
            isassigned=bool(d.get("isassigned")),
            retries=_int(d.get("retries")),
            errors=tuple(str(e) for e in _list(d.get("errors"))),
            output=tuple(_list(d.get("out"))),
            input=tuple(_list(d.get("in"))),
            parents=tuple(_list(d.get("parents"))),
            children=tuple(_list(d.get("children"))),
            processgraphid=str(d.get("processgraphid") or ""),
            waitforparents=bool(d.get("waitforparents")),
            submissiontime=parse_time(d.get("submissiontime")),
            starttime=parse_time(d.get("starttime")),
            endtime=parse_time(d.get("endtime")),
            execdeadline=parse_time(d.get("execdeadline")),
        )


@dataclass(frozen=True)
class Executor:
    executorid: str
    executorname: str
    executortype: str
    colonyname: str
    state: ExecutorState = ExecutorState.PENDING
    locationname: str = ""
    lastheardfromtime: datetime | None = None
    hardware: tuple[Mapping[str, Any], ...] = ()  # capabilities.hardware
    software: tuple[Mapping[str, Any], ...] = ()  # capabilities.software

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Executor:
        state = _enum(ExecutorState, d.get("state"), ExecutorState.PENDING)
        capabilities = _map(d.get("capabilities"))
        return cls(
            executorid=str(d.get("executorid") or ""), executorname=str(d.get("executorname") or ""),
            executortype=str(d.get("executortype") or ""), colonyname=str(d.get("colonyname") or ""),
            state=state, locationname=str(d.get("locationname") or ""),
            lastheardfromtime=parse_time(d.get("lastheardfromtime")),
            hardware=tuple(h for h in _list(capabilities.get("hardware")) if isinstance(h, Mapping)),
            software=tuple(s for s in _list(capabilities.get("software")) if isinstance(s, Mapping)),
        )


@dataclass(frozen=True)
class LogEntry:
    processid: str
    message: str
    timestamp: int  # server insert time, Unix nanoseconds; `since` in getlogs compares with >
    executorname: str = ""

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> LogEntry:
        return cls(processid=str(d.get("processid") or ""), message=str(d.get("message") or ""),
                   timestamp=_int(d.get("timestamp")), executorname=str(d.get("executorname") or ""))


@dataclass(frozen=True)
class ProcessGraph:
    processgraphid: str
    processids: tuple[str, ...]
    rootprocessids: tuple[str, ...]
    state: ProcessState

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> ProcessGraph:
        state = _enum(ProcessState, d.get("state"), ProcessState.WAITING)
        return cls(processgraphid=str(d.get("processgraphid") or ""),
                   processids=tuple(_list(d.get("processids"))),
                   rootprocessids=tuple(_list(d.get("rootprocessids"))), state=state)

"""StackState: everything a running stack is made of, saved as `<run>/state.json`.

A separate module so the component modules (which restart their own processes) and stack.py
can both use it without importing each other. Tests read e.g. `stack.kubeconfig`,
`stack.colonies.port`, `stack.colonies.colony_prvkey`, `stack.kube.gpu_node`.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path

from teststack.procs import Proc

STATE_FILE = "state.json"
PROCS_FILE = "procs.jsonl"  # appended as each daemon starts: lets `stop` clean up a half-started stack


@dataclass(frozen=True)
class PostgresInfo:
    port: int
    data_dir: str
    socket_dir: str
    user: str
    password: str


@dataclass(frozen=True)
class ColoniesInfo:
    """The Colonies server, and the colony and user made for tests, with their keys."""

    host: str
    port: int
    colony_name: str
    server_prvkey: str  # owner of the server (COLONIES_SERVER_ID is its id): adds colonies
    server_id: str
    colony_prvkey: str  # owner of the colony: adds and approves executors, adds users
    colony_id: str
    user_name: str
    user_prvkey: str  # a member: submits and reads processes
    user_id: str
    etcd_name: str  # the server's embedded etcd, on explicit ports (never 2379-2381)
    etcd_client_port: int
    etcd_peer_port: int
    relay_port: int
    etcd_data_dir: str

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


@dataclass(frozen=True)
class S3Info:
    """The S3 server (teststack/seaweedfs.py) and its one identity's keys."""

    host: str
    port: int
    region: str
    access_key: str
    secret_key: str
    data_dir: str
    reader_access_key: str = ""  # an identity that may only read
    reader_secret_key: str = ""

    @property
    def endpoint(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class KubeInfo:
    kubeconfig: str
    api_port: int
    pki_dir: str
    ca_cert: str
    admin_cert: str  # CN it-admin, O system:masters: client and serving cert of every component
    admin_key: str
    etcd_port: int
    etcd_peer_port: int
    kcm_port: int
    scheduler_port: int
    kwok_port: int
    kwok_config: str
    podlogs_dir: str
    nodes: tuple[str, ...]  # every kwok node (CPU nodes first)
    gpu_node: str  # the node with nvidia.com/gpu and label accelerator=a100
    audit_dir: str = ""  # the apiserver's audit log (teststack/audit.py); "" in a stack from before it

    @property
    def api_url(self) -> str:
        return f"https://127.0.0.1:{self.api_port}"


@dataclass(frozen=True)
class RealNodeInfo:
    """The real node (teststack/realnode.py): a kubelet, kube-proxy and containerd in a network
    namespace of their own, joined to the machine by a veth pair (teststack/hostnet.py)."""

    name: str
    label: str  # key=value, for a nodeSelector
    taint: str  # key=value:effect, for a toleration
    slot: int
    link: str  # the machine's end of the veth pair
    subnet: str  # the pods' addresses
    host_ip: str  # the machine's end: pods reach the stack's servers here (through the relay)
    node_ip: str  # the node's end, its InternalIP: the kubelet and kube-proxy listen there
    kubelet_port: int
    kubelet_healthz_port: int
    proxy_healthz_port: int
    relay_ports: tuple[int, ...]  # host_ip:P reaches 127.0.0.1:P (the apiserver)
    colonies_url: str  # where a pod on the node reaches the stack's Colonies server
    containerd_socket: str
    netns: str  # the node's network namespace, held by a bind mount of its nsfs file
    base_dir: str

    @property
    def node_selector(self) -> dict[str, str]:
        key, value = self.label.split("=", 1)
        return {key: value}

    @property
    def toleration(self) -> dict[str, str]:
        key, rest = self.taint.split("=", 1)
        value, effect = rest.split(":", 1)
        return {"key": key, "operator": "Equal", "value": value, "effect": effect}


@dataclass(frozen=True)
class StackState:
    run_dir: str
    bin_dir: str
    procs: tuple[Proc, ...]  # in start order; stopped in reverse
    postgres: PostgresInfo
    colonies: ColoniesInfo
    kube: KubeInfo
    real_node: RealNodeInfo | None = None  # None in a stack from before it
    s3: S3Info | None = None  # None in a stack from before it

    @property
    def kubeconfig(self) -> str:
        return self.kube.kubeconfig

    @property
    def pids(self) -> dict[str, int]:
        return {p.name: p.pid for p in self.procs}

    def proc(self, name: str) -> Proc:
        for p in self.procs:
            if p.name == name:
                return p
        raise KeyError(name)

    def with_proc(self, new: Proc) -> StackState:
        """The same state with the process of that name replaced (after a restart)."""
        return dataclasses.replace(self, procs=tuple(new if p.name == new.name else p for p in self.procs))

    def env(self) -> dict[str, str]:
        """What a shell, the colonies CLI, kubectl, helm or the operator needs to use this stack."""
        no_proxy = ",".join(dict.fromkeys(["127.0.0.1", "localhost", "::1",
                                           *filter(None, os.environ.get("NO_PROXY", "").split(","))]))
        c = self.colonies
        return {
            "KUBECONFIG": self.kube.kubeconfig,
            "COLONIES_SERVER_HOST": c.host,
            "COLONIES_SERVER_PORT": str(c.port),
            "COLONIES_TLS": "false",
            "COLONIES_COLONY_NAME": c.colony_name,
            "COLONIES_COLONY_PRVKEY": c.colony_prvkey,
            "COLONIES_COLONY_ID": c.colony_id,
            "COLONIES_PRVKEY": c.user_prvkey,
            "COLONIES_ID": c.user_id,
            "NO_PROXY": no_proxy,
            "no_proxy": no_proxy,
            "PATH": f"{self.bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        }

    def to_json(self) -> dict:
        d = dataclasses.asdict(self)
        d["procs"] = [p.to_json() for p in self.procs]
        return d

    @classmethod
    def from_json(cls, d: dict) -> StackState:
        kube = dict(d["kube"])
        kube["nodes"] = tuple(kube["nodes"])
        return cls(run_dir=d["run_dir"], bin_dir=d["bin_dir"],
                   procs=tuple(Proc.from_json(p) for p in d["procs"]),
                   postgres=PostgresInfo(**d["postgres"]), colonies=ColoniesInfo(**d["colonies"]),
                   kube=KubeInfo(**kube),
                   real_node=_real_node(d.get("real_node")),
                   s3=S3Info(**d["s3"]) if d.get("s3") else None)


def _real_node(d: dict | None) -> RealNodeInfo | None:
    if not d:
        return None
    try:
        return RealNodeInfo(**(d | {"relay_ports": tuple(d.get("relay_ports") or ())}))
    except TypeError:  # recorded by an older stack: not reusable (healthy() says so), only stoppable
        return None


def save(state: StackState) -> None:
    path = Path(state.run_dir) / STATE_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state.to_json(), indent=2) + "\n")
    os.chmod(tmp, 0o600)  # it holds private keys
    tmp.replace(path)


def load_state(run_dir: Path | str) -> StackState | None:
    path = Path(run_dir) / STATE_FILE
    if not path.exists():
        return None
    return StackState.from_json(json.loads(path.read_text()))


def record_proc(run_dir: Path, proc: Proc) -> None:
    with (run_dir / PROCS_FILE).open("a") as f:
        f.write(json.dumps(proc.to_json()) + "\n")


def recorded_procs(run_dir: Path) -> list[Proc]:
    path = run_dir / PROCS_FILE
    if not path.exists():
        return []
    return [Proc.from_json(json.loads(line)) for line in path.read_text().splitlines() if line.strip()]

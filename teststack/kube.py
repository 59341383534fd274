"""The Kubernetes control plane of the test stack: etcd, kube-apiserver, kube-controller-manager,
kube-scheduler, kwok (the kubelet of fake nodes) and teststack.podlogs, all on 127.0.0.1.

Follows shared/reference/test-cluster.md §8: one CA and one dual-use admin certificate
(O=system:masters) made with openssl serve as apiserver serving cert, client cert of every
component, service-account key and kwok's serving cert. TaintNodesByCondition is disabled
instead of running the node-lifecycle controller, so fake nodes never get a not-ready taint.
kube-apiserver keeps an audit log of every request in `<run>/audit/` (teststack/audit.py).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from teststack import audit, kubeapi, podlogs, procs, versions
from teststack.state import KubeInfo

if TYPE_CHECKING:
    from teststack.state import StackState

STAGES_FILE = Path(__file__).with_name("kwok_stages.yaml")
KWOK_CRDS = ("kwok.x-k8s.io_logs.yaml", "kwok.x-k8s.io_clusterlogs.yaml")
CONTROLLERS = (
    "job-controller", "garbage-collector-controller", "namespace-controller", "serviceaccount-controller",
    "serviceaccount-token-controller", "root-ca-certificate-publisher-controller",
    "ttl-after-finished-controller", "pod-garbage-collector-controller", "deployment-controller",
    "replicaset-controller", "resourcequota-controller",
    "endpointslice-controller",  # Services' backends, for the real node's kube-proxy
)
# Two CPU nodes and one GPU node. `accelerator` is the node label the ColonyOS kube executor
# (and our operator's default) puts in the nodeSelector for conditions.gpu.name.
CPU_NODES = ("kwok-node-0", "kwok-node-1")
GPU_NODE = "kwok-gpu-0"
NODE_CAPACITY = {"cpu": "8", "memory": "32Gi", "pods": "110"}
GPU_RESOURCE = "nvidia.com/gpu"
KWOK_NODE_ANNOTATION = "kwok.x-k8s.io/node"  # kwok manages the nodes that carry it, and only those
GPU_LABEL = ("accelerator", "a100")
HEALTH_PATHS = "/healthz,/readyz,/livez,/metrics"
_PYTHONPATH = os.pathsep.join(filter(None, [str(Path(__file__).resolve().parent.parent),
                                             os.environ.get("PYTHONPATH")]))  # podlogs imports teststack
# kube-apiserver waits up to 60 s for open watches to drain on SIGTERM; nothing here needs that.
STOP_TIMEOUT = {"kube-apiserver": 3.0}
SERVICE_CIDR = "10.96.0.0/16"
KUBERNETES_SERVICE_IP = "10.96.0.1"  # the `kubernetes` Service: what in-cluster clients dial
QPS = ("--kube-api-qps=5000", "--kube-api-burst=10000")  # the defaults (20/30) throttle Job bursts


@dataclass(frozen=True)
class Pki:
    dir: str
    ca_cert: str
    ca_key: str
    admin_cert: str
    admin_key: str


def api(k: KubeInfo) -> kubeapi.KubeAPI:
    return kubeapi.KubeAPI(k.api_url, k.ca_cert, k.admin_cert, k.admin_key)


def _bin(name: str) -> str:
    return str(versions.binary(name))


def _openssl(*args: str) -> None:
    r = subprocess.run(["openssl", *args], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"openssl {args[0]} failed: {r.stderr}")


def issue_cert(d: Path, name: str, subject: str, extensions: list[str], ca_cert: Path, ca_key: Path) -> tuple[str, str]:
    """A key and a certificate `<d>/<name>.{key,crt}` for `subject`, signed by the CA; returns
    (cert, key) paths."""
    key, csr, crt, ext = (d / f"{name}.{x}" for x in ("key", "csr", "crt", "ext"))
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", subject, "-keyout", str(key), "-out", str(csr))
    ext.write_text("\n".join([*extensions, "authorityKeyIdentifier=keyid,issuer", "subjectKeyIdentifier=hash", ""]))
    _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca_cert), "-CAkey", str(ca_key), "-CAcreateserial",
             "-days", "3650", "-sha256", "-extfile", str(ext), "-out", str(crt))
    key.chmod(0o600)
    return str(crt), str(key)


def make_pki(d: Path) -> Pki:
    """A CA and one admin cert (CN it-admin, O system:masters) valid for client and server use."""
    d.mkdir(parents=True, exist_ok=True)
    ca_key, ca_crt = d / "ca.key", d / "ca.crt"
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "3650", "-subj", "/CN=colonies-it-ca",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", "-keyout", str(ca_key), "-out", str(ca_crt))
    ca_key.chmod(0o600)
    crt, key = issue_cert(d, "admin", "/O=system:masters/CN=it-admin", [
        "basicConstraints=CA:FALSE", "keyUsage=critical,digitalSignature,keyEncipherment",
        "extendedKeyUsage=serverAuth,clientAuth",
        "subjectAltName=DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,"
        f"DNS:kubernetes.default.svc.cluster.local,IP:127.0.0.1,IP:::1,IP:{KUBERNETES_SERVICE_IP}"],
        ca_crt, ca_key)
    return Pki(str(d), str(ca_crt), str(ca_key), crt, key)


def write_kubeconfig(path: Path, api_port: int, pki: Pki | KubeInfo, user: tuple[str, str] | None = None,
                     host: str = "127.0.0.1") -> None:
    """A kubeconfig for the apiserver as the admin, or as the `user` (cert, key) given; at `host`
    (the real node's daemons use the relay), checked against the name `localhost` in its cert."""
    cert, key = user or (pki.admin_cert, pki.admin_key)
    cluster = {"server": f"https://{host}:{api_port}", "certificate-authority": pki.ca_cert}
    if host != "127.0.0.1":
        cluster["tls-server-name"] = "localhost"
    cfg = {
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "colonies-it", "cluster": cluster}],
        "users": [{"name": "it-admin", "user": {"client-certificate": cert, "client-key": key}}],
        "contexts": [{"name": "colonies-it", "context": {"cluster": "colonies-it", "user": "it-admin"}}],
        "current-context": "colonies-it",
    }
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    path.chmod(0o600)


def _checks(k: KubeInfo) -> dict[str, procs.HttpCheck]:
    cert = (k.admin_cert, k.admin_key)
    return {
        "etcd": procs.HttpCheck(f"http://127.0.0.1:{k.etcd_port}/health", expect_body='"health":"true"'),
        "kube-apiserver": procs.HttpCheck(f"https://127.0.0.1:{k.api_port}/readyz", verify=k.ca_cert,
                                          cert=cert, expect_body="ok"),
        "kube-controller-manager": procs.HttpCheck(f"https://127.0.0.1:{k.kcm_port}/healthz", verify=k.ca_cert,
                                                   expect_body="ok"),
        "kube-scheduler": procs.HttpCheck(f"https://127.0.0.1:{k.scheduler_port}/healthz", verify=k.ca_cert,
                                          expect_body="ok"),
        "kwok": procs.HttpCheck(f"http://127.0.0.1:{k.kwok_port}/healthz", expect_body="ok"),
    }


def health(k: KubeInfo, ps: tuple[procs.Proc, ...]) -> dict[str, tuple[bool, str]]:
    """Per component: (healthy, detail). podlogs has no endpoint: alive and past its first list."""
    out: dict[str, tuple[bool, str]] = {}
    checks = _checks(k)
    for p in ps:
        if not procs.alive(p):
            out[p.name] = (False, f"pid {p.pid} not running")
        elif p.name in checks:
            out[p.name] = checks[p.name].ok()
        elif p.name == "podlogs":
            ready = (Path(k.podlogs_dir) / podlogs.READY_FILE).exists()
            out[p.name] = (ready, "ok" if ready else "no initial list yet")
        else:
            out[p.name] = (True, "running")
    return out


def _argv(name: str, k: KubeInfo, run: Path) -> list[str]:
    pki = k
    if name == "etcd":
        client, peer = f"http://127.0.0.1:{k.etcd_port}", f"http://127.0.0.1:{k.etcd_peer_port}"
        return [_bin("etcd"), "--name=it", f"--data-dir={run / 'etcd'}",
                f"--listen-client-urls={client}", f"--advertise-client-urls={client}",
                f"--listen-peer-urls={peer}", f"--initial-advertise-peer-urls={peer}",
                f"--initial-cluster=it={peer}", "--unsafe-no-fsync",
                "--auto-compaction-retention=1", "--quota-backend-bytes=2147483648", "--log-level=warn"]
    if name == "kube-apiserver":
        return [_bin("kube-apiserver"), f"--etcd-servers=http://127.0.0.1:{k.etcd_port}",
                "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", f"--secure-port={k.api_port}",
                f"--tls-cert-file={pki.admin_cert}", f"--tls-private-key-file={pki.admin_key}",
                f"--client-ca-file={pki.ca_cert}",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={pki.admin_key}", f"--service-account-signing-key-file={pki.admin_key}",
                f"--service-cluster-ip-range={SERVICE_CIDR}", "--authorization-mode=RBAC", "--allow-privileged=true",
                "--disable-admission-plugins=TaintNodesByCondition", "--endpoint-reconciler-type=none",
                "--enable-priority-and-fairness=false", "--max-requests-inflight=0",
                "--max-mutating-requests-inflight=0", f"--cert-dir={run / 'apiserver-certs'}", "--v=1",
                # The real kubelet is reached at its InternalIP (its end of the veth pair; its Hostname
                # resolves nowhere) with the admin cert; kwok nodes have only Hostname: localhost.
                "--kubelet-preferred-address-types=InternalIP,Hostname",
                f"--kubelet-client-certificate={pki.admin_cert}", f"--kubelet-client-key={pki.admin_key}",
                *audit.apiserver_flags(Path(k.audit_dir))]
    common = [f"--kubeconfig={run / 'kubeconfig'}", "--leader-elect=false", "--bind-address=127.0.0.1",
              f"--tls-cert-file={pki.admin_cert}", f"--tls-private-key-file={pki.admin_key}",
              f"--authorization-always-allow-paths={HEALTH_PATHS}", *QPS, "--v=1"]
    if name == "kube-controller-manager":
        return [_bin("kube-controller-manager"), f"--secure-port={k.kcm_port}", *common,
                f"--controllers={','.join(CONTROLLERS)}", f"--root-ca-file={pki.ca_cert}",
                f"--service-account-private-key-file={pki.admin_key}", "--use-service-account-credentials=false",
                "--concurrent-job-syncs=20", "--concurrent-gc-syncs=20"]
    if name == "kube-scheduler":
        return [_bin("kube-scheduler"), f"--secure-port={k.scheduler_port}", *common]
    if name == "kwok":
        return [_bin("kwok"), f"--kubeconfig={run / 'kubeconfig'}", f"--config={k.kwok_config}",
                # only the fake nodes: the real node has a kubelet of its own
                f"--manage-nodes-with-annotation-selector={KWOK_NODE_ANNOTATION}=fake",
                "--node-name=localhost", f"--node-port={k.kwok_port}",
                f"--server-address=127.0.0.1:{k.kwok_port}", f"--tls-cert-file={pki.admin_cert}",
                f"--tls-private-key-file={pki.admin_key}", "--enable-crds=Logs,ClusterLogs"]
    if name == "podlogs":
        return [sys.executable, "-m", "teststack.podlogs", "--api", f"https://127.0.0.1:{k.api_port}",
                "--ca", pki.ca_cert, "--cert", pki.admin_cert, "--key", pki.admin_key, "--out", k.podlogs_dir]
    raise KeyError(name)


def write_kwok_config(path: Path) -> None:
    """KwokConfiguration (more parallel stage workers for Job bursts) followed by our stages.

    A KwokConfiguration in --config is not defaulted: without enableDebuggingHandlers kwok
    answers every /containerLogs request with 405 "Debug endpoints are disabled."
    """
    head = {"apiVersion": "config.kwok.x-k8s.io/v1alpha1", "kind": "KwokConfiguration",
            "options": {"enableDebuggingHandlers": True, "podPlayStageParallelism": 16,
                        "nodePlayStageParallelism": 4}}
    path.write_text("---\n" + yaml.safe_dump(head, sort_keys=False) + "---\n" + STAGES_FILE.read_text())


def _apply_crds(api: kubeapi.KubeAPI) -> None:
    create_crds(api, [yaml.safe_load((versions.bin_dir() / "kwok-crds" / f).read_text()) for f in KWOK_CRDS])


def create_crds(api: kubeapi.KubeAPI, crds: list[dict], timeout: float = 30) -> None:
    """Create `crds` (those that exist are kept) and wait until each is established."""
    with api.client() as c:
        for crd in crds:
            kubeapi.create(c, "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd, exist_ok=True)
        for crd in crds:
            name = crd["metadata"]["name"]

            def established(name: str = name) -> tuple[bool, str]:
                got = kubeapi.get(c, f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}")
                conds = {x["type"]: x["status"] for x in got.get("status", {}).get("conditions", [])}
                return conds.get("Established") == "True", f"conditions {conds}"
            procs.wait_until(established, timeout=timeout, what=f"CRD {name} established")


def node_manifest(name: str, gpu: bool) -> dict:
    capacity = dict(NODE_CAPACITY) | ({GPU_RESOURCE: "4"} if gpu else {})
    labels = {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
              "type": "kwok"} | (dict([GPU_LABEL]) if gpu else {})
    # Node status may be set on create; the kwok node stage keeps capacity/allocatable it finds.
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": labels, "annotations": {KWOK_NODE_ANNOTATION: "fake"}},
            "status": {"capacity": capacity, "allocatable": capacity}}


def _create_nodes(api: kubeapi.KubeAPI, kwok: procs.Proc) -> None:
    with api.client() as c:
        for name in CPU_NODES:
            kubeapi.create(c, "/api/v1/nodes", node_manifest(name, gpu=False), exist_ok=True)
        kubeapi.create(c, "/api/v1/nodes", node_manifest(GPU_NODE, gpu=True), exist_ok=True)

        def all_ready() -> tuple[bool, str]:
            nodes = kubeapi.get(c, "/api/v1/nodes")["items"]
            ready = {n["metadata"]["name"] for n in nodes
                     if any(x["type"] == "Ready" and x["status"] == "True" for x in n["status"].get("conditions", []))}
            want = {*CPU_NODES, GPU_NODE}
            return want <= ready, f"ready: {sorted(ready)}"
        procs.wait_until(all_ready, timeout=60, what="kwok nodes Ready", proc=kwok)
        node = kubeapi.get(c, f"/api/v1/nodes/{GPU_NODE}")
        if node["status"]["allocatable"].get(GPU_RESOURCE) != "4":
            raise RuntimeError(f"GPU node allocatable lost its GPUs: {node['status']['allocatable']}")

        def default_sa() -> tuple[bool, str]:  # pods are rejected until it exists
            r = c.get("/api/v1/namespaces/default/serviceaccounts/default")
            return r.status_code == 200, f"HTTP {r.status_code}"
        procs.wait_until(default_sa, timeout=60, what="default ServiceAccount")


Step = Callable[[str, Callable[[], float]], None]  # (label, action returning seconds) -> None


def start(run: Path, step: Step, on_proc: Callable[[procs.Proc], None]) -> tuple[tuple[procs.Proc, ...], KubeInfo]:
    """Start every component in order, each waited for. `step` reports progress; `on_proc`
    records each process as soon as it exists, so a failure later still stops it."""
    pki = make_pki(run / "pki")
    k = KubeInfo(kubeconfig=str(run / "kubeconfig"), api_port=procs.free_port(), pki_dir=pki.dir,
                 ca_cert=pki.ca_cert, admin_cert=pki.admin_cert, admin_key=pki.admin_key,
                 etcd_port=procs.free_port(), etcd_peer_port=procs.free_port(), kcm_port=procs.free_port(),
                 scheduler_port=procs.free_port(), kwok_port=procs.free_port(), kwok_config=str(run / "kwok.yaml"),
                 podlogs_dir=str(run / "podlogs"), nodes=(*CPU_NODES, GPU_NODE), gpu_node=GPU_NODE,
                 audit_dir=str(run / "audit"))
    write_kubeconfig(Path(k.kubeconfig), k.api_port, pki)
    write_kwok_config(Path(k.kwok_config))
    checks = _checks(k)
    started: list[procs.Proc] = []

    def launch(name: str, timeout: float, after: Callable[[procs.Proc], object] | None = None) -> None:
        def action() -> float:
            began = time.monotonic()
            env = {"PYTHONPATH": _PYTHONPATH} if name == "podlogs" else None
            p = procs.start(name, _argv(name, k, run), run / "logs" / f"{name}.log", cwd=run, env=env,
                            stop_timeout=STOP_TIMEOUT.get(name, 10.0))
            started.append(p)
            on_proc(p)
            if name in checks:
                procs.wait_http(checks[name], timeout=timeout, what=name, proc=p)
            if after:
                after(p)
            return time.monotonic() - began
        step(name, action)

    launch("etcd", 30)
    launch("kube-apiserver", 120, after=lambda p: _apply_crds(api(k)))
    launch("kube-controller-manager", 60)
    launch("kube-scheduler", 60)
    launch("kwok", 60)
    ready_file = Path(k.podlogs_dir) / podlogs.READY_FILE
    launch("podlogs", 30, after=lambda p: procs.wait_until(ready_file.exists, timeout=30, what="podlogs", proc=p))
    kwok = next(p for p in started if p.name == "kwok")
    step("nodes", lambda: _timed(lambda: _create_nodes(api(k), kwok)))
    return tuple(started), k


def _compact_etcd(port: int) -> None:
    """One write (a key of our own), then a compaction at the revision it made."""
    import base64
    import json
    import urllib.request

    def call(path: str, body: dict) -> dict:
        request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=json.dumps(body).encode())
        with urllib.request.urlopen(request, timeout=30) as reply:
            return json.loads(reply.read())

    key = base64.b64encode(b"/teststack/compaction-marker").decode()
    revision = call("/v3/kv/put", {"key": key, "value": base64.b64encode(str(time.time()).encode()).decode()})
    call("/v3/kv/compaction", {"revision": revision["header"]["revision"], "physical": True})


def _timed(fn: Callable[[], None]) -> float:
    began = time.monotonic()
    fn()
    return time.monotonic() - began


def restart_apiserver(state: StackState, *, expire_watches: bool = False) -> StackState:
    """Stop kube-apiserver by pid and start it again with the same flags and port.

    Returns the new state (also written to state.json). Watches of every client break and
    must resume: that is what a test of this wants to see. With `expire_watches`, etcd is
    compacted while the apiserver is down (after one write of its own, so the revision every
    client last saw is older than the compaction): every watch resumed from where it was
    answers 410 Gone, and its client must list again.
    """
    from teststack import state as st

    old = state.proc("kube-apiserver")
    if expire_watches:
        procs.stop(old)
        _compact_etcd(state.kube.etcd_port)
    proc = procs.restart(old)
    check = _checks(state.kube)["kube-apiserver"]
    procs.wait_http(check, timeout=120, what="kube-apiserver (restart)", proc=proc)
    st.record_proc(Path(state.run_dir), proc)
    new = state.with_proc(proc)
    st.save(new)
    return new

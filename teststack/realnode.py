"""The stack's one real node, next to the kwok nodes: containerd + runc + CNI + a kubelet + kube-proxy.

Start: make the node's network namespace and claim a slot (veth pair, subnets, cgroup:
teststack/hostnet.py), start the relay that lets pods reach the apiserver and Colonies and
point the `kubernetes` Service at it, start containerd, import the pause and busybox images,
start the kubelet (its own client certificate from the stack's CA, bound to the `system:node`
ClusterRole) and wait for the node to be Ready, then kube-proxy (Services). The node is
`real-node-0`, labelled `colonies-it/node=real` and tainted `colonies-it/real=true:NoSchedule`:
a pod lands on it only when it selects and tolerates it.

Every stack (run dir) gets a node of its own: two stacks use two slots, so their namespaces,
subnets, cgroups, sockets and directories never meet.

containerd, the kubelet and kube-proxy run in the node's network namespace, each also in a mount
namespace of its own (teststack/mountns.py): what they write at fixed places of the machine
(/run/containerd, /var/lib/cni, /var/lib/kubelet, /var/log/containers, /run/xtables.lock) goes
to overlays under the node's directory, and containerd resolves names through a resolv.conf
naming only 127.0.0.1, so an image pull can never leave the machine. The kubelet's root dir is
the one mount they share with the host.

Cleanup (`cleanup(run)`, after the processes are stopped) needs nothing but the run dir: kill
whatever is left in the slot's cgroup (shims and containers outlive containerd; with the last
of them containerd's namespace goes, and with it every rootfs, shm and pod network namespace
it mounted), unmount what is left under the node's directory (the kubelet's volumes and the
node's network namespace, which takes the bridge and kube-proxy's tables with it), then
remove the veth pair and the cgroups.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from teststack import (
    apt,
    cgroups,
    containerd,
    hostnet,
    images,
    kube,
    kubeapi,
    kubelet,
    kubeproxy,
    mountns,
    procs,
    versions,
)
from teststack.state import KubeInfo, RealNodeInfo

HOST_RECORD = "host.json"  # what cleanup must undo, written as soon as it exists
BASE = "realnode"  # the node's directory in the run dir
PACKAGES = {**containerd.PACKAGES, "busybox-static": str(images.BUSYBOX_BINARY), "nftables": "/usr/sbin/nft"}
SOCKET_PATH_MAX = 108  # sun_path of a unix socket
CLIENT_CERT = ["basicConstraints=CA:FALSE", "keyUsage=critical,digitalSignature,keyEncipherment",
               "extendedKeyUsage=clientAuth"]
_PYTHONPATH = os.pathsep.join(filter(None, [str(Path(__file__).resolve().parent.parent),
                                             os.environ.get("PYTHONPATH")]))  # the relay imports teststack


def ensure_installed() -> None:
    apt.install([pkg for pkg, witness in PACKAGES.items() if not Path(witness).exists()], "the real node")


def mounts_under(base: Path) -> list[str]:
    """Mount points at or below `base`, deepest first (mountinfo escapes spaces as \\040)."""
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].encode().decode("unicode_escape")
        if point == str(base) or point.startswith(str(base) + "/"):
            points.append(point)
    return sorted(set(points), key=lambda p: -p.count("/"))


def _unmount_all(base: Path) -> None:
    for _ in range(5):  # a mount can hide another at the same place: repeat until none is left
        points = mounts_under(base)
        if not points:
            return
        for point in points:
            if subprocess.run(["umount", point], capture_output=True).returncode != 0:
                subprocess.run(["umount", "--lazy", point], capture_output=True)
    if mounts_under(base):
        raise RuntimeError(f"mounts left under {base}: {mounts_under(base)}")


def _share(root: Path) -> None:
    """Make the kubelet's root dir a shared mount point, so its volume mounts reach the host."""
    root.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "--bind", str(root), str(root)], check=True)
    subprocess.run(["mount", "--make-shared", str(root)], check=True)


def _bind_node_role(api: kubeapi.KubeAPI) -> None:
    binding = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
               "metadata": {"name": f"teststack:{kubelet.NODE_NAME}"},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "system:node"},
               "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User",
                             "name": f"system:node:{kubelet.NODE_NAME}"}]}
    with api.client() as c:
        kubeapi.create(c, "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", binding, exist_ok=True)


def node_ready(api: kubeapi.KubeAPI, name: str = kubelet.NODE_NAME) -> tuple[bool, str]:
    with api.client(timeout=5) as c:
        node = kubeapi.get(c, f"/api/v1/nodes/{name}")
    conds = {x["type"]: x for x in node.get("status", {}).get("conditions", [])}
    ready = conds.get("Ready", {})
    return ready.get("status") == "True", f"Ready: {ready.get('status')} {ready.get('message', '')}".strip()


def _checks_of(host_ip: str, api_port: int) -> dict[str, Callable[[], tuple[bool, str]]]:
    return {"relay": lambda: procs.tcp_open(host_ip, api_port)}


def _checks(info: RealNodeInfo) -> dict[str, Callable[[], tuple[bool, str]]]:
    paths = containerd.Paths(Path(info.base_dir) / "containerd")

    def containerd_ok() -> tuple[bool, str]:
        r = subprocess.run(["ctr", "--address", str(paths.socket), "version"], capture_output=True, text=True)
        return r.returncode == 0, "ok" if r.returncode == 0 else r.stderr.strip()[-200:]
    return {**_checks_of(info.host_ip, info.relay_ports[0]),
            "containerd": containerd_ok,
            "kubelet": procs.HttpCheck(f"http://{info.node_ip}:{info.kubelet_healthz_port}/healthz",
                                       expect_body="ok").ok,
            "kube-proxy": procs.HttpCheck(f"http://{info.node_ip}:{info.proxy_healthz_port}/healthz").ok}


def health(info: RealNodeInfo, ps: tuple[procs.Proc, ...], k: KubeInfo) -> dict[str, tuple[bool, str]]:
    """containerd answers, the kubelet's healthz says ok and its node is Ready."""
    out: dict[str, tuple[bool, str]] = {}
    checks = _checks(info)
    for p in ps:
        if not procs.alive(p):
            out[p.name] = (False, f"pid {p.pid} not running")
            continue
        ok, detail = checks[p.name]()
        if ok and p.name == "kubelet":
            try:
                ok, detail = node_ready(kube.api(k), info.name)
                detail = f"node {info.name} {detail}"
            except Exception as e:  # noqa: BLE001 - reported as the detail of an unhealthy kubelet
                ok, detail = False, f"{type(e).__name__}: {e}"
        out[p.name] = (ok, detail)
    return out


Step = Callable[[str, Callable[[], float]], None]
STEPS = ("node network", "containerd", "kubelet", "kube-proxy")


def _kubernetes_endpoints(api: kubeapi.KubeAPI, host_ip: str, api_port: int) -> None:
    """The `kubernetes` Service's backend (the apiserver runs with no endpoint reconciler): the
    relay on the machine's end of the pair, so in-cluster clients on the node reach it."""
    eps = {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
           "metadata": {"name": "kubernetes", "namespace": "default",
                        "labels": {"kubernetes.io/service-name": "kubernetes",
                                   "endpointslice.kubernetes.io/managed-by": "teststack"}},
           "addressType": "IPv4", "endpoints": [{"addresses": [host_ip], "conditions": {"ready": True}}],
           "ports": [{"name": "https", "port": api_port, "protocol": "TCP"}]}
    with api.client() as c:
        kubeapi.create(c, "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices", eps, exist_ok=True)


def start(run: Path, k: KubeInfo, colonies_port: int, step: Step, on_proc: Callable[[procs.Proc], None],
          relayed: tuple[int, ...] = ()) -> tuple[tuple[procs.Proc, ...], RealNodeInfo]:
    """`relayed`: more loopback ports pods may reach at the machine's end of the pair (S3)."""
    mountns.check_run_dir(run)
    base = run / BASE
    base.mkdir(parents=True, exist_ok=True)
    record = base / HOST_RECORD
    netns = base / "netns"
    cpaths, kpaths = containerd.Paths(base / "containerd"), kubelet.Paths(base / "kubelet")
    if len(str(cpaths.socket) + ".ttrpc") >= SOCKET_PATH_MAX:
        raise RuntimeError(f"the run dir {run} is too long for a real node: containerd's socket "
                           f"{cpaths.socket} must stay under {SOCKET_PATH_MAX} bytes (choose a shorter run dir)")
    started: list[procs.Proc] = []
    slot: list[hostnet.Slot] = []

    def launch(name: str, argv: list[str], **kw: object) -> procs.Proc:
        p = procs.start(name, argv, run / "logs" / f"{name}.log", **kw)
        started.append(p)
        on_proc(p)
        return p

    def network_action() -> float:
        began = time.monotonic()
        hostnet.make_netns(netns)
        slot.append(hostnet.claim(netns))
        # the slot first, so cleanup finds it; the sysctls the kubelet must leave as they are, for tests
        machine = {name: Path("/proc/sys", name).read_text().strip() for name in kubelet.SYSCTLS}
        record.write_text(json.dumps({"slot": slot[0].index, "machine_sysctls": machine}))
        cgroups.create(slot[0].cgroup)
        ports = [arg for port in (k.api_port, *relayed) for arg in ("--port", str(port))]
        p = launch("relay", [sys.executable, "-m", "teststack.relay", "--listen", slot[0].host_ip, *ports],
                   cwd=base, env={"PYTHONPATH": _PYTHONPATH})
        procs.wait_until(_checks_of(slot[0].host_ip, k.api_port)["relay"], timeout=30, what="relay", proc=p)
        _kubernetes_endpoints(kube.api(k), slot[0].host_ip, k.api_port)
        return time.monotonic() - began
    step("node network", network_action)
    s = slot[0]

    def containerd_action() -> float:
        began = time.monotonic()
        _share(kpaths.root)  # before containerd's namespace is made, so that it shares the mount too
        containerd.write_config(cpaths, s)
        p = launch("containerd", hostnet.in_netns(netns, containerd.launcher(cpaths)), cwd=base)
        containerd.wait_ready(cpaths, p)
        have = containerd.import_images(cpaths, [versions.images_dir() / a for a in images.ARCHIVES])
        if not {versions.PAUSE_IMAGE, versions.BUSYBOX_IMAGE} <= set(have):
            raise RuntimeError(f"containerd lacks the imported images; it has {have}")
        return time.monotonic() - began
    step("containerd", containerd_action)

    taint = kubelet.NODE_TAINT
    info = RealNodeInfo(name=kubelet.NODE_NAME, label="=".join(kubelet.NODE_LABEL),
                        taint=f"{taint['key']}={taint['value']}:{taint['effect']}",
                        slot=s.index, link=s.link, subnet=s.subnet, host_ip=s.host_ip, node_ip=s.node_ip,
                        kubelet_port=procs.free_port(), kubelet_healthz_port=procs.free_port(),
                        proxy_healthz_port=procs.free_port(), relay_ports=(k.api_port, *relayed),
                        # the Colonies server listens on every address of the machine (its own choice)
                        colonies_url=f"http://{s.host_ip}:{colonies_port}",
                        containerd_socket=str(cpaths.socket), netns=str(netns), base_dir=str(base))
    checks = _checks(info)
    pki_dir = Path(k.pki_dir)

    def kubelet_action() -> float:
        began = time.monotonic()
        kpaths.base.mkdir(parents=True, exist_ok=True)
        cert = kube.issue_cert(pki_dir, "kubelet", kubelet.node_client_subject(), CLIENT_CERT,
                               pki_dir / "ca.crt", pki_dir / "ca.key")
        kube.write_kubeconfig(kpaths.kubeconfig, k.api_port, k, user=cert, host=s.host_ip)
        _bind_node_role(kube.api(k))
        kpaths.pod_logs.mkdir(parents=True, exist_ok=True)
        kubelet.write_config(kpaths, kubelet.config(
            node_ip=s.node_ip, port=info.kubelet_port, healthz_port=info.kubelet_healthz_port,
            runtime_socket=cpaths.socket, cgroup_root=s.cgroup, ca_cert=k.ca_cert, pod_logs=kpaths.pod_logs))
        binds = kubelet.write_sysctl_files(kpaths.sysctl_dir)
        argv = mountns.launcher(kubelet.argv(str(versions.binary("kubelet")), kpaths, s.node_ip), binds=binds,
                                overlays={"/var": kpaths.var_overlay})
        p = launch("kubelet", hostnet.in_netns(netns, argv), cwd=kpaths.base)
        procs.wait_until(checks["kubelet"], timeout=60, what="kubelet healthz", proc=p)
        procs.wait_until(lambda: node_ready(kube.api(k)), timeout=90, what=f"node {info.name} Ready", proc=p)
        return time.monotonic() - began
    step("kubelet", kubelet_action)

    def proxy_action() -> float:
        began = time.monotonic()
        d = base / "kube-proxy"
        d.mkdir(parents=True, exist_ok=True)
        cert = kube.issue_cert(pki_dir, "kube-proxy", kubeproxy.IDENTITY, CLIENT_CERT,
                               pki_dir / "ca.crt", pki_dir / "ca.key")
        kube.write_kubeconfig(d / "kubeconfig", k.api_port, k, user=cert, host=s.host_ip)
        kubeproxy.write_config(d / "config.yaml", kubeproxy.config(
            kubeconfig=d / "kubeconfig", node_name=info.name, node_ip=s.node_ip,
            healthz_port=info.proxy_healthz_port, cluster_cidr=s.subnet))
        argv = kubeproxy.argv(str(versions.binary("kube-proxy")), d / "config.yaml", d / "run-overlay")
        p = launch("kube-proxy", hostnet.in_netns(netns, argv), cwd=d)
        procs.wait_until(checks["kube-proxy"], timeout=60, what="kube-proxy healthz", proc=p)
        return time.monotonic() - began
    step("kube-proxy", proxy_action)
    return tuple(started), info


def cleanup(run: Path) -> None:
    """Undo what `start` did on the machine (its processes are stopped already). Safe to repeat."""
    base = run / BASE
    record = base / HOST_RECORD
    if not record.exists():
        return
    slot = hostnet.Slot(json.loads(record.read_text())["slot"])
    cgroups.kill_all(slot.cgroup)  # containerd's mount namespace, and all it mounted there, goes with it
    _unmount_all(base)
    hostnet.release(slot)
    with contextlib.suppress(FileNotFoundError):
        cgroups.remove(slot.cgroup)
    record.unlink()


def import_images(info: RealNodeInfo, archives: list[Path]) -> list[str]:
    """Import OCI archives into the node's containerd (pods then run them without a pull);
    returns the image names it has."""
    return containerd.import_images(containerd.Paths(Path(info.base_dir) / "containerd"), archives)

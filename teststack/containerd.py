"""containerd of the real node: its config, its CNI network, its start and its images.

Everything containerd keeps lives under the node's directory (root, state, socket, the
`opt` plugin's path, runc's root, network namespaces, CNI config and IPAM state); what it and
libcni write at fixed places lands in overlays of its own mount namespace (`launcher`). The config follows
shared/reference/real-node.md: overlayfs, cgroupfs (`SystemdCgroup = false`),
`restrict_oom_score_adj = true` (the machine lacks CAP_SYS_RESOURCE, and without it every
sandbox fails asking for oom_score_adj -998), and our pause image as the sandbox image.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from teststack import hostnet, mountns, procs, versions

CNI_BIN_DIR = "/usr/lib/cni"  # Debian's containernetworking-plugins
NAMESPACE = "k8s.io"  # the containerd namespace the CRI plugin uses
PACKAGES = {"containerd": "/usr/bin/containerd", "runc": "/usr/sbin/runc",
            "containernetworking-plugins": f"{CNI_BIN_DIR}/bridge", "iptables": "/usr/sbin/iptables"}


@dataclass(frozen=True)
class Paths:
    """Where one node's containerd keeps everything."""

    base: Path

    @property
    def config(self) -> Path:
        return self.base / "config.toml"

    @property
    def socket(self) -> Path:
        return self.base / "containerd.sock"

    @property
    def root(self) -> Path:
        return self.base / "root"

    @property
    def state(self) -> Path:
        return self.base / "state"

    @property
    def cni_conf_dir(self) -> Path:
        return self.base / "net.d"

    @property
    def ipam_dir(self) -> Path:
        return self.base / "ipam"

    @property
    def resolv_conf(self) -> Path:
        return self.base / "resolv.conf"


def config(paths: Paths, cgroup: str) -> dict:
    cri = "io.containerd.grpc.v1.cri"
    return {
        "version": 2,
        "root": str(paths.root), "state": str(paths.state),
        "oom_score": 0,  # leave our own oom_score_adj alone
        "grpc": {"address": str(paths.socket)},
        "ttrpc": {"address": str(paths.socket) + ".ttrpc"},
        "cgroup": {"path": f"{cgroup}/runtime"},  # its shims inherit it: teststack/cgroups.py finds them
        # snapshotters and services a node here never uses
        "disabled_plugins": ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
                             "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs",
                             "io.containerd.tracing.processor.v1.otlp"],
        "plugins": {
            "io.containerd.internal.v1.opt": {"path": str(paths.base / "opt")},
            cri: {
                "sandbox_image": versions.PAUSE_IMAGE,
                "restrict_oom_score_adj": True,
                "netns_mounts_under_state_dir": True,
                "stream_server_address": "127.0.0.1", "stream_server_port": "0",
                "enable_tls_streaming": False,
                "cni": {"bin_dir": CNI_BIN_DIR, "conf_dir": str(paths.cni_conf_dir), "max_conf_num": 1},
                "containerd": {
                    "snapshotter": "overlayfs", "default_runtime_name": "runc",
                    "runtimes": {"runc": {"runtime_type": "io.containerd.runc.v2", "options": {
                        "SystemdCgroup": False, "Root": str(paths.state / "runc")}}},
                },
            },
        },
    }


def cni_conflist(slot: hostnet.Slot, ipam_dir: Path) -> dict:
    """bridge + host-local on the slot's /24 inside the node's network namespace (no masquerade:
    pods never leave the machine), portmap for hostPorts, loopback inside each pod."""
    return {
        "cniVersion": "1.0.0", "name": slot.network,
        "plugins": [
            {"type": "bridge", "bridge": hostnet.CNI_BRIDGE, "isGateway": True, "ipMasq": False,
             "hairpinMode": True,
             "ipam": {"type": "host-local", "dataDir": str(ipam_dir), "routes": [{"dst": "0.0.0.0/0"}],
                      "ranges": [[{"subnet": slot.subnet, "gateway": slot.gateway}]]}},
            {"type": "portmap", "capabilities": {"portMappings": True}},
            {"type": "loopback"},
        ],
    }


def toml(table: Mapping[str, object], prefix: str = "") -> str:
    """The TOML for nested tables of str/int/bool/list values (all a containerd config needs)."""
    def value(v: object) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return str(v)
        if isinstance(v, str):
            return json.dumps(v)  # a JSON string is a valid TOML basic string
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(value(x) for x in v) + "]"
        raise TypeError(f"no TOML for {type(v).__name__}")

    def key(k: str) -> str:
        return k if re.fullmatch(r"[A-Za-z0-9_-]+", k) else json.dumps(k)

    lines = [f"{key(k)} = {value(v)}" for k, v in table.items() if not isinstance(v, Mapping)]
    out = "\n".join(lines) + ("\n" if lines else "")
    for k, v in table.items():
        if isinstance(v, Mapping):
            name = f"{prefix}.{key(k)}" if prefix else key(k)
            out += f"\n[{name}]\n" + toml(v, name)
    return out


def write_config(paths: Paths, slot: hostnet.Slot) -> None:
    for d in (paths.root, paths.state, paths.cni_conf_dir, paths.ipam_dir):
        d.mkdir(parents=True, exist_ok=True)
    paths.config.write_text(toml(config(paths, slot.cgroup)))
    conflist = cni_conflist(slot, paths.ipam_dir)
    (paths.cni_conf_dir / "10-teststack.conflist").write_text(json.dumps(conflist, indent=2))
    paths.resolv_conf.write_text("# no registry is reachable: names resolve nowhere (teststack)\nnameserver 127.0.0.1\n")


def launcher(paths: Paths) -> list[str]:
    """containerd in a mount namespace of its own: overlays keep what it and libcni write at
    fixed places (/run/containerd/s, /var/lib/cni) under `paths.base`, and a resolv.conf naming
    only 127.0.0.1 makes every registry name unresolvable, so no pull can leave the machine."""
    return mountns.launcher(["containerd", "--config", str(paths.config), "--log-level", "info"],
                            binds={"/etc/resolv.conf": paths.resolv_conf},
                            overlays={"/run": paths.base / "run-overlay", "/var": paths.base / "var-overlay"})


def ctr(paths: Paths, *args: str) -> str:
    r = subprocess.run(["ctr", "--address", str(paths.socket), "--namespace", NAMESPACE, *args],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"ctr {' '.join(args)} failed: {r.stderr.strip()}")
    return r.stdout


def wait_ready(paths: Paths, proc: procs.Proc, timeout: float = 30) -> float:
    def serving() -> tuple[bool, str]:
        r = subprocess.run(["ctr", "--address", str(paths.socket), "version"], capture_output=True, text=True)
        return r.returncode == 0, (r.stdout + r.stderr).strip()[-200:]
    return procs.wait_until(serving, timeout=timeout, what="containerd", proc=proc, interval=0.2)


def import_images(paths: Paths, archives: list[Path]) -> list[str]:
    """Import OCI archives into the CRI's namespace; return the image names containerd now has."""
    for archive in archives:
        ctr(paths, "images", "import", str(archive))
    return ctr(paths, "images", "ls", "--quiet").split()


"""The kubelet of the real node: its configuration, credentials and launcher.

Facts from shared/reference/real-node.md: cgroup v1 needs `failCgroupV1: false` and the
cgroupfs driver; containerd 1.6 has no RuntimeConfig call, so the kubelet uses its own
`cgroupDriver`; the machine refuses a negative oom_score_adj, so `oomScoreAdj: 0`.

The kubelet sets machine-wide sysctls (vm.overcommit_memory=1, kernel.panic=10,
kernel.panic_on_oops=1) when they differ from what it wants. It runs in a mount namespace of
its own (`unshare -m`) where files holding those very values are bind-mounted over the three
/proc/sys entries: it reads what it wants and writes nothing; the machine keeps its values.
An overlay over /var keeps the fixed paths it writes there (/var/lib/kubelet/device-plugins,
/var/log/containers) off the machine (teststack/mountns.py launches it). Its root directory is
a shared bind mount made on the host before, so the volumes it mounts there (service-account
tokens, emptyDirs) propagate to the host and to containerd.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

NODE_NAME = "real-node-0"
NODE_LABEL = ("colonies-it/node", "real")
# Keeps pods that do not ask for the real node off it, so every kwok-based test schedules as before.
NODE_TAINT = {"key": "colonies-it/real", "value": "true", "effect": "NoSchedule"}
SYSCTLS = {"vm/overcommit_memory": "1", "kernel/panic": "10", "kernel/panic_on_oops": "1"}


@dataclass(frozen=True)
class Paths:
    base: Path

    @property
    def root(self) -> Path:
        """--root-dir: pods, volumes, plugins, its serving cert; a shared mount point."""
        return self.base / "root"

    @property
    def config(self) -> Path:
        return self.base / "config.yaml"

    @property
    def kubeconfig(self) -> Path:
        return self.base / "kubeconfig"

    @property
    def pod_logs(self) -> Path:
        return self.base / "pod-logs"

    @property
    def sysctl_dir(self) -> Path:
        return self.base / "sysctl"

    @property
    def var_overlay(self) -> Path:
        """Upper and work dirs of the overlay over /var in its mount namespace."""
        return self.base / "var-overlay"


def config(*, node_ip: str, port: int, healthz_port: int, runtime_socket: Path, cgroup_root: str,
           ca_cert: str, pod_logs: Path) -> dict:
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
        "failCgroupV1": False, "cgroupDriver": "cgroupfs", "cgroupRoot": cgroup_root,
        "containerRuntimeEndpoint": f"unix://{runtime_socket}",
        "address": node_ip, "port": port, "readOnlyPort": 0,
        "healthzBindAddress": node_ip, "healthzPort": healthz_port,  # 127.0.0.1 is the node's own
        "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": False},
                           "x509": {"clientCAFile": ca_cert}},
        "authorization": {"mode": "Webhook"},  # the apiserver (admin cert) asks; SubjectAccessReview answers
        "oomScoreAdj": 0,
        "registerWithTaints": [NODE_TAINT],
        "podLogsDir": str(pod_logs),
        "resolvConf": "",  # pods get no nameserver: nothing to resolve, nowhere to send it
        "failSwapOn": False,
        "serializeImagePulls": False,
        # a shared test machine: never evict pods or delete images for its disk or memory use
        "imageGCHighThresholdPercent": 100, "imageGCLowThresholdPercent": 99,
        "evictionHard": {"memory.available": "1Mi", "nodefs.available": "0%", "imagefs.available": "0%",
                         "nodefs.inodesFree": "0%"},
        "makeIPTablesUtilChains": False,
    }


def write_sysctl_files(d: Path) -> dict[str, Path]:
    """One file per sysctl holding the value the kubelet wants; returns /proc/sys path -> file."""
    d.mkdir(parents=True, exist_ok=True)
    out = {}
    for name, value in SYSCTLS.items():
        f = d / name.replace("/", ".")
        f.write_text(value + "\n")
        out[f"/proc/sys/{name}"] = f
    return out


def argv(kubelet_bin: str, paths: Paths, node_ip: str) -> list[str]:
    return [kubelet_bin, f"--config={paths.config}", f"--kubeconfig={paths.kubeconfig}",
            f"--root-dir={paths.root}", f"--cert-dir={paths.root / 'pki'}",
            f"--hostname-override={NODE_NAME}", f"--node-ip={node_ip}",
            f"--node-labels={NODE_LABEL[0]}={NODE_LABEL[1]}", "--v=2"]


def write_config(paths: Paths, cfg: dict) -> None:
    paths.config.write_text(yaml.safe_dump(cfg, sort_keys=False))


def node_client_subject() -> str:
    """The kubelet's identity for the apiserver (bound to the system:node ClusterRole)."""
    return f"/O=system:nodes/CN=system:node:{NODE_NAME}"

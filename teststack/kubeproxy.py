"""kube-proxy of the real node: Services, in nftables mode, inside the node's network namespace.

Its tables (`ip kube-proxy`, `ip6 kube-proxy`) live in the node's namespace and vanish with it.
`masqueradeAll`: a pod that reaches a Service backed by a pod on the same bridge gets its reply
through the node (with a plain DNAT the reply would be bridged straight back, from the wrong
address, unless the machine loaded br_netfilter, which is not ours to change). The conntrack
settings are zero so it sets no sysctl, and NodePorts open only on the node's end of the pair.
It runs in a mount namespace of its own with an overlay over /run, so the xtables lock of its
start-up cleanup never lands on the machine.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from teststack import mountns

IDENTITY = "/CN=system:kube-proxy"  # bound to system:node-proxier by the default RBAC policy


def config(*, kubeconfig: Path, node_name: str, node_ip: str, healthz_port: int, cluster_cidr: str) -> dict:
    return {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1", "kind": "KubeProxyConfiguration",
        "mode": "nftables",
        "clientConnection": {"kubeconfig": str(kubeconfig)},
        "hostnameOverride": node_name,
        "bindAddress": node_ip,
        "healthzBindAddress": f"{node_ip}:{healthz_port}",
        "metricsBindAddress": "127.0.0.1:10249",  # the node's own loopback: no other stack's
        "oomScoreAdj": 0,  # the machine refuses a negative one (no CAP_SYS_RESOURCE)
        "clusterCIDR": cluster_cidr,
        "nodePortAddresses": [f"{node_ip}/32"],
        "conntrack": {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s", "tcpCloseWaitTimeout": "0s",
                      "udpTimeout": "0s", "udpStreamTimeout": "0s"},
        "nftables": {"masqueradeAll": True, "syncPeriod": "30s", "minSyncPeriod": "0s"},
    }


def write_config(path: Path, cfg: dict) -> None:
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))


def argv(kube_proxy_bin: str, config_path: Path, run_overlay: Path) -> list[str]:
    return mountns.launcher([kube_proxy_bin, f"--config={config_path}", "--v=2"], overlays={"/run": run_overlay})

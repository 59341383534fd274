"""Kueue (sigs.k8s.io/kueue), the job queueing controller, against the stack's apiserver.

Started only by the tests that need it (tests/fixtures/kueue.py), never with every stack: it
is one more controller watching every Job. Its CRDs are applied from the module the build
downloaded (never copied into this repository). It runs as the admin, with no leader
election, only the batch/job integration, and its webhooks unregistered: there is no cert
manager, so nothing mutates or validates Kueue's objects or Jobs (whoever creates a Job for
Kueue creates it suspended, as the operator does). Its webhook server still starts and
serves the stack's admin certificate from the run dir. Its metrics server reads its
certificate from a fixed path, /etc/kueue/metrics/certs, so the manager runs in a mount
namespace of its own where /etc is overlaid and that path holds the same certificate; the
machine's /etc is never touched. Every port is a free one on 127.0.0.1.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import yaml

from teststack import kube, kubeapi, mountns, procs, versions
from teststack.state import StackState, record_proc

API = "kueue.x-k8s.io/v1beta2"
NAMESPACE = "kueue-system"  # Kueue's own namespace (its default); it keeps nothing there here
METRICS_CERTS = "/etc/kueue/metrics/certs"  # fixed in cmd/kueue/main.go without internal cert management
CRDS = "config/components/crd/bases"


@dataclass(frozen=True)
class KueueInfo:
    health_port: int
    metrics_port: int
    webhook_port: int
    config: str
    log: str

    @property
    def ready_url(self) -> str:
        return f"http://127.0.0.1:{self.health_port}/readyz"


def module_dir() -> Path:
    """The Kueue module's source in the Go module cache (downloaded by the build; fetched again
    from the proxy if the module cache was cleaned)."""
    with tempfile.TemporaryDirectory() as empty:  # outside any module: no go.mod needed
        out = subprocess.run(["go", "mod", "download", "-json", f"sigs.k8s.io/kueue@{versions.KUEUE}"],
                             cwd=empty, check=True, capture_output=True, text=True)
    return Path(json.loads(out.stdout)["Dir"])


def crds() -> list[dict]:
    return [yaml.safe_load(f.read_text()) for f in sorted((module_dir() / CRDS).glob("*.yaml"))]


def apply_crds(api: kubeapi.KubeAPI) -> None:
    """Create Kueue's CRDs (kept when they exist: a second session reuses them) and its namespace."""
    kube.create_crds(api, crds(), timeout=60)
    with api.client() as c:
        kubeapi.create(c, "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                                 "metadata": {"name": NAMESPACE}}, exist_ok=True)


def configuration(health: int, metrics: int, webhook: int, cert_dir: Path) -> dict:
    return {
        "apiVersion": "config.kueue.x-k8s.io/v1beta2", "kind": "Configuration",
        "namespace": NAMESPACE,
        "health": {"healthProbeBindAddress": f"127.0.0.1:{health}"},
        "metrics": {"bindAddress": f"127.0.0.1:{metrics}"},
        "webhook": {"host": "127.0.0.1", "port": webhook, "certDir": str(cert_dir)},
        "leaderElection": {"leaderElect": False},
        "internalCertManagement": {"enable": False},
        "integrations": {"frameworks": ["batch/job"]},
        "clientConnection": {"qps": 200, "burst": 400},
        # its own API server on a fixed port (8082), with certificates of its own: not needed
        "featureGates": {"VisibilityOnDemand": False},
    }


def _certificates(state: StackState, dest: Path) -> None:
    """The stack's admin certificate (valid for serving on 127.0.0.1) as tls.crt/tls.key."""
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(state.kube.admin_cert, dest / "tls.crt")
    shutil.copyfile(state.kube.admin_key, dest / "tls.key")
    (dest / "tls.key").chmod(0o600)


def start(state: StackState) -> tuple[procs.Proc, KueueInfo]:
    """Apply the CRDs and start the manager; return once it is ready (its webhook server listens
    and its caches synced). The process is recorded in the run dir, so stopping the stack stops
    it too; the caller stops it by pid."""
    run = Path(state.run_dir)
    base = run / "kueue"
    shutil.rmtree(base, ignore_errors=True)
    apply_crds(kube.api(state.kube))
    _certificates(state, base / "webhook-certs")
    etc = base / "etc"  # the overlay of /etc: its upper dir holds what the manager sees there
    _certificates(state, etc / "upper" / Path(METRICS_CERTS).relative_to("/etc"))
    info = KueueInfo(procs.free_port(), procs.free_port(), procs.free_port(), str(base / "config.yaml"),
                     str(run / "logs" / "kueue.log"))
    Path(info.config).write_text(yaml.safe_dump(configuration(info.health_port, info.metrics_port, info.webhook_port,
                                                              base / "webhook-certs"), sort_keys=False))
    argv = mountns.launcher([str(versions.kueue()), f"--config={info.config}", "--zap-log-level=2"],
                            overlays={"/etc": etc})
    proc = procs.start("kueue", argv, Path(info.log), env={"KUBECONFIG": state.kubeconfig}, cwd=base)
    record_proc(run, proc)
    try:
        procs.wait_http(procs.HttpCheck(info.ready_url), timeout=120, what="kueue", proc=proc)
    except BaseException:
        procs.stop(proc)
        raise
    return proc, info

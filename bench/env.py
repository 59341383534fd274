"""The bench's stage: a fresh test stack (or a reused one), big kwok nodes, namespaces with the
colony key Secret, ColonyExecutors, the operator as a subprocess, metrics scraping and CPU
accounting per component."""

from __future__ import annotations

import contextlib
import datetime
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from teststack import kube as stack_kube
from teststack import kubeapi, procs
from teststack import stack as teststack
from teststack.state import StackState

ROOT = Path(__file__).resolve().parents[1]
CRD = ROOT / "crds" / "colonyexecutor.yaml"
GROUP, VERSION, PLURAL = "colonyos.io", "v1alpha1", "colonyexecutors"
# Room for thousands of tiny pods: the stack's own nodes hold 110 pods each.
BENCH_NODE_CAPACITY = {"cpu": "2000", "memory": "4Ti", "pods": "1000"}


def say(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- the stack -------------------------------------------------------------------------------

@contextlib.contextmanager
def bench_stack(reuse: str | None, keep: bool = False) -> Iterator[StackState]:
    """A fresh stack in a temporary run dir, stopped by pid at the end; or the healthy stack in `reuse`."""
    if reuse:
        state = teststack.load_state(reuse)
        if state is None or not teststack.healthy(state):
            raise SystemExit(f"no healthy stack in {reuse}; start one with `python3 -m teststack start --run-dir {reuse}`")
        yield state
        return
    run_dir = Path(tempfile.mkdtemp(prefix="colonies-bench-"))
    state = None
    ok = False
    try:
        state = teststack.start(run_dir)
        yield state
        ok = True
    finally:
        if state is not None:
            teststack.stop(state)
        else:
            teststack.stop_run_dir(run_dir)
        if ok and not keep:
            shutil.rmtree(run_dir, ignore_errors=True)
        else:
            say(f"stack run dir kept for its logs: {run_dir}")


def api(state: StackState) -> kubeapi.KubeAPI:
    return stack_kube.api(state.kube)


def add_nodes(state: StackState, count: int) -> list[str]:
    names = [f"bench-node-{i}" for i in range(count)]
    with api(state).client() as c:
        for name in names:
            node = stack_kube.node_manifest(name, gpu=False)
            node["status"] = {"capacity": dict(BENCH_NODE_CAPACITY), "allocatable": dict(BENCH_NODE_CAPACITY)}
            node["metadata"]["labels"]["kubernetes.io/hostname"] = name
            kubeapi.create(c, "/api/v1/nodes", node, exist_ok=True)

        def ready() -> tuple[bool, str]:
            nodes = kubeapi.get(c, "/api/v1/nodes")["items"]
            up = {n["metadata"]["name"] for n in nodes
                  if any(x["type"] == "Ready" and x["status"] == "True" for x in n["status"].get("conditions", []))}
            return set(names) <= up, f"ready: {sorted(up)}"
        procs.wait_until(ready, timeout=60, what="bench nodes Ready")
    return names


def install_crd(state: StackState) -> None:
    kubectl = [f"{state.bin_dir}/kubectl", "--kubeconfig", state.kubeconfig]
    subprocess.run([*kubectl, "apply", "-f", str(CRD)], check=True, capture_output=True)
    subprocess.run([*kubectl, "wait", "--for", "condition=Established", "--timeout=60s",
                    "crd/colonyexecutors.colonyos.io"], check=True, capture_output=True)


def make_namespace(state: StackState, name: str) -> None:
    """A namespace with the colony key Secret the ColonyExecutors name."""
    with api(state).client() as c:
        kubeapi.create(c, "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}},
                       exist_ok=True)
        procs.wait_until(lambda: c.get(f"/api/v1/namespaces/{name}/serviceaccounts/default").status_code == 200,
                         timeout=60, what=f"the default ServiceAccount of {name}")
        kubeapi.create(c, f"/api/v1/namespaces/{name}/secrets", {
            "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "colony-key"},
            "stringData": {"colonyPrvKey": state.colonies.colony_prvkey}}, exist_ok=True)


def delete_namespaces(state: StackState, prefix: str, suffix: str, keep: str, timeout: float = 900) -> list[str]:
    """Delete the namespaces named `prefix`…`suffix` but `keep`, and wait until they are gone."""
    with api(state).client() as c:
        names = [n["metadata"]["name"] for n in c.get("/api/v1/namespaces").json().get("items") or []]
        doomed = [n for n in names if n.startswith(prefix) and n.endswith(suffix) and n != keep]
        for name in doomed:
            c.delete(f"/api/v1/namespaces/{name}")
        procs.wait_until(lambda: all(c.get(f"/api/v1/namespaces/{n}").status_code == 404 for n in doomed),
                         timeout=timeout, what=f"the deletion of {len(doomed)} namespaces")
    return doomed


def create_executor(state: StackState, namespace: str, name: str, executor_type: str, **spec: Any) -> None:
    body: dict[str, Any] = {"colonyName": state.colonies.colony_name, "executorType": executor_type,
                            "colonyKeySecretRef": {"name": "colony-key"}}
    body.update(spec)
    with api(state).client() as c:
        kubeapi.create(c, f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}", {
            "apiVersion": f"{GROUP}/{VERSION}", "kind": "ColonyExecutor", "metadata": {"name": name}, "spec": body})


def first_line_time(state: StackState, namespace: str, process_id: str) -> float | None:
    """When the process's container printed its first line (the runtime's own timestamp of it,
    from the pod log with timestamps), as a Unix time; None when its pod is gone."""
    with api(state).client() as c:
        pods = c.get(f"/api/v1/namespaces/{namespace}/pods",
                     params={"labelSelector": f"colonyos.io/process={process_id[:20]}"}).json().get("items") or []
        if not pods:
            return None
        r = c.get(f"/api/v1/namespaces/{namespace}/pods/{pods[0]['metadata']['name']}/log",
                  params={"timestamps": "true", "limitBytes": "4096"})
    if r.status_code != 200 or not r.text:
        return None
    stamp = r.text.split(" ", 1)[0]  # RFC 3339 with nanoseconds
    whole, _, frac = stamp.rstrip("Z").partition(".")
    return (datetime.datetime.fromisoformat(whole).replace(tzinfo=datetime.UTC).timestamp()
            + float(f"0.{frac or 0}"))


def executor_ready(state: StackState, namespace: str, name: str) -> bool:
    with api(state).client() as c:
        r = c.get(f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}/{name}")
        if r.status_code != 200:
            return False
        conds = (r.json().get("status") or {}).get("conditions") or []
        return any(x.get("type") == "Ready" and x.get("status") == "True" for x in conds)


INOTIFY_INSTANCES = Path("/proc/sys/fs/inotify/max_user_instances")


@contextlib.contextmanager
def inotify_instances(wanted: int) -> Iterator[str]:
    """kwok follows each log stream with one inotify instance; Linux allows 128 per user by
    default, past which kwok ends every new follow stream at once (and the operator reopens
    them, again and again). Raise the limit for the run when we may, and put it back after."""
    try:
        before = int(INOTIFY_INSTANCES.read_text())
    except (OSError, ValueError):
        yield "unknown"
        return
    if before >= wanted:
        yield f"{before} (unchanged)"
        return
    try:
        INOTIFY_INSTANCES.write_text(str(wanted))
    except OSError as exc:
        say(f"cannot raise fs.inotify.max_user_instances from {before} ({exc}): past ~120 running pods "
            "kwok ends log follow streams at once, and the operator reopens them")
        yield f"{before} (could not raise)"
        return
    say(f"fs.inotify.max_user_instances {before} → {wanted} for this run (kwok: one per log follow)")
    try:
        yield f"{wanted} (raised from {before}, restored after)"
    finally:
        try:
            INOTIFY_INSTANCES.write_text(str(before))
        except OSError:
            pass


# --- the operator as it ships ----------------------------------------------------------------

@dataclass
class Operator:
    proc: procs.Proc
    metrics_url: str
    health_url: str

    @property
    def pid(self) -> int:
        return self.proc.pid


def start_operator(state: StackState, namespaces: list[str], name: str, log_dir: Path) -> Operator:
    """`colonies-operator run` as a subprocess, once its liveness endpoint answers."""
    health, metrics = procs.free_port(), procs.free_port()
    argv = [sys.executable, "-m", "colonies_operator.cli", "run", "--log-level", "INFO",
            "--liveness", f"http://127.0.0.1:{health}/healthz", "--metrics-port", str(metrics)]
    for ns in namespaces:
        argv += ["--namespace", ns]
    env = state.env() | {"PYTHONPATH": f"{ROOT / 'operator'}{os.pathsep}{ROOT}", "PYTHONUNBUFFERED": "1"}
    proc = procs.start(name, argv, log_dir / f"{name}.log", env=env)
    op = Operator(proc, f"http://127.0.0.1:{metrics}/metrics", f"http://127.0.0.1:{health}/healthz")
    procs.wait_http(procs.HttpCheck(op.health_url), timeout=60, what=name, proc=proc)
    return op


# --- Prometheus text ---------------------------------------------------------------------------

_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)')
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


@dataclass
class Scrape:
    samples: list[tuple[str, dict[str, str], float]]
    at: float

    def total(self, name: str, **labels: str) -> float:
        return sum(v for n, l, v in self.samples if n == name and all(l.get(k) == x for k, x in labels.items()))

    def kube_requests(self, exclude_verbs: tuple[str, ...] = ("watch", "log")) -> float:
        return sum(v for n, l, v in self.samples
                   if n == "colonies_operator_kube_requests_total" and l.get("verb") not in exclude_verbs)

    def kube_by(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for n, l, v in self.samples:
            if n == "colonies_operator_kube_requests_total":
                key = f"{l.get('verb')} {l.get('resource')} {l.get('code')}"
                out[key] = out.get(key, 0) + v
        return out

    def buckets(self, name: str, **labels: str) -> list[tuple[float, float]]:
        """Cumulative buckets of a histogram, summed over the series matching `labels`."""
        out: dict[float, float] = {}
        for n, l, v in self.samples:
            if n == f"{name}_bucket" and all(l.get(k) == x for k, x in labels.items()):
                out[float(l["le"])] = out.get(float(l["le"]), 0.0) + v
        return sorted(out.items())


def scrape(url: str) -> Scrape:
    return parse_metrics(httpx.get(url, timeout=30).text)


def scrape_apiserver(state: StackState) -> Scrape:
    with api(state).client() as c:
        r = c.get("/metrics", timeout=30)
        r.raise_for_status()
        return parse_metrics(r.text)


def parse_metrics(text: str) -> Scrape:
    samples = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        if m:
            labels = dict(_LABEL.findall(m.group(2) or ""))
            samples.append((m.group(1), labels, float(m.group(3))))
    return Scrape(samples, time.time())


def histogram_delta(before: Scrape | None, after: Scrape, name: str) -> list[tuple[float, float]]:
    b = dict(before.buckets(name)) if before else {}
    return [(le, v - b.get(le, 0.0)) for le, v in after.buckets(name)]


def histogram_quantile(q: float, buckets: list[tuple[float, float]]) -> float | None:
    """Prometheus' histogram_quantile: linear interpolation inside the bucket holding rank q."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    total = buckets[-1][1]
    rank = q * total
    lower_le, lower_count = 0.0, 0.0
    for le, count in buckets:
        if count >= rank:
            if le == float("inf"):
                return lower_le  # above the highest finite bucket: its bound is all we know
            width = count - lower_count
            return lower_le + (le - lower_le) * ((rank - lower_count) / width if width else 1.0)
        lower_le, lower_count = le, count
    return lower_le


# --- CPU seconds per component -----------------------------------------------------------------

_TICKS = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> tuple[int, float, float] | None:
    """(ppid, own cpu seconds, reaped children's cpu seconds)"""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2:].split()
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / _TICKS, (int(fields[13]) + int(fields[14])) / _TICKS


def tree_cpu_seconds(root: int) -> float:
    """CPU seconds of a process, its live descendants, and the children it reaped."""
    table: dict[int, tuple[int, float, float]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = _stat(int(entry))
            if st:
                table[int(entry)] = st
    if root not in table:
        return 0.0
    children: dict[int, list[int]] = {}
    for pid, (ppid, _, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        _, own, reaped = table[pid]
        total += own + reaped
        todo += children.get(pid, [])
    return total


class CpuMeter:
    """CPU seconds used by each stack component (and extra named pids) between two marks."""

    def __init__(self, state: StackState) -> None:
        self.pids = {p.name: p.pid for p in state.procs}

    def track(self, name: str, pid: int) -> None:
        self.pids[name] = pid

    def forget(self, name: str) -> None:
        self.pids.pop(name, None)

    def sample(self) -> dict[str, float]:
        out = {name: tree_cpu_seconds(pid) for name, pid in self.pids.items()}
        st = _stat(os.getpid())
        out["bench (submitting, watching)"] = st[1] if st else 0.0
        return out

    @staticmethod
    def delta(before: Mapping[str, float], after: Mapping[str, float], seconds: float) -> dict[str, dict[str, float]]:
        """Per component: CPU seconds used and the average share of one core."""
        out = {}
        for name, value in after.items():
            used = max(0.0, value - before.get(name, 0.0))
            out[name] = {"cpu_seconds": round(used, 2), "cores": round(used / seconds, 3) if seconds > 0 else 0.0}
        return dict(sorted(out.items(), key=lambda kv: -kv[1]["cpu_seconds"]))


def rss_mib(pid: int) -> float:
    return procs.rss_kib(pid) / 1024

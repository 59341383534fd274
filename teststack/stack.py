"""Start, stop and check the whole test stack in one run directory.

`start` is idempotent: a healthy stack recorded in the run dir is reused as it is; a stale one
(dead pids, failed checks) is stopped and started anew. The Colonies branch (PostgreSQL, server,
colony, user) and the Kubernetes branch start in parallel, each component waited for in order.
Every process is recorded in `<run>/procs.jsonl` the moment it starts, so `stop` can clean up
even after a start that died half way.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path

from teststack import build, colonies_server, kube, postgres, procs, progress, realnode, seaweedfs
from teststack.state import PROCS_FILE, STATE_FILE, StackState, load_state, record_proc, recorded_procs, save

__all__ = ["StackState", "load_state", "start", "stop", "stop_run_dir", "status", "healthy"]

STEPS = ("postgres", "colonies-server", "seaweedfs (S3)", "etcd", "kube-apiserver", "kube-controller-manager",
         "kube-scheduler", "kwok", "podlogs", "nodes", *realnode.STEPS)
# What start creates in a run dir, removed before a fresh start (never the run dir itself).
_PRODUCTS = (STATE_FILE, PROCS_FILE, "pg", "colonies-etcd", "etcd", "pki", "kubeconfig", "kwok.yaml",
             "podlogs", "apiserver-certs", "logs", "audit", "seaweedfs", realnode.BASE)
REAL_NODE_PROCS = ("relay", "containerd", "kubelet", "kube-proxy")


def status(state: StackState) -> dict[str, tuple[bool, str]]:
    """Per component, in start order: (healthy, detail)."""
    out: dict[str, tuple[bool, str]] = {}
    kube_procs = tuple(p for p in state.procs
                       if p.name not in ("postgres", "colonies-server", "seaweedfs", *REAL_NODE_PROCS))
    kube_health = kube.health(state.kube, kube_procs)
    if state.real_node is not None:
        node_procs = tuple(p for p in state.procs if p.name in REAL_NODE_PROCS)
        kube_health |= realnode.health(state.real_node, node_procs, state.kube)
    for p in state.procs:
        if p.name == "postgres":
            out[p.name] = postgres.is_ready(state.postgres) if procs.alive(p) else (False, f"pid {p.pid} not running")
        elif p.name == "colonies-server":
            c = state.colonies
            out[p.name] = (colonies_server.health_check(c.host, c.port).ok() if procs.alive(p)
                           else (False, f"pid {p.pid} not running"))
        elif p.name == "seaweedfs" and state.s3 is not None:
            out[p.name] = seaweedfs.ready(state.s3) if procs.alive(p) else (False, f"pid {p.pid} not running")
        else:
            out[p.name] = kube_health[p.name]
    return out


def healthy(state: StackState) -> bool:
    return all(ok for ok, _ in status(state).values())


def stop(state: StackState) -> None:
    """Stop every recorded process in reverse start order. Safe to call twice.

    Also stops what the run dir records since `state` was taken (a restarted server or
    apiserver has a new pid: restart_* append it to procs.jsonl and state.json).
    """
    current = load_state(state.run_dir)
    _stop_all(list(state.procs) + (list(current.procs) if current else []) + recorded_procs(Path(state.run_dir)))
    realnode.cleanup(Path(state.run_dir))


def stop_run_dir(run_dir: Path | str) -> int:
    """Stop whatever the run dir records (state.json and/or procs.jsonl); return how many ran."""
    run = Path(run_dir)
    st = load_state(run)
    found = (list(st.procs) if st else []) + recorded_procs(run)
    running = sum(1 for p in {(p.pid, p.start_ticks): p for p in found}.values() if procs.alive(p))
    _stop_all(found)
    realnode.cleanup(run)
    return running


def _stop_all(found: list[procs.Proc]) -> None:
    seen: set[tuple[int, int]] = set()
    order: list[procs.Proc] = []
    for p in found:  # a restarted process has a new (pid, start) pair: keep both, dedupe exact ones
        if (p.pid, p.start_ticks) not in seen:
            seen.add((p.pid, p.start_ticks))
            order.append(p)
    for p in reversed(order):
        procs.stop(p)


def _clean(run: Path) -> None:
    stop_run_dir(run)
    for name in _PRODUCTS:
        path = run / name
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        elif path.exists():
            path.unlink()


class _Progress:
    """Numbered progress lines shared by the two start branches."""

    def __init__(self) -> None:
        self.done = 0
        self.lock = threading.Lock()

    def step(self, label: str, action: Callable[[], float]) -> None:
        progress.say(f"[stack] {label} ...")
        took = action()
        with self.lock:
            self.done += 1
            progress.say(f"[stack {self.done}/{len(STEPS)}] {label} ready in {took:.1f}s")


def _no_proxy_for_loopback() -> None:
    """Never send loopback traffic (ours, and that of every child we start) through a proxy."""
    for var in ("NO_PROXY", "no_proxy"):
        have = [h for h in os.environ.get(var, "").split(",") if h]
        os.environ[var] = ",".join(dict.fromkeys([*have, "127.0.0.1", "localhost", "::1"]))


INOTIFY_INSTANCES = Path("/proc/sys/fs/inotify/max_user_instances")
INOTIFY_WANTED = 1024


def _enough_inotify_instances() -> None:
    """kwok follows each pod's log with an inotify instance of its own, and the kernel's default
    of 128 per user runs out with a few hundred pods (kwok then writes "failed to create
    fsnotify watcher: too many open files" into the pod's log): raise it, as root, if lower."""
    try:
        have = int(INOTIFY_INSTANCES.read_text())
        if have < INOTIFY_WANTED:
            INOTIFY_INSTANCES.write_text(str(INOTIFY_WANTED))
            progress.say(f"[stack] fs.inotify.max_user_instances {have} -> {INOTIFY_WANTED} (kwok's log follows)")
    except OSError as exc:
        progress.say(f"[stack] fs.inotify.max_user_instances left as it is: {exc}")


def start(run_dir: Path | str) -> StackState:
    """Build what is missing, then start the stack in `run_dir` (or reuse the healthy one there)."""
    _no_proxy_for_loopback()
    _enough_inotify_instances()
    run = Path(run_dir).resolve()
    run.mkdir(parents=True, exist_ok=True)
    realnode.ensure_installed()  # before the build: the busybox image is made from busybox-static
    bin_dir = build.ensure_built()
    postgres.ensure_installed()
    existing = load_state(run)
    if existing is not None:
        if (existing.bin_dir == str(bin_dir) and existing.real_node is not None and existing.s3 is not None
                and healthy(existing)):
            progress.say(f"[stack] reusing the healthy stack in {run}")
            return existing
        progress.say(f"[stack] the stack recorded in {run} is not healthy (or has other versions): "
                     "stopping it and starting anew")
    _clean(run)
    (run / "logs").mkdir(exist_ok=True)
    began = time.monotonic()
    prog = _Progress()
    lock = threading.Lock()

    def on_proc(p: procs.Proc) -> None:
        with lock:
            record_proc(run, p)

    col: dict = {}

    def colonies_branch() -> None:
        try:
            def pg_action() -> float:
                t = time.monotonic()
                col["pg_proc"], col["pg"] = postgres.start(run)
                on_proc(col["pg_proc"])
                return time.monotonic() - t
            prog.step("postgres", pg_action)

            def col_action() -> float:
                t = time.monotonic()
                col["proc"], col["info"] = colonies_server.start(run, col["pg"])
                on_proc(col["proc"])
                return time.monotonic() - t
            prog.step("colonies-server", col_action)

            def s3_action() -> float:
                t = time.monotonic()
                col["s3_proc"], col["s3"] = seaweedfs.start(run)
                on_proc(col["s3_proc"])
                return time.monotonic() - t
            prog.step("seaweedfs (S3)", s3_action)
        except BaseException as e:  # reported by the main thread
            col["error"] = e

    t = threading.Thread(target=colonies_branch, name="colonies-branch", daemon=True)
    t.start()
    try:
        kube_procs, kube_info = kube.start(run, prog.step, on_proc)
        t.join()
        if "error" in col:
            raise col["error"]
        node_procs, node_info = realnode.start(run, kube_info, col["info"].port, prog.step, on_proc,
                                               relayed=(col["s3"].port,))
    except BaseException:
        t.join(timeout=120)
        progress.say(f"[stack] start failed: stopping what was started (logs in {run / 'logs'})")
        stop_run_dir(run)
        raise
    state = StackState(run_dir=str(run), bin_dir=str(bin_dir),
                       procs=(col["pg_proc"], col["proc"], col["s3_proc"], *kube_procs, *node_procs),
                       postgres=col["pg"], colonies=col["info"], kube=kube_info, real_node=node_info,
                       s3=col["s3"])
    save(state)
    progress.say(f"[stack] all {len(state.procs)} processes healthy in {time.monotonic() - began:.1f}s; "
                 f"state in {run / STATE_FILE}")
    return state

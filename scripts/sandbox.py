"""The local sandbox: the test stack, the CRD, the operator, an example ColonyExecutor, and a
hello-world funcspec run end to end. Idempotent: what already runs is reused.

    python3 scripts/sandbox.py [start [--kwok]|stop|status|env]

The example ColonyExecutor runs its Jobs on the stack's real node (a kubelet with containerd:
"hello world" is printed by a real busybox `echo`); with `--kwok`, on the kwok nodes, which
only pretend to run containers.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "operator")]

from teststack import procs, stack  # noqa: E402
from teststack.__main__ import default_run_dir  # noqa: E402
from teststack.progress import say  # noqa: E402
from teststack.state import record_proc  # noqa: E402

NAMESPACE = "sandbox"
OPERATOR_STATE = "operator.json"


def kubectl(state, *args: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run([f"{state.bin_dir}/kubectl", "--kubeconfig", state.kubeconfig, *args], input=stdin,
                          text=True, capture_output=True, check=check)


def ensure_operator(state, run: Path) -> procs.Proc:
    path = run / OPERATOR_STATE
    if path.exists():
        proc = procs.Proc.from_json(json.loads(path.read_text()))
        if procs.alive(proc):
            say(f"[sandbox] operator already running (pid {proc.pid})")
            return proc
    port = procs.free_port()
    env = state.env() | {"PYTHONUNBUFFERED": "1"}
    proc = procs.start("operator", [sys.executable, "-m", "colonies_operator.cli", "run", "--namespace", NAMESPACE,
                                    "--liveness", f"http://127.0.0.1:{port}/healthz"],
                       run / "logs" / "operator.log", env=env)
    record_proc(run, proc)  # `stop` stops it with the rest of the stack
    path.write_text(json.dumps(proc.to_json()))
    procs.wait_http(procs.HttpCheck(f"http://127.0.0.1:{port}/healthz"), timeout=60, what="the operator", proc=proc)
    say(f"[sandbox] operator running (pid {proc.pid}); log: {run / 'logs' / 'operator.log'}")
    return proc


def wait_ready(state) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        out = kubectl(state, "-n", NAMESPACE, "get", "colonyexecutor", "k8s", "-o",
                      "jsonpath={.status.conditions[?(@.type=='Ready')].status} "
                      "{.status.conditions[?(@.type=='Ready')].message}", check=False).stdout
        if out.startswith("True"):
            return
        time.sleep(0.5)
    raise SystemExit(f"the ColonyExecutor did not become Ready: {out}\n"
                     + kubectl(state, "-n", NAMESPACE, "describe", "colonyexecutor", "k8s", check=False).stdout)


def on_the_real_node(state) -> dict:
    """The example's jobTemplate, plus what takes its pods to the real node (its label and taint)."""
    node = state.real_node
    return {"spec": {"jobTemplate": {"nodeSelector": node.node_selector, "tolerations": [node.toleration]}}}


def start(run: Path, real_node: bool = True) -> int:
    state = stack.start(run)
    say("[sandbox] installing the CRD and the example ColonyExecutor")
    kubectl(state, "apply", "-f", str(ROOT / "crds" / "colonyexecutor.yaml"))
    kubectl(state, "wait", "--for", "condition=Established", "--timeout=60s", "crd/colonyexecutors.colonyos.io")
    kubectl(state, "apply", "-f", "-", stdin=json.dumps(
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}))
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "colony-key", "namespace": NAMESPACE},
              "stringData": {"colonyPrvKey": state.colonies.colony_prvkey}}
    kubectl(state, "apply", "-f", "-", stdin=json.dumps(secret))
    kubectl(state, "-n", NAMESPACE, "apply", "-f", str(ROOT / "examples" / "colonyexecutor.yaml"))
    where = on_the_real_node(state) if real_node else {"spec": {"jobTemplate": None}}
    kubectl(state, "-n", NAMESPACE, "patch", "colonyexecutor", "k8s", "--type", "merge", "-p", json.dumps(where))
    say(f"[sandbox] the example ColonyExecutor runs its Jobs on "
        f"{'the real node ' + state.real_node.name if real_node else 'the kwok nodes'}")
    ensure_operator(state, run)
    wait_ready(state)
    print(kubectl(state, "-n", NAMESPACE, "get", "colonyexecutors").stdout, flush=True)
    say("[sandbox] running examples/hello.json through Colonies and the operator")
    env = os.environ | state.env()
    rc = subprocess.run([sys.executable, str(ROOT / "scripts" / "run_funcspec.py"),
                         str(ROOT / "examples" / "hello.json")], env=env).returncode
    print(f"\nthe sandbox keeps running. Use it from a shell:\n"
          f'  eval "$(scripts/sandbox env)"\n'
          f"  kubectl -n {NAMESPACE} get colonyexecutors,jobs,pods\n"
          f"  python3 scripts/run_funcspec.py examples/hello.json\n"
          f"stop it with: scripts/sandbox stop")
    return rc


def main(argv: list[str]) -> int:
    command = argv[0] if argv else "start"
    run = default_run_dir().resolve()
    if command == "start":
        return start(run, real_node="--kwok" not in argv[1:])
    if command == "stop":
        print(f"stopped {stack.stop_run_dir(run)} process(es)")
        return 0
    if command in ("status", "env"):
        from teststack.__main__ import main as teststack_main
        return teststack_main([command, "--run-dir", str(run)])
    print("usage: scripts/sandbox [start [--kwok]|stop|status|env]", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

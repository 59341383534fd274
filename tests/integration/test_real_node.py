"""On the stack's real node (a kubelet 1.37 with containerd and runc, teststack/realnode.py) the
operator's processes run as real containers: what Colonies gets back is what busybox printed,
exited with and wrote to /dev/termination-log. Nothing here is scripted by the stack.

The ColonyExecutor (`real_executor`, tests/fixtures/operator.py) targets the node through its
`jobTemplate`: the node's label as a nodeSelector and a toleration of its taint (which keeps
every other test's pods off it).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from colonies_operator.colonies.models import ProcessState
from kubernetes_asyncio import client

from tests.fixtures.operator import Executor
from tests.helpers import fresh_stack
from teststack import cgroups, hostnet, kube, kubelet, procs, realnode, versions
from teststack.state import StackState, recorded_procs

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]

TIMEOUT = 120  # the first pod on a fresh node also creates its sandbox


async def only_pod(ex: Executor) -> client.V1Pod:
    """The one pod of the test's namespace (one process per test)."""
    [pod] = (await client.CoreV1Api(ex.api).list_namespaced_pod(ex.namespace)).items
    return pod


async def run(ex: Executor, cmd: str, **conditions: object):
    process = await ex.submit(kwargs={"docker-image": "busybox:1.36", "cmd": cmd},
                              conditions={"cpu": "100m", "mem": "64Mi", **conditions})
    return process.processid, await ex.final(process.processid, timeout=TIMEOUT)


async def test_hello_world_is_echoed_by_busybox_on_the_real_node_and_arrives_once(real_executor, stack):
    ex = real_executor
    process = await ex.submit(kwargs={"docker-image": "busybox:1.36", "cmd": "echo", "args": ["hello", "world"]})
    done = await ex.final(process.processid, timeout=TIMEOUT)
    assert done.state is ProcessState.SUCCESS, done.errors
    assert await ex.log_lines(process.processid) == ["hello world"]
    pod = await only_pod(ex)
    assert pod.spec.node_name == stack.real_node.name
    [status] = pod.status.container_statuses
    assert status.image == versions.BUSYBOX_IMAGE and status.state.terminated.exit_code == 0
    # the image was there, not pulled (busybox:1.36 defaults to IfNotPresent; no registry is reachable)
    assert pod.spec.containers[0].image_pull_policy == "IfNotPresent"
    events = (await client.CoreV1Api(ex.api).list_namespaced_event(ex.namespace)).items
    pulls = [(e.reason, e.message) for e in events if e.involved_object.name == pod.metadata.name
             and e.reason in ("Pulling", "Pulled", "Failed", "ErrImagePull")]
    assert len(pulls) == 1 and pulls[0][0] == "Pulled" and "already present on machine" in pulls[0][1], pulls


async def test_what_the_container_writes_to_its_termination_log_is_the_output(real_executor):
    process_id, done = await run(real_executor, """printf '{"answer": 42}' > /dev/termination-log""")
    assert done.state is ProcessState.SUCCESS, done.errors
    assert done.output == ('{"answer": 42}',)  # objects go as their JSON text


async def failed(ex: Executor, cmd: str, error: str, **conditions: object
                 ) -> tuple[str, client.V1ContainerStateTerminated | None]:
    """Run `cmd`; it must fail with an error starting `error`. Returns the process id and how
    the container ended, as the kubelet reported it (None while it has not ended yet)."""
    process_id, done = await run(ex, cmd, **conditions)
    assert done.state is ProcessState.FAILED
    assert done.errors[0].startswith(error), done.errors
    pods = (await client.CoreV1Api(ex.api).list_namespaced_pod(ex.namespace)).items
    return process_id, pods[0].status.container_statuses[0].state.terminated if pods else None


async def test_exit_3_fails_with_the_exit_code_and_the_last_log_lines(real_executor):
    process_id, terminated = await failed(real_executor, "echo starting; echo 'boom: disk full'; exit 3", "ExitCode(3)")
    assert terminated.exit_code == 3 and "boom: disk full" in terminated.message
    assert await real_executor.log_lines(process_id) == ["starting", "boom: disk full"]


async def test_a_sigkill_passed_on_as_the_exit_status_fails_with_exit_code_137_not_oomkilled(real_executor):
    # Not `kill -9 $$` in the main shell: it is PID 1 of the container's pid namespace, and the
    # kernel drops a SIGKILL that PID 1 gets from its own namespace (the process SUCCEEDs). Nor a
    # trailing `sh -c 'kill -9 $$'`: busybox sh execs a -c script's last command, again as PID 1.
    _, terminated = await failed(real_executor, "echo going; sh -c 'kill -9 $$'; exit $?", "ExitCode(137)")
    assert (terminated.exit_code, terminated.reason) == (137, "Error")


async def test_a_real_allocation_over_the_memory_limit_is_oomkilled(real_executor):
    # dd's buffer is one 256 MiB allocation that reading /dev/zero fills: over the 64Mi limit
    _, terminated = await failed(real_executor, "echo allocating; dd if=/dev/zero of=/dev/null bs=256M count=1",
                                 "OOMKilled(limit 64Mi)")
    assert (terminated.exit_code, terminated.reason) == (137, "OOMKilled")


def sysctl(name: str, root: str = "/") -> str:
    return Path(root, "proc/sys", name).read_text().strip()


def test_the_kubelet_sees_the_sysctls_it_wants_and_the_machine_keeps_its_own(stack):
    recorded = json.loads((Path(stack.real_node.base_dir) / realnode.HOST_RECORD).read_text())["machine_sysctls"]
    kubelet_root = f"/proc/{stack.pids['kubelet']}/root"  # the kubelet's mount namespace
    for name, wanted in kubelet.SYSCTLS.items():
        assert sysctl(name, kubelet_root) == wanted
        assert sysctl(name) == recorded[name], name  # as before the kubelet started


def footprint(state: StackState) -> dict[str, object]:
    """What a stack's real node holds on the machine."""
    node = state.real_node
    assert node is not None
    slot = hostnet.Slot(node.slot)
    routes = subprocess.run(["ip", "route", "show", node.subnet], capture_output=True, text=True).stdout
    return {"link": slot.link in hostnet.our_links(), "cgroup pids": cgroups.pids(slot.cgroup),
            "mounts": realnode.mounts_under(Path(node.base_dir)), "route": slot.link in routes}


def test_a_second_stack_gets_a_node_of_its_own_and_its_stop_removes_it_and_nothing_else(stack, request):
    forwarding = sysctl("net/ipv4/ip_forward")
    with fresh_stack(request) as other:
        mine, theirs = stack.real_node, other.real_node
        assert theirs.slot != mine.slot and theirs.subnet != mine.subnet and theirs.link != mine.link
        assert theirs.containerd_socket != mine.containerd_socket and theirs.netns != mine.netns
        assert realnode.node_ready(kube.api(other.kube))[0] and realnode.node_ready(kube.api(stack.kube))[0]
        held = footprint(other)
        assert held["link"] and held["cgroup pids"] and held["mounts"] and held["route"]
        assert str(Path(theirs.netns)) in held["mounts"]
    gone = footprint(other)
    assert gone == {"link": False, "cgroup pids": set(), "mounts": [], "route": False}
    assert not any((h / theirs.link).exists() for h in cgroups.hierarchies())
    # the session's node is untouched, and the machine's own forwarding setting never changed
    assert footprint(stack)["link"] and sysctl("net/ipv4/ip_forward") == forwarding
    assert realnode.node_ready(kube.api(stack.kube))[0]


async def test_a_sleep_past_its_walltime_fails_with_deadline_exceeded(real_executor):
    await failed(real_executor, "echo sleeping; sleep 60", "DeadlineExceeded(walltime 5s)", walltime=5)


async def test_an_image_that_is_not_there_fails_with_image_pull_failed_and_no_pull_leaves_the_machine(
        real_executor, stack):
    ex = real_executor
    process = await ex.submit(kwargs={"docker-image": "unpullable.invalid/nothing:1", "cmd": "true"})
    done = await ex.final(process.processid, timeout=TIMEOUT)
    assert done.state is ProcessState.FAILED
    assert done.errors[0].startswith("ImagePullFailed(unpullable.invalid/nothing:1"), done.errors
    # containerd's resolver asked 127.0.0.1 (teststack/containerd.py), never the machine's nameserver
    log = Path(stack.proc("containerd").log).read_text(errors="replace")
    lookups = [line for line in log.splitlines() if "lookup unpullable.invalid" in line]
    assert lookups and all("on 127.0.0.1:53" in line for line in lookups), lookups[:3]


async def test_a_command_that_does_not_exist_fails_with_container_cannot_run(real_executor):
    ex = real_executor
    process = await ex.submit(kwargs={"docker-image": "busybox:1.36", "command": ["/no/such/program"], "args": []})
    done = await ex.final(process.processid, timeout=TIMEOUT)
    assert done.state is ProcessState.FAILED
    assert done.errors[0].startswith("ContainerCannotRun("), done.errors
    assert "/no/such/program" in done.errors[0]


def test_the_sandbox_runs_hello_world_on_the_real_node_and_says_so():
    """`scripts/sandbox` as the README gives it, in a run dir of its own: a stack, the operator,
    the example ColonyExecutor, and examples/hello.json echoed by a real busybox."""
    run_dir = Path(tempfile.mkdtemp(prefix="colonies-sandbox-"))  # short: containerd's socket lives there
    env = os.environ | {"COLONIES_SANDBOX_DIR": str(run_dir)}
    sandbox = [sys.executable, str(ROOT / "scripts" / "sandbox.py")]
    try:
        out = subprocess.run([*sandbox, "start"], env=env, capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stdout + out.stderr
        logs = out.stdout.split("--- logs (from Colonies) ---\n", 1)[1].split("--- result ---", 1)[0]
        assert logs == "hello world\n"
        assert "state:  SUCCESS" in out.stdout and f"ran on: {kubelet.NODE_NAME}\n" in out.stdout, out.stdout
    finally:
        subprocess.run([*sandbox, "stop"], env=env, capture_output=True, timeout=120)
    assert not stack_procs_alive(run_dir)
    shutil.rmtree(run_dir, ignore_errors=True)


def stack_procs_alive(run_dir: Path) -> list[str]:
    return [p.name for p in recorded_procs(run_dir) if procs.alive(p)]

"""Installing the operator as a cluster admin would, against a real apiserver with the RBAC
authorizer on: the Helm chart (install, `helm test`, uninstall), `kubectl apply -k deploy/`,
and the chart's RBAC as the only credentials of a real operator running hello world. The image
itself is built and run in test_image.py.

These tests get a stack of their own (it starts in seconds): the chart and the kustomization
create and delete the cluster-scoped ColonyExecutor CRD, and deleting it would delete the
other tests' ColonyExecutors from under the operator they share."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
import yaml
from colonies_operator.colonies.models import ProcessState
from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.api_client import ApiClient
from kubernetes_asyncio.client.exceptions import ApiException

from tests.fixtures.colonies import Colonies, open_colonies
from tests.fixtures.operator import (
    GROUP,
    PLURAL,
    VERSION,
    import_operator_image,
    running_operator,
    start_executor,
)
from tests.helpers import fresh_stack, wait_for
from teststack import images_operator
from teststack.state import StackState

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "colonies-operator"
DEPLOY = ROOT / "deploy"
RELEASE = "colonies-operator"  # the release name is the chart name: objects are called "colonies-operator"
CRD_NAME = "colonyexecutors.colonyos.io"
INSTALLED = ("serviceaccount", "role", "rolebinding", "deployment", "service")


@pytest.fixture(scope="module")
def stack(request: pytest.FixtureRequest) -> Iterator[StackState]:
    """This module's own stack (see the module docstring); `api` and `namespace` use it too."""
    with fresh_stack(request) as state:
        yield state


@pytest_asyncio.fixture(scope="module")
async def colonies(stack) -> AsyncIterator[Colonies]:
    async with open_colonies(stack) as clients:
        yield clients


def tool(stack: StackState, name: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """kubectl or helm from the stack's binaries, as the cluster admin; helm keeps its state in the run dir."""
    helm_home = Path(stack.run_dir) / "helm"
    env = os.environ | stack.env() | {f"HELM_{kind}_HOME": str(helm_home / kind.lower())
                                      for kind in ("CACHE", "CONFIG", "DATA")}
    result = subprocess.run([str(Path(stack.bin_dir) / name), *args], capture_output=True, text=True, env=env,
                            timeout=180)
    if check:
        assert result.returncode == 0, f"{name} {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result


def kubectl(stack: StackState, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return tool(stack, "kubectl", *args, check=check)


def helm(stack: StackState, *args: str) -> subprocess.CompletedProcess[str]:
    return tool(stack, "helm", *args)


def found(stack: StackState, *args: str) -> bool:
    return bool(kubectl(stack, "get", *args, "--ignore-not-found", "-o", "name").stdout.strip())


def install_chart(stack: StackState, namespace: str, values: dict | None = None) -> str:
    """helm install with the stack's Colonies server as the operator-wide default (`values`
    override it: `--set` would win over any values file); the NOTES."""
    c = stack.colonies
    merged = {"colonies": {"host": c.host, "port": c.port, "colonyName": c.colony_name}}
    for key, value in (values or {}).items():
        merged[key] = merged.get(key, {}) | value if isinstance(value, dict) else value
    path = Path(stack.run_dir) / f"values-{namespace}.yaml"
    path.write_text(yaml.safe_dump(merged))
    return helm(stack, "install", RELEASE, str(CHART), "-n", namespace, "-f", str(path)).stdout


@pytest.fixture(scope="module")
def operator_image(stack, request) -> images_operator.OperatorImage:
    """The image on this module's own stack's real node."""
    return import_operator_image(stack, request)


def on_the_real_node(stack: StackState, image: images_operator.OperatorImage) -> dict:
    """Chart values that run the operator (and `helm test`) from `image` on the real node,
    talking to Colonies at the address the stack gives pods."""
    node = stack.real_node
    repository, tag = image.name.rsplit(":", 1)
    host, port = node.colonies_url.removeprefix("http://").rsplit(":", 1)
    return {"image": {"repository": repository, "tag": tag, "pullPolicy": "Never"},
            "nodeSelector": node.node_selector, "tolerations": [node.toleration],
            "colonies": {"host": host, "port": int(port)}}


# --- kubectl apply -k deploy/ ---------------------------------------------------------------

def test_kubectl_apply_k_deploy_installs_the_operator_and_delete_k_removes_it(stack):
    applied = kubectl(stack, "apply", "-k", str(DEPLOY)).stdout
    for obj in ("namespace/colonies-operator", f"customresourcedefinition.apiextensions.k8s.io/{CRD_NAME}",
                "serviceaccount/colonies-operator", "role.rbac.authorization.k8s.io/colonies-operator",
                "rolebinding.rbac.authorization.k8s.io/colonies-operator", "service/colonies-operator",
                "deployment.apps/colonies-operator"):
        assert obj in applied, applied
    kubectl(stack, "wait", "--for=condition=Established", "--timeout=60s", f"crd/{CRD_NAME}")
    # kwok runs the pod (it never pulls the image): the Deployment's spec is accepted and scheduled.
    kubectl(stack, "-n", "colonies-operator", "rollout", "status", "deployment/colonies-operator", "--timeout=60s")

    kubectl(stack, "delete", "-k", str(DEPLOY), "--wait", "--timeout=120s")
    assert not found(stack, "namespace", "colonies-operator")
    assert not found(stack, "crd", CRD_NAME)


# --- helm install / test / uninstall --------------------------------------------------------

async def test_helm_install_runs_the_operator_as_a_pod_on_the_real_node_and_helm_test_asks_it_through_the_service(
        stack, api, namespace, colonies, operator_image):
    # This stack is the module's own: start as a new cluster would, without the CRD.
    kubectl(stack, "delete", "crd", CRD_NAME, "--ignore-not-found", "--wait", "--timeout=60s")

    notes = install_chart(stack, namespace, on_the_real_node(stack, operator_image))
    assert "STATUS: deployed" in notes
    assert f"kubectl -n {namespace} create secret generic colony-key" in notes
    kubectl(stack, "wait", "--for=condition=Established", "--timeout=60s", f"crd/{CRD_NAME}")
    for kind in INSTALLED:
        assert found(stack, "-n", namespace, kind, RELEASE), f"{kind} {RELEASE} was not created"
    deployment = kubectl(stack, "-n", namespace, "get", "deployment", RELEASE, "-o", "json").stdout
    assert stack.colonies.colony_prvkey not in deployment  # keys reach the operator only through Secrets
    [container] = json.loads(deployment)["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["COLONIES_COLONY_NAME"] == stack.colonies.colony_name
    # Ready: the operator started in its image, read its settings and answered its readiness probe
    kubectl(stack, "-n", namespace, "rollout", "status", f"deployment/{RELEASE}", "--timeout=180s")
    [pod] = json.loads(kubectl(stack, "-n", namespace, "get", "pods", "-l", "app.kubernetes.io/name=colonies-operator",
                               "-o", "json").stdout)["items"]
    assert pod["spec"]["nodeName"] == stack.real_node.name
    assert pod["status"]["containerStatuses"][0]["imageID"], "no image ran"

    # The hook pod runs busybox's wget on the real node against the Service: kube-proxy sends it
    # to the operator's pod, whose health endpoint answers.
    tested = helm(stack, "test", RELEASE, "-n", namespace, "--timeout", "120s").stdout
    assert re.search(rf"TEST SUITE:\s+{RELEASE}-test-health", tested) and "Phase:          Succeeded" in tested, tested

    # The operator in its pod reaches the apiserver through the in-cluster config (the
    # `kubernetes` Service) and Colonies, and runs hello world on the real node.
    node = stack.real_node
    ex = await start_executor(api, colonies, namespace, stack,
                              jobTemplate={"nodeSelector": node.node_selector, "tolerations": [node.toleration]})
    process = await ex.submit(kwargs={"docker-image": "busybox:1.36", "cmd": "echo", "args": ["hello", "world"]})
    done = await ex.final(process.processid, timeout=120)
    assert done.state is ProcessState.SUCCESS, done.errors
    assert await ex.log_lines(process.processid) == ["hello world"]
    logs = kubectl(stack, "-n", namespace, "logs", f"deployment/{RELEASE}").stdout
    assert "Read-only file system" not in logs and "forbidden" not in logs.lower(), logs[-3000:]

    await client.CustomObjectsApi(api).delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, ex.name)
    kubectl(stack, "-n", namespace, "wait", "--for=delete", f"colonyexecutor/{ex.name}", "--timeout=120s")
    helm(stack, "uninstall", RELEASE, "-n", namespace, "--wait", "--timeout", "60s")
    for kind in INSTALLED:
        assert not found(stack, "-n", namespace, kind, RELEASE), f"{kind} {RELEASE} is still there"
    assert found(stack, "crd", CRD_NAME)  # Helm never deletes what crds/ installed


def lease_holder(stack: StackState, namespace: str) -> str:
    """The pod whose replica holds the chart's Lease ("" when none does)."""
    leases = json.loads(kubectl(stack, "-n", namespace, "get", "leases", "-o", "json").stdout)["items"]
    holders = [(lease["spec"].get("holderIdentity") or "") for lease in leases]
    assert len(holders) == 1, leases
    return holders[0].rsplit("_", 1)[0]  # "<pod name>_<12 hex>"


async def test_two_replicas_on_the_real_node_one_serves_and_the_other_takes_over_when_its_pod_is_deleted(
        stack, api, namespace, colonies, operator_image):
    install_chart(stack, namespace, {**on_the_real_node(stack, operator_image), "replicaCount": 2})
    kubectl(stack, "-n", namespace, "rollout", "status", f"deployment/{RELEASE}", "--timeout=180s")
    pdb = json.loads(kubectl(stack, "-n", namespace, "get", "pdb", RELEASE, "-o", "json").stdout)
    assert pdb["spec"]["maxUnavailable"] == 1
    pods = json.loads(kubectl(stack, "-n", namespace, "get", "pods", "-l", "app.kubernetes.io/name=colonies-operator",
                              "-o", "json").stdout)["items"]
    assert len(pods) == 2 and all(p["spec"]["nodeName"] == stack.real_node.name for p in pods)
    leader = await wait_for(lambda: lease_holder(stack, namespace) or None, 60, "a replica to hold the Lease",
                            interval=0.5)
    assert leader in {p["metadata"]["name"] for p in pods}

    node = stack.real_node
    ex = await start_executor(api, colonies, namespace, stack,
                              jobTemplate={"nodeSelector": node.node_selector, "tolerations": [node.toleration]})
    program = "for i in $(seq 1 15); do echo line $i; sleep 1; done"
    process = await ex.submit(kwargs={"docker-image": "busybox:1.36", "cmd": program})

    async def logging() -> bool:
        return len(await ex.log_lines(process.processid)) >= 3
    await wait_for(logging, 120, "the process to be running and logging")
    # What a node drain or `kubectl delete pod` does to the leader: SIGTERM, then it is gone.
    kubectl(stack, "-n", namespace, "delete", "pod", leader, "--wait=false")

    async def new_leader() -> str | None:
        holder = lease_holder(stack, namespace)
        return holder if holder and holder != leader else None
    # The standby, or the pod that replaces the leader if it asks first after the release: both
    # have been seen to win that race on the real node.
    await wait_for(new_leader, 60, "another replica to take the Lease", interval=0.5)
    done = await ex.final(process.processid, timeout=120)
    assert done.state is ProcessState.SUCCESS, done.errors
    assert await ex.log_lines(process.processid) == [f"line {i}" for i in range(1, 16)]
    assert len(await ex.jobs()) == 1  # re-adopted, never run again

    await client.CustomObjectsApi(api).delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, ex.name)
    kubectl(stack, "-n", namespace, "wait", "--for=delete", f"colonyexecutor/{ex.name}", "--timeout=120s")
    helm(stack, "uninstall", RELEASE, "-n", namespace, "--wait", "--timeout", "60s")


# --- RBAC: the chart's ServiceAccount is all the operator has -------------------------------

def token_kubeconfig(stack: StackState, namespace: str, path: Path) -> Path:
    """A kubeconfig holding a TokenRequest token of the chart's ServiceAccount, and the stack's CA."""
    token = kubectl(stack, "create", "token", RELEASE, "-n", namespace, "--duration=1h").stdout.strip()
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "operator",
        "clusters": [{"name": "stack", "cluster": {"server": stack.kube.api_url,
                                                   "certificate-authority": stack.kube.ca_cert}}],
        "users": [{"name": "operator", "user": {"token": token}}],
        "contexts": [{"name": "operator", "context": {"cluster": "stack", "user": "operator", "namespace": namespace}}],
    }))
    return path


async def api_from(kubeconfig: Path) -> ApiClient:
    configuration = client.Configuration()
    await config.load_kube_config(config_file=str(kubeconfig), client_configuration=configuration)
    return ApiClient(configuration)


def check(stack: StackState, kubeconfig: Path, namespace: str) -> subprocess.CompletedProcess[str]:
    env = os.environ | stack.env() | {"KUBECONFIG": str(kubeconfig), "PYTHONPATH": f"{ROOT / 'operator'}"}
    return subprocess.run([sys.executable, "-m", "colonies_operator.cli", "check", "--namespace", namespace],
                          capture_output=True, text=True, env=env, timeout=60)


async def test_the_operator_runs_hello_world_as_the_charts_service_account_and_nothing_more(
        stack, api, namespace, colonies, tmp_path):
    install_chart(stack, namespace)
    kubeconfig = token_kubeconfig(stack, namespace, tmp_path / "kubeconfig")

    allowed = check(stack, kubeconfig, namespace)
    assert allowed.returncode == 0, allowed.stdout
    assert f"OK    permissions in namespace {namespace}: all" in allowed.stdout
    elsewhere = check(stack, kubeconfig, "default")
    assert elsewhere.returncode == 1
    assert "FAIL  permissions in namespace default: missing create jobs.batch" in elsewhere.stdout

    # with the leader election the chart turns on: its Lease is the one the chart's Role names
    lease = {"COLONIES_OPERATOR_LEASE_NAMESPACE": namespace, "COLONIES_OPERATOR_LEASE_NAME": f"{RELEASE}-leader"}
    with running_operator(stack, "--namespace", namespace, "--leader-election", name="operator-as-serviceaccount",
                          env={"KUBECONFIG": str(kubeconfig)} | lease) as running:
        ex = await start_executor(api, colonies, namespace, stack)
        process = await ex.submit(kwargs={"docker-image": "busybox:1.36", "cmd": "echo", "args": ["hello", "world"]})
        done = await ex.final(process.processid)
        assert done.state is ProcessState.SUCCESS, done.errors
        assert await ex.log_lines(process.processid) == ["hello world"]
        # No Secret was created: the executor key is derived from the colony key.
        secrets = (await client.CoreV1Api(api).list_namespaced_secret(namespace)).items
        assert "colony-key" in {s.metadata.name for s in secrets}
        assert f"{ex.name}-executor-key" not in {s.metadata.name for s in secrets}

    refused = [line for line in Path(running.proc.log).read_text().splitlines() if "forbidden" in line.lower()]
    assert refused == [], f"the operator was refused something it needs (log: {running.proc.log})"

    as_operator = await api_from(kubeconfig)
    async with as_operator:
        core, batch = client.CoreV1Api(as_operator), client.BatchV1Api(as_operator)
        rbac = client.RbacAuthorizationV1Api(as_operator)
        leases = client.CoordinationV1Api(as_operator)
        job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "x"},
               "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "x", "image": "x"}]}}}}
        cluster_role = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "x"}}
        secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "x"}, "stringData": {"a": "b"}}
        outside_the_role = {
            "create a Secret (a token for any ServiceAccount)": lambda: core.create_namespaced_secret(namespace, secret),
            "list Secrets in another namespace": lambda: core.list_namespaced_secret("default"),
            "list Secrets in its own namespace": lambda: core.list_namespaced_secret(namespace),
            "create a Job in another namespace": lambda: batch.create_namespaced_job("default", job),
            "create a ClusterRole": lambda: rbac.create_cluster_role(cluster_role),
            "read a Lease other than its own": lambda: leases.read_namespaced_lease("other", namespace),
            "list Leases": lambda: leases.list_namespaced_lease(namespace),
        }
        for what, call in outside_the_role.items():
            with pytest.raises(ApiException) as refused:
                await call()
            assert refused.value.status == 403, f"{what}: {refused.value}"
    helm(stack, "uninstall", RELEASE, "-n", namespace, "--wait", "--timeout", "60s")

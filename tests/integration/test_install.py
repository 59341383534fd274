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
from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.api_client import ApiClient
from kubernetes_asyncio.client.exceptions import ApiException

from colonies_operator.colonies.models import ProcessState
from teststack.state import StackState
from tests.fixtures.colonies import Colonies, open_colonies
from tests.fixtures.operator import running_operator, start_executor
from tests.helpers import fresh_stack

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


def install_chart(stack: StackState, namespace: str) -> str:
    """helm install with the stack's Colonies server as the operator-wide default; the NOTES."""
    c = stack.colonies
    return helm(stack, "install", RELEASE, str(CHART), "-n", namespace, "--set", f"colonies.host={c.host}",
                "--set", f"colonies.port={c.port}", "--set", f"colonies.colonyName={c.colony_name}").stdout


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

def test_helm_install_creates_the_crd_rbac_and_deployment_and_uninstall_removes_all_but_the_crd(stack, namespace):
    # This stack is the module's own: start as a new cluster would, without the CRD.
    kubectl(stack, "delete", "crd", CRD_NAME, "--ignore-not-found", "--wait", "--timeout=60s")

    notes = install_chart(stack, namespace)
    assert "STATUS: deployed" in notes
    assert f"kubectl -n {namespace} create secret generic colony-key" in notes
    kubectl(stack, "wait", "--for=condition=Established", "--timeout=60s", f"crd/{CRD_NAME}")
    for kind in INSTALLED:
        assert found(stack, "-n", namespace, kind, RELEASE), f"{kind} {RELEASE} was not created"
    deployment = kubectl(stack, "-n", namespace, "get", "deployment", RELEASE, "-o", "json").stdout
    assert stack.colonies.colony_prvkey not in deployment  # keys reach the operator only through Secrets
    [operator] = json.loads(deployment)["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in operator["env"]}
    assert env["COLONIES_SERVER_HOST"] == stack.colonies.host
    assert env["COLONIES_COLONY_NAME"] == stack.colonies.colony_name
    kubectl(stack, "-n", namespace, "rollout", "status", f"deployment/{RELEASE}", "--timeout=60s")
    # The hook pod is admitted (restricted security context and all) and run to its end. On
    # kwok no container really runs, so this shows the hook works, not that wget got an answer.
    tested = helm(stack, "test", RELEASE, "-n", namespace, "--timeout", "60s").stdout
    assert re.search(rf"TEST SUITE:\s+{RELEASE}-test-health", tested) and "Phase:          Succeeded" in tested

    helm(stack, "uninstall", RELEASE, "-n", namespace, "--wait", "--timeout", "60s")
    for kind in INSTALLED:
        assert not found(stack, "-n", namespace, kind, RELEASE), f"{kind} {RELEASE} is still there"
    assert found(stack, "crd", CRD_NAME)  # Helm never deletes what crds/ installed


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

    with running_operator(stack, "--namespace", namespace, name="operator-as-serviceaccount",
                          env={"KUBECONFIG": str(kubeconfig)}) as running:
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
        }
        for what, call in outside_the_role.items():
            with pytest.raises(ApiException) as refused:
                await call()
            assert refused.value.status == 403, f"{what}: {refused.value}"
    helm(stack, "uninstall", RELEASE, "-n", namespace, "--wait", "--timeout", "60s")

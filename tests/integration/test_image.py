"""The operator image, built from the Dockerfile with buildah (teststack/images_operator.py) and
run from its OCI archive with runc, as the chart runs it: user 10001, read-only root, no
capabilities. No kubelet runs it here: runc does, on the host's network, against the test
stack (the operator it starts serves `img-*` namespaces; the session's operator serves `it-*`)."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from kubernetes_asyncio import client

import colonies_operator
from colonies_operator.colonies.models import ProcessState
from teststack import images_operator, kube, oci_archive, procs
from teststack.state import StackState
from tests import runc
from tests.fixtures.kube import new_namespace
from tests.fixtures.operator import start_executor

pytestmark = pytest.mark.integration

KUBE_DIR = "/etc/colonies-operator/kube"  # where the run mounts a kubeconfig and its certificates
PROBE = """
import importlib.metadata, json, os, colonies_operator
writes = {}
for d in ("/", "/opt/venv", "/tmp", os.path.dirname(colonies_operator.__file__)):
    try:
        open(os.path.join(d, "probe"), "w").close()
        writes[d] = "written"
    except OSError as e:
        writes[d] = os.strerror(e.errno)
print(json.dumps({"ids": [os.getuid(), os.geteuid(), os.getgid(), os.getegid()], "writes": writes,
                  "module": colonies_operator.__file__, "dist": importlib.metadata.version("colonies-operator")}))
"""


@pytest.fixture(scope="module")
def image(request: pytest.FixtureRequest) -> images_operator.OperatorImage:
    capture = request.config.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled():  # a cold build takes minutes: show its progress lines
        return images_operator.operator_image()


@pytest.fixture(scope="module")
def unpacked(image, tmp_path_factory) -> tuple[oci_archive.Image, Path]:
    rootfs = tmp_path_factory.mktemp("operator-image") / "rootfs"
    return oci_archive.unpack(image.archive, rootfs), rootfs


@pytest.fixture
def kube_dir(stack: StackState, tmp_path) -> dict[str, Path]:
    """The stack's kubeconfig and certificates as the container sees them (container path ->
    host file), owned by the image's user as a Secret mounted with the chart's fsGroup would be."""
    files = {"config": tmp_path / "kubeconfig"}
    inside = {}
    for name in ("ca_cert", "admin_cert", "admin_key"):
        files[name] = Path(shutil.copy(getattr(stack.kube, name), tmp_path / name))
        inside[name] = f"{KUBE_DIR}/{name}"
    kube.write_kubeconfig(files["config"], stack.kube.api_port, dataclasses.replace(stack.kube, **inside))
    for f in files.values():
        os.chown(f, 10001, 10001)
        f.chmod(0o400)
    return {f"{KUBE_DIR}/{name}": f for name, f in files.items()}


def test_the_archive_holds_the_image_named_as_built_with_the_dockerfiles_config(image, unpacked):
    built, _ = unpacked
    assert built.ref_name == image.name  # what `ctr images import` names it
    config = built.config
    assert config["User"] == "10001:10001"
    assert config["Entrypoint"] == ["colonies-operator"] and config["Cmd"] == ["run"]
    assert set(config["ExposedPorts"]) == {"8080/tcp", "9090/tcp"}
    labels = config["Labels"]
    assert labels["org.opencontainers.image.version"] == colonies_operator.__version__
    assert labels["org.opencontainers.image.title"] == "colonies-operator"
    assert labels["org.opencontainers.image.licenses"] == "MIT"


def test_the_image_runs_as_10001_on_a_read_only_root_with_the_sources_version(unpacked):
    built, rootfs = unpacked
    version = runc.run(built, rootfs, [*built.config["Entrypoint"], "version"])
    assert version.returncode == 0, version.stderr
    assert version.stdout.strip() == f"colonies-operator {colonies_operator.__version__}"

    probed = runc.run(built, rootfs, ["python3", "-c", PROBE])
    assert probed.returncode == 0, probed.stderr
    seen = json.loads(probed.stdout)
    assert seen["ids"] == [10001, 10001, 10001, 10001]
    assert set(seen["writes"].values()) == {"Read-only file system"}, seen["writes"]
    assert seen["module"].startswith("/opt/venv/")  # the installed wheel
    assert seen["dist"] == colonies_operator.__version__


def test_check_passes_from_the_image_against_the_stack(stack, namespace, unpacked, kube_dir):
    built, rootfs = unpacked
    env = {k: v for k, v in stack.env().items() if k != "PATH"} | {"KUBECONFIG": f"{KUBE_DIR}/config"}
    checked = runc.run(built, rootfs, [*built.config["Entrypoint"], "check", "--namespace", namespace], env=env,
                       binds=kube_dir)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    outcomes = {line.split(":")[0].split(None, 1)[1]: line.split()[0] for line in checked.stdout.splitlines()}
    assert outcomes == {"settings": "OK", "kubernetes": "OK", f"permissions in namespace {namespace}": "OK",
                        "colonies": "OK"}, checked.stdout


@pytest_asyncio.fixture
async def img_namespace(api) -> AsyncIterator[str]:
    name = await new_namespace(api, "img")
    yield name
    await client.CoreV1Api(api).delete_namespace(name)


async def test_the_operator_in_its_image_runs_hello_world(stack, api, colonies, crd, img_namespace, unpacked,
                                                         kube_dir):
    built, rootfs = unpacked
    health, metrics = procs.free_port(), procs.free_port()
    env = {k: v for k, v in stack.env().items() if k != "PATH"} | {"KUBECONFIG": f"{KUBE_DIR}/config"}
    args = [*built.config["Entrypoint"], "run", "--namespace", "img-*", "--metrics-port", str(metrics),
            "--liveness", f"http://127.0.0.1:{health}/healthz"]
    log = Path(stack.run_dir) / "logs" / "operator-image.log"
    with runc.running("operator-image", built, rootfs, args, log, env=env, binds=kube_dir) as running:
        procs.wait_http(procs.HttpCheck(f"http://127.0.0.1:{health}/healthz"), timeout=60,
                        what="the operator in its image", proc=running)
        ex = await start_executor(api, colonies, img_namespace, stack)
        process = await ex.submit(kwargs={"docker-image": "busybox:1.36", "cmd": "echo", "args": ["hello", "world"]})
        done = await ex.final(process.processid)
        assert done.state is ProcessState.SUCCESS, done.errors
        assert await ex.log_lines(process.processid) == ["hello world"]
    assert "Read-only file system" not in log.read_text(), f"the operator wanted to write (log: {log})"

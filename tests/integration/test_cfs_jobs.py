"""CFS in real Jobs on the real node: the pull init container and the push sidecar run from the
operator's own image, against the real Colonies server and SeaweedFS, and every result is
checked with the Go `colonies` CLI a ColonyOS user runs.

The program is busybox; it reports what it saw as SHA-256 sums in its log, and the test
compares them with what was uploaded."""

from __future__ import annotations

import base64
import hashlib
import os
import uuid
from pathlib import Path

import pytest
import pytest_asyncio
from colonies_operator.colonies import crypto
from colonies_operator.colonies.models import ProcessState
from kubernetes_asyncio import client

from tests.fixtures.cfs import Cfs, bucket, cfs  # noqa: F401  (fixtures)
from tests.fixtures.operator import Executor, operator_image, real_node_template, start_executor  # noqa: F401
from tests.helpers import wait_for

pytestmark = pytest.mark.integration

TIMEOUT = 180


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def label(what: str) -> str:
    return f"/it/{what}-{uuid.uuid4().hex[:8]}"


def files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != ".cfs"}


async def secret(api, namespace: str, name: str, data: dict[str, str]) -> None:
    body = client.V1Secret(metadata=client.V1ObjectMeta(name=name), string_data=data)
    await client.CoreV1Api(api).create_namespaced_secret(namespace, body)


async def storage_executor(api, colonies, namespace, stack, image, cfs: Cfs, *, access_key: str = "",
                           secret_key: str = "", endpoint: str = "", **storage) -> Executor:
    """A ColonyExecutor with storage, its pods on the real node, reaching S3 and Colonies through
    the node's relay (the stack's servers listen on loopback)."""
    node = stack.real_node
    executor_key = crypto.Key.generate()
    await secret(api, namespace, "executor-key", {"executorPrvKey": executor_key.private_hex})
    await secret(api, namespace, "s3-keys", {"accessKey": access_key or cfs.config.access_key,
                                             "secretKey": secret_key or cfs.config.secret_key})
    return await start_executor(
        api, colonies, namespace, stack, jobTemplate=real_node_template(stack),
        executorKeySecretRef={"name": "executor-key"},
        server={"jobHost": node.host_ip}, helperImage=image.name,
        storage={"endpoint": endpoint or f"{node.host_ip}:{stack.s3.port}", "bucket": cfs.config.bucket,
                 "region": cfs.config.region, "credentialsSecretRef": {"name": "s3-keys"},
                 "pushSeconds": 60, **storage})


@pytest_asyncio.fixture
async def ex(api, colonies, namespace, stack, operator, operator_image, cfs) -> Executor:
    return await storage_executor(api, colonies, namespace, stack, operator_image, cfs)


def shell(script: str) -> dict:
    return {"docker-image": "busybox:1.36", "cmd": script}


async def ended(ex: Executor, process_id: str) -> object:
    return await ex.final(process_id, timeout=TIMEOUT)


async def test_a_directory_synced_up_is_what_the_program_sees_and_what_it_writes_syncs_down_byte_identical(
        ex: Executor, cfs: Cfs, tmp_path):
    inputs, outputs = label("in"), label("out")
    (tmp_path / "up" / "nested").mkdir(parents=True)
    (tmp_path / "up" / "a.txt").write_text("alpha\n")
    (tmp_path / "up" / "nested" / "b.bin").write_bytes(os.urandom(200_000))
    cfs.sync(inputs, tmp_path / "up")
    fs = {"mount": "/cfs", "dirs": [
        {"label": inputs, "dir": "/in", "onconflicts": {"onstart": {"keeplocal": False}, "onclose": {"keeplocal": False}}},
        {"label": outputs + "/{processid}", "dir": "/out",
         "onconflicts": {"onstart": {"keeplocal": False}, "onclose": {"keeplocal": True}}}]}
    script = ("cd /cfs/in && sha256sum a.txt nested/b.bin && mkdir -p /cfs/out/deep && cp a.txt /cfs/out/copy.txt && "
              "head -c 300000 /dev/urandom > /cfs/out/deep/random.bin && sha256sum /cfs/out/deep/random.bin")
    process = await ex.submit(kwargs=shell(script), fs=fs)
    done = await ended(ex, process.processid)
    assert done.state is ProcessState.SUCCESS, done.errors

    lines = await ex.log_lines(process.processid)
    assert f"{sha(b'alpha' + bytes([10]))}  a.txt" in lines
    assert f"{sha((tmp_path / 'up' / 'nested' / 'b.bin').read_bytes())}  nested/b.bin" in lines
    cfs.sync(f"{outputs}/{process.processid}", tmp_path / "down", keep_local=False)
    got = files(tmp_path / "down")
    assert got["copy.txt"] == b"alpha\n"
    assert f"{sha(got['deep/random.bin'])}  /cfs/out/deep/random.bin" in lines


@pytest.mark.parametrize("keep_local", [True, False])
async def test_a_conflict_at_the_start_follows_onstart_keeplocal(ex: Executor, cfs: Cfs, tmp_path, keep_local):
    """A snapshot puts c.txt where a synced dir has another c.txt: onstart.keeplocal decides."""
    snap_label, dir_label = label("snap"), label("dir")
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "c.txt").write_text("from the snapshot\n")
    cfs.sync(snap_label, tmp_path / "s")
    name = f"s-{uuid.uuid4().hex[:8]}"
    cfs.cli("fs", "snapshot", "create", "-l", snap_label, "-n", name)
    snapshot = await cfs.catalogue.snapshot(name=name)
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "c.txt").write_text("from the synced dir\n")
    cfs.sync(dir_label, tmp_path / "d")
    fs = {"mount": "/cfs", "snapshots": [{"snapshotid": snapshot.snapshot_id, "label": snap_label, "dir": "/job"}],
          "dirs": [{"label": dir_label, "dir": "/job", "onconflicts": {"onstart": {"keeplocal": keep_local},
                                                                       "onclose": {"keeplocal": False}}}]}
    process = await ex.submit(kwargs=shell("cat /cfs/job/c.txt"), fs=fs)
    assert (await ended(ex, process.processid)).state is ProcessState.SUCCESS
    expected = "from the snapshot" if keep_local else "from the synced dir"
    assert expected in await ex.log_lines(process.processid)


@pytest.mark.parametrize("keep_local", [True, False])
async def test_a_conflict_at_the_end_follows_onclose_keeplocal(ex: Executor, cfs: Cfs, tmp_path, keep_local):
    lbl = label("close")
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "c.txt").write_text("remote\n")
    cfs.sync(lbl, tmp_path / "r")
    fs = {"mount": "/cfs", "dirs": [{"label": lbl, "dir": "/o", "onconflicts": {
        "onstart": {"keeplocal": False}, "onclose": {"keeplocal": keep_local}}}]}
    process = await ex.submit(kwargs=shell("echo written by the program > /cfs/o/c.txt"), fs=fs)
    assert (await ended(ex, process.processid)).state is ProcessState.SUCCESS
    cfs.sync(lbl, tmp_path / "check", keep_local=False)
    assert (tmp_path / "check" / "c.txt").read_text() == ("written by the program\n" if keep_local else "remote\n")


async def test_a_snapshot_survives_a_first_attempt_that_colonies_requeues_and_goes_after_the_last(
        ex: Executor, cfs: Cfs, tmp_path):
    lbl = label("inputs")
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "input.txt").write_text("the input\n")
    cfs.sync(lbl, tmp_path / "src")
    name = f"run-{uuid.uuid4().hex[:8]}"
    cfs.cli("fs", "snapshot", "create", "-l", lbl, "-n", name)
    snapshot = await cfs.catalogue.snapshot(name=name)
    # The pod's name is the Job's, colony-<id>-<attempt>-<suffix>: attempt 0 outlives maxexectime
    # (and ends when its pod is deleted: the next attempt starts only once it is gone).
    script = ('attempt=$(hostname | cut -d- -f3); echo "attempt $attempt sees: $(cat /cfs/src/input.txt)"; '
              'if [ "$attempt" = 0 ]; then trap "exit 143" TERM; sleep 120 & wait; fi')
    fs = {"mount": "/cfs", "snapshots": [{"snapshotid": snapshot.snapshot_id, "label": lbl, "dir": "/src"}]}
    process = await ex.submit(kwargs=shell(script), fs=fs, maxexectime=15, maxretries=1,
                              conditions={"walltime": 150})
    done = await ended(ex, process.processid)
    assert done.state is ProcessState.SUCCESS and done.retries == 1, (done.state, done.errors)
    lines = await ex.log_lines(process.processid)
    assert "attempt 1 sees: the input" in lines, lines
    await wait_for(lambda: name not in cfs.cli("fs", "snapshot", "ls").stdout, 30,
                   "the snapshot to be removed after the final attempt", interval=1.0)


async def test_a_file_missing_from_s3_fails_the_process_before_the_program_starts_naming_label_and_file(
        ex: Executor, cfs: Cfs, tmp_path):
    lbl = label("missing")
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "data.csv").write_text("1,2\n")
    cfs.sync(lbl, tmp_path / "src")
    [record] = await cfs.catalogue.files(lbl)
    await cfs.s3.delete(record.object)
    fs = {"mount": "/cfs", "dirs": [{"label": lbl, "dir": "/in"}]}
    process = await ex.submit(kwargs=shell("echo the program ran"), fs=fs)
    done = await ended(ex, process.processid)
    assert done.state is ProcessState.FAILED
    assert done.errors[0].startswith(f"CFSPullFailed(pull {lbl}: 1 of 1 files not synced: {lbl}/data.csv: "
                                     f"S3 GET {record.object}: NoSuchKey"), done.errors
    assert "the program ran" not in await ex.log_lines(process.processid)


async def test_an_s3_outage_fails_the_pull_naming_the_file(api, colonies, namespace, stack, operator,
                                                           operator_image, cfs: Cfs, tmp_path):
    ex = await storage_executor(api, colonies, namespace, stack, operator_image, cfs,
                                endpoint=f"{stack.real_node.host_ip}:1")
    lbl = label("outage")
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "in.txt").write_text("x\n")
    cfs.sync(lbl, tmp_path / "src")
    process = await ex.submit(kwargs=shell("echo the program ran"), fs={"mount": "/cfs", "dirs": [{"label": lbl, "dir": "/i"}]})
    done = await ended(ex, process.processid)
    assert done.state is ProcessState.FAILED
    assert done.errors[0].startswith(f"CFSPullFailed(pull {lbl}: 1 of 1 files not synced: {lbl}/in.txt: S3 GET "), done.errors
    assert "ConnectError" in done.errors[0]


async def test_a_push_refused_by_s3_fails_the_process_naming_the_files_not_synced(
        api, colonies, namespace, stack, operator, operator_image, cfs: Cfs):
    ex = await storage_executor(api, colonies, namespace, stack, operator_image, cfs,
                                access_key=stack.s3.reader_access_key, secret_key=stack.s3.reader_secret_key)
    lbl = label("refused")
    fs = {"mount": "/cfs", "dirs": [{"label": lbl, "dir": "/o"}]}
    process = await ex.submit(kwargs=shell("echo result > /cfs/o/result.txt && echo the program ran"), fs=fs)
    done = await ended(ex, process.processid)
    assert done.state is ProcessState.FAILED, "nothing is reported as success that did not sync"
    assert done.errors[0].startswith(f"CFSPushFailed(push {lbl}: 1 of 1 files not synced: {lbl}/result.txt: S3 PUT "), done.errors
    assert "AccessDenied" in done.errors[0]
    assert "the program ran" in await ex.log_lines(process.processid)
    assert await cfs.catalogue.files(lbl) == []


async def test_the_program_cannot_read_the_executor_key_or_the_s3_keys(ex: Executor, cfs: Cfs, stack, api):
    lbl = label("keys")
    script = ("env; cat /proc/[0-9]*/environ 2>/dev/null | tr '\\0' '\\n'; "
              "ls -R /var/run/secrets /run/secrets 2>&1; echo scanned")
    process = await ex.submit(kwargs=shell(script), fs={"mount": "/cfs", "dirs": [{"label": lbl, "dir": "/o"}]})
    assert (await ended(ex, process.processid)).state is ProcessState.SUCCESS
    seen = "\n".join(await ex.log_lines(process.processid))
    assert "scanned" in seen
    keys = await client.CoreV1Api(api).read_namespaced_secret("executor-key", ex.namespace)
    executor_key = base64.b64decode(keys.data["executorPrvKey"]).decode()
    for value in (executor_key, cfs.config.access_key, cfs.config.secret_key):
        assert value not in seen
    assert "AWS_S3" not in seen and "COLONIES_PRVKEY" not in seen


async def test_a_symbolic_link_the_program_leaves_cannot_make_the_push_upload_its_keys(ex: Executor, cfs: Cfs, tmp_path):
    """The push reads in its own container, where the keys are: links are not followed."""
    lbl = label("links")
    script = ("echo ok > /cfs/o/result.txt && ln -s /proc/self/environ /cfs/o/leak && "
              "ln -s /proc/1/environ /cfs/o/leak1 && ln -s /proc/self /cfs/o/procdir")
    process = await ex.submit(kwargs=shell(script), fs={"mount": "/cfs", "dirs": [{"label": lbl, "dir": "/o"}]})
    done = await ended(ex, process.processid)
    assert done.state is ProcessState.SUCCESS, done.errors
    assert [f.name for f in await cfs.catalogue.files(lbl)] == ["result.txt"]
    assert await cfs.catalogue.labels_below(lbl) == []

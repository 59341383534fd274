"""CFS against the real peers: the Colonies server's file catalogue, SeaweedFS as the S3 server,
and the Go `colonies` CLI a ColonyOS user runs. What either side writes, the other reads byte
for byte; conflicts follow keeplocal both ways; snapshots made by the CLI are fetched whole;
and every failure names the label and file it failed on."""

from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path

import pytest
from colonies_operator.cfs.s3 import S3Client, S3Config
from colonies_operator.cfs.sync import SyncError, Syncer

from tests.fixtures.cfs import Cfs, bucket, cfs  # noqa: F401  (fixtures)

pytestmark = pytest.mark.integration


def label() -> str:
    return f"/it/{uuid.uuid4().hex[:10]}"


def files(root: Path) -> dict[str, bytes]:
    """Every file under `root` but the `.cfs` markers, by relative path."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != ".cfs"}


def a_tree(root: Path) -> dict[str, bytes]:
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / "readme.txt").write_text("hello cfs\n")
    (root / "empty").write_bytes(b"")
    (root / "sub" / "random.bin").write_bytes(os.urandom(3 * 2**20 + 17))  # several S3 chunks, odd size
    (root / "sub" / "deeper" / "ünïcode name.txt").write_text("ünïcode\n")
    return files(root)


async def pull(syncer: Syncer, root: Path, lbl: str, keep_local: bool = False) -> int:
    return await syncer.apply("pull", await syncer.plan_tree(root, lbl, keep_local))


async def push(syncer: Syncer, root: Path, lbl: str, keep_local: bool = True) -> int:
    return await syncer.apply("push", await syncer.plan_tree(root, lbl, keep_local, download=False))


async def test_a_tree_the_go_cli_syncs_up_is_pulled_byte_identical(cfs: Cfs, tmp_path):
    lbl = label()
    expected = a_tree(tmp_path / "up")
    cfs.sync(lbl, tmp_path / "up")

    assert await pull(cfs.syncer, tmp_path / "down", lbl) == len(expected)
    assert files(tmp_path / "down") == expected


async def test_a_tree_we_push_is_what_the_go_cli_syncs_down(cfs: Cfs, tmp_path):
    lbl = label()
    expected = a_tree(tmp_path / "up")
    assert await push(cfs.syncer, tmp_path / "up", lbl) == len(expected)

    cfs.sync(lbl, tmp_path / "down", keep_local=False)
    assert files(tmp_path / "down") == expected
    labels = cfs.cli("fs", "label", "ls").stdout
    assert f"{lbl}/sub/deeper" in labels


async def test_our_records_are_the_go_tools_records_without_the_keys(cfs: Cfs, tmp_path):
    lbl = label()
    (tmp_path / "ours").mkdir()
    (tmp_path / "ours" / "f").write_bytes(b"ours")
    await push(cfs.syncer, tmp_path / "ours", lbl)
    (tmp_path / "theirs").mkdir()
    (tmp_path / "theirs" / "g").write_bytes(b"theirs")
    cfs.sync(lbl, tmp_path / "theirs")  # also fetches f, and uploads g

    reply = await cfs.catalogue._call("getfilemsg", colonyname=cfs.catalogue.colony, fileid="", label=lbl,
                                      name="f", latest=True)
    ours = reply[0]
    reply = await cfs.catalogue._call("getfilemsg", colonyname=cfs.catalogue.colony, fileid="", label=lbl,
                                      name="g", latest=True)
    theirs = reply[0]
    assert ours["checksum"] == hashlib.sha256(b"ours").hexdigest() and ours["checksumalg"] == theirs["checksumalg"]
    assert set(ours) == set(theirs) and set(ours["ref"]["s3object"]) == set(theirs["ref"]["s3object"])
    assert theirs["ref"]["s3object"]["secretkey"] == cfs.config.secret_key, "the Go tools store the key"
    assert ours["ref"]["s3object"]["secretkey"] == ours["ref"]["s3object"]["accesskey"] == "", "we do not"
    assert (tmp_path / "theirs" / "f").read_bytes() == b"ours"


def a_conflict(cfs: Cfs, tmp_path) -> str:
    """A label whose c.txt says "remote" in the CFS and "local" in tmp_path/local."""
    lbl = label()
    (tmp_path / "remote").mkdir()
    (tmp_path / "remote" / "c.txt").write_text("remote\n")
    cfs.sync(lbl, tmp_path / "remote")
    (tmp_path / "local").mkdir()
    (tmp_path / "local" / "c.txt").write_text("local\n")
    return lbl


@pytest.mark.parametrize("keep_local", [True, False])
async def test_a_conflict_follows_keeplocal_on_a_pull(cfs: Cfs, tmp_path, keep_local):
    lbl = a_conflict(cfs, tmp_path)

    await pull(cfs.syncer, tmp_path / "local", lbl, keep_local=keep_local)
    assert (tmp_path / "local" / "c.txt").read_text() == ("local\n" if keep_local else "remote\n")


@pytest.mark.parametrize("keep_local", [True, False])
async def test_a_conflict_follows_keeplocal_on_a_push_as_the_go_cli_then_sees_it(cfs: Cfs, tmp_path, keep_local):
    lbl = a_conflict(cfs, tmp_path)

    await push(cfs.syncer, tmp_path / "local", lbl, keep_local=keep_local)
    cfs.sync(lbl, tmp_path / "check", keep_local=False)
    assert (tmp_path / "check" / "c.txt").read_text() == ("local\n" if keep_local else "remote\n")


async def test_a_snapshot_the_go_cli_made_is_fetched_whole_and_later_changes_stay_out(cfs: Cfs, tmp_path):
    lbl = label()
    expected = a_tree(tmp_path / "src")
    cfs.sync(lbl, tmp_path / "src")
    name = f"snap-{uuid.uuid4().hex[:8]}"
    cfs.cli("fs", "snapshot", "create", "-l", lbl, "-n", name)
    snapshot = await cfs.catalogue.snapshot(name=name)
    (tmp_path / "src" / "readme.txt").write_text("changed after the snapshot\n")
    cfs.sync(lbl, tmp_path / "src")

    assert await cfs.syncer.pull_snapshot(snapshot.snapshot_id, tmp_path / "snap") == len(expected)
    assert files(tmp_path / "snap") == expected
    await cfs.catalogue.remove_snapshot(snapshot.snapshot_id)
    assert name not in cfs.cli("fs", "snapshot", "ls").stdout


async def test_a_file_whose_bytes_are_gone_from_s3_is_named_on_a_pull(cfs: Cfs, tmp_path):
    lbl = label()
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "keep.txt").write_text("kept\n")
    (tmp_path / "src" / "lost.csv").write_text("1,2,3\n")
    cfs.sync(lbl, tmp_path / "src")
    lost = next(f for f in await cfs.catalogue.files(lbl) if f.name == "lost.csv")
    await cfs.s3.delete(lost.object)

    with pytest.raises(SyncError) as caught:
        await pull(cfs.syncer, tmp_path / "down", lbl)
    assert str(caught.value).startswith(f"pull: 1 of 2 files not synced: {lbl}/lost.csv: S3 GET {lost.object}: NoSuchKey")
    assert not (tmp_path / "down" / "lost.csv").exists()


async def test_an_s3_outage_names_every_file_and_records_nothing(cfs: Cfs, tmp_path):
    lbl = label()
    (tmp_path / "src").mkdir()
    for name in ("a", "b"):
        (tmp_path / "src" / name).write_text(name)
    down = S3Config("127.0.0.1:1", cfs.config.bucket, cfs.config.access_key, cfs.config.secret_key)
    async with S3Client(down) as unreachable:
        with pytest.raises(SyncError) as caught:
            await push(Syncer(cfs.catalogue, unreachable), tmp_path / "src", lbl)
    assert [f"{f.label}/{f.name}" for f in caught.value.failures] == [f"{lbl}/a", f"{lbl}/b"]
    assert "ConnectError (http://127.0.0.1:1" in str(caught.value)
    assert await cfs.catalogue.files(lbl) == [], "nothing recorded that is not in S3"


async def test_wrong_keys_are_refused_by_s3_in_its_own_words(cfs: Cfs, tmp_path):
    (tmp_path / "f").write_text("x")
    wrong = S3Config(cfs.config.endpoint, cfs.config.bucket, cfs.config.access_key, "not-the-secret")
    async with S3Client(wrong) as client:
        with pytest.raises(SyncError, match=r"S3 PUT \w+: SignatureDoesNotMatch"):
            await push(Syncer(cfs.catalogue, client), tmp_path, label())

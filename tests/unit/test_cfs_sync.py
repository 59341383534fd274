"""CFS: the S3 signature, the sync rules of the Go tools, and a syncer that names every file
it could not copy. The catalogue and S3 here are in-memory doubles; the real server, SeaweedFS
and the Go CLI meet this code in tests/integration/test_cfs.py."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path

import httpx
import pytest
from colonies_operator.cfs.s3 import EMPTY_SHA256, S3Client, S3Config, S3Error, sign
from colonies_operator.cfs.sync import DirPlan, LocalFile, SyncError, Syncer, below, plan_dir, scan
from colonies_operator.colonies.files import CatalogueFile, RemoteFile, Snapshot, normal_label


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- the signature ------------------------------------------------------------------------------

def test_the_signature_matches_the_aws_documentation_example():
    # "Example: GET Object" of the S3 SigV4 documentation (header-based authentication).
    headers = sign("GET", "examplebucket.s3.amazonaws.com", "/test.txt", {}, {"Range": "bytes=0-9"}, EMPTY_SHA256,
                   "AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "us-east-1",
                   dt.datetime(2013, 5, 24, tzinfo=dt.timezone.utc))
    assert headers["authorization"] == (
        "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, "
        "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, "
        "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41")


def test_s3_settings_come_from_the_go_tools_variables_and_say_what_is_missing():
    config = S3Config.from_env({"AWS_S3_ENDPOINT": "s3:8333", "AWS_S3_BUCKET": "b", "AWS_S3_ACCESSKEY": "a",
                                "AWS_S3_SECRETKEY": "topsecret", "AWS_S3_TLS": "true", "AWS_S3_SKIPVERIFY": "true"})
    assert (config.base_url, config.verify) == ("https://s3:8333", False)
    assert "topsecret" not in repr(config), "keys never show in a repr (nor so in a log)"
    with pytest.raises(ValueError, match="AWS_S3_BUCKET, AWS_S3_SECRETKEY not set"):
        S3Config.from_env({"AWS_S3_ENDPOINT": "s3:8333", "AWS_S3_ACCESSKEY": "a"})


# --- the plan of one directory ------------------------------------------------------------------

def local(name: str, data: bytes) -> LocalFile:
    return LocalFile(name, len(data), sha(data))


def remote(name: str, data: bytes) -> RemoteFile:
    return RemoteFile(name, len(data), sha(data), f"obj-{name}")


def test_a_file_on_one_side_goes_to_the_other_and_equal_files_stay():
    plan = plan_dir(Path("/d"), "/l", {"a": local("a", b"1"), "same": local("same", b"s")},
                    [remote("b", b"2"), remote("same", b"s")], keep_local=False)
    assert [f.name for f in plan.upload] == ["a"]
    assert [r.name for r in plan.download] == ["b"]


@pytest.mark.parametrize("keep_local, uploaded, downloaded", [(True, ["c"], []), (False, [], ["c"])])
def test_a_conflict_is_decided_by_keeplocal(keep_local, uploaded, downloaded):
    plan = plan_dir(Path("/d"), "/l", {"c": local("c", b"mine")}, [remote("c", b"theirs")], keep_local)
    assert [f.name for f in plan.upload] == uploaded
    assert [r.name for r in plan.download] == downloaded


def test_a_push_plans_no_downloads():
    plan = plan_dir(Path("/d"), "/l", {"c": local("c", b"mine")}, [remote("c", b"theirs"), remote("r", b"x")],
                    keep_local=False, download=False)
    assert plan.upload == () and plan.download == ()


def test_labels_are_stored_with_one_leading_slash_and_no_trailing_one():
    assert [normal_label(x) for x in ("data", "/data/", " data/sub ", "/")] == ["/data", "/data", "/data/sub", "/"]


def test_a_label_that_would_lead_out_of_the_directory_is_refused(tmp_path):
    assert below(tmp_path, "/in", "/in/a/b") == tmp_path / "a" / "b"
    assert below(tmp_path, "/in/", "/in") == tmp_path
    for bad in ("/in/../x", "/in//x", "/inx", "/other"):
        with pytest.raises(ValueError):
            below(tmp_path, "/in", bad)


def test_scan_skips_the_marker_partial_downloads_and_directories(tmp_path):
    (tmp_path / "f").write_bytes(b"x")
    (tmp_path / ".cfs").write_text("{}")
    (tmp_path / ".cfs-part-g").write_bytes(b"half")
    (tmp_path / "sub").mkdir()
    assert scan(tmp_path) == {"f": local("f", b"x")}


# --- the syncer, against in-memory peers -----------------------------------------------------------

class MemoryCatalogue:
    """The catalogue's rules as the server keeps them: revisions, the newest wins, labels are
    directories, snapshots freeze the newest revisions under a label."""

    def __init__(self) -> None:
        self.revisions: list[CatalogueFile] = []
        self.snapshots: dict[str, Snapshot] = {}

    async def add(self, file: CatalogueFile) -> CatalogueFile:
        stored = CatalogueFile(file.label, file.name, file.size, file.checksum, file.location,
                               file_id=f"f{len(self.revisions)}", sequence=len(self.revisions))
        self.revisions.append(stored)
        return stored

    def newest(self, label: str) -> dict[str, CatalogueFile]:
        out: dict[str, CatalogueFile] = {}
        for f in self.revisions:
            if f.label == label:
                out[f.name] = f
        return out

    async def files(self, label: str) -> list[RemoteFile]:
        return [RemoteFile(f.name, f.size, f.checksum, f.location.object) for f in self.newest(normal_label(label)).values()]

    async def file(self, file_id: str) -> CatalogueFile:
        return next(f for f in self.revisions if f.file_id == file_id)

    async def labels_below(self, label: str) -> list[str]:
        prefix = normal_label(label) + "/"
        return sorted({f.label for f in self.revisions if f.label.startswith(prefix)})

    async def create_snapshot(self, label: str, name: str) -> Snapshot:
        label = normal_label(label)
        ids = [f.file_id for lbl in {label, *await self.labels_below(label)} for f in self.newest(lbl).values()]
        snap = Snapshot(f"s{len(self.snapshots)}", label, name, tuple(ids))
        self.snapshots[snap.snapshot_id] = snap
        return snap

    async def snapshot(self, snapshot_id: str) -> Snapshot:
        return self.snapshots[snapshot_id]


class MemoryS3:
    """Objects in a dict, behind an httpx transport that checks what S3 checks: the payload
    hash the request signed is the hash of the bytes that came."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}
        self.broken: set[str] = set()  # object keys whose requests fail with 500
        self.requests: list[tuple[str, str]] = []

    def handle(self, request: httpx.Request) -> httpx.Response:
        key = request.url.path.split("/", 2)[2]
        self.requests.append((request.method, key))
        if key in self.broken:
            return httpx.Response(500, content=b"<Error><Code>InternalError</Code><Message>disk on fire</Message></Error>")
        if request.method == "PUT":
            body = request.read()
            if sha(body) != request.headers["x-amz-content-sha256"]:
                return httpx.Response(400, content=b"<Error><Code>XAmzContentSHA256Mismatch</Code></Error>")
            self.objects[key] = body
            return httpx.Response(200)
        if request.method == "GET":
            if key not in self.objects:
                return httpx.Response(404, content=b"<Error><Code>NoSuchKey</Code><Message>gone</Message></Error>")
            return httpx.Response(200, content=self.objects[key])
        return httpx.Response(405)


@pytest.fixture
def peers():
    catalogue, store = MemoryCatalogue(), MemoryS3()
    config = S3Config("s3.test:8333", "bucket", "ak", "sk")
    s3 = S3Client(config, transport=httpx.MockTransport(store.handle))
    return Syncer(catalogue, s3), catalogue, store


def tree(root: Path, markers: bool = True) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and (markers or p.name != ".cfs")}


async def push(syncer: Syncer, root: Path, label: str, keep_local: bool = True) -> int:
    return await syncer.apply("push", await syncer.plan_tree(root, label, keep_local, download=False))


async def pull(syncer: Syncer, root: Path, label: str, keep_local: bool = False) -> int:
    return await syncer.apply("pull", await syncer.plan_tree(root, label, keep_local))


async def test_a_tree_pushed_from_one_directory_is_pulled_whole_into_another(peers, tmp_path):
    syncer, catalogue, store = peers
    src = tmp_path / "src"
    (src / "sub" / "deeper").mkdir(parents=True)
    (src / "a.txt").write_bytes(b"alpha\n")
    (src / "empty").write_bytes(b"")
    (src / "sub" / "b.bin").write_bytes(bytes(range(256)) * 100)
    (src / "sub" / "deeper" / "c").write_bytes(b"c")

    assert await push(syncer, src, "data") == 4
    assert sorted((f.label, f.name) for f in catalogue.revisions) == [
        ("/data", "a.txt"), ("/data", "empty"), ("/data/sub", "b.bin"), ("/data/sub/deeper", "c")]
    assert len(store.objects) == 3, "an empty file is recorded but not stored"

    dest = tmp_path / "dest"
    assert await pull(syncer, dest, "/data") == 4
    assert tree(dest, markers=False) == tree(src, markers=False)
    assert json.loads((dest / "sub" / ".cfs").read_text()) == {"label": "/data/sub"}


async def test_a_second_sync_of_the_same_tree_copies_nothing(peers, tmp_path):
    syncer, _, store = peers
    (tmp_path / "f").write_bytes(b"x")
    await push(syncer, tmp_path, "/d")
    calls = len(store.requests)
    assert await push(syncer, tmp_path, "/d") == 0
    assert await pull(syncer, tmp_path, "/d") == 0
    assert len(store.requests) == calls


async def test_a_changed_file_pushed_with_keeplocal_becomes_the_newest_revision(peers, tmp_path):
    syncer, catalogue, _ = peers
    (tmp_path / "f").write_bytes(b"v1")
    await push(syncer, tmp_path, "/d")
    (tmp_path / "f").write_bytes(b"v2")
    await push(syncer, tmp_path, "/d", keep_local=True)
    assert [r.checksum for r in await catalogue.files("/d")] == [sha(b"v2")]
    assert len(catalogue.revisions) == 2


async def test_every_file_that_fails_is_named_and_the_others_still_sync(peers, tmp_path):
    syncer, catalogue, store = peers
    for name in ("ok1", "bad", "ok2"):
        (tmp_path / name).write_bytes(name.encode())
    original = store.handle

    def fail_bad(request: httpx.Request) -> httpx.Response:
        if request.method == "PUT" and sha(request.read()) == sha(b"bad"):
            return httpx.Response(503, content=b"<Error><Code>SlowDown</Code><Message>later</Message></Error>")
        return original(request)
    syncer.s3._http._transport = httpx.MockTransport(fail_bad)

    with pytest.raises(SyncError) as caught:
        await push(syncer, tmp_path, "/out")
    assert str(caught.value) == "push: 1 of 3 files not synced: /out/bad: S3 PUT " + caught.value.failures[0].reason.split("S3 PUT ")[1]
    assert "SlowDown (later)" in str(caught.value)
    assert sorted(f.name for f in catalogue.revisions) == ["ok1", "ok2"], "a failed upload is not recorded"


async def test_a_download_whose_bytes_do_not_match_the_catalogue_is_refused_and_leaves_nothing(peers, tmp_path):
    syncer, catalogue, store = peers
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "f").write_bytes(b"right")
    await push(syncer, tmp_path / "src", "/d")
    store.objects[catalogue.revisions[0].location.object] = b"wrong"

    with pytest.raises(SyncError, match=r"/d/f: downloaded bytes have SHA-256 .*, the catalogue says"):
        await pull(syncer, tmp_path / "dest", "/d")
    assert tree(tmp_path / "dest") == {".cfs": b'{"label":"/d"}'}


async def test_a_missing_object_is_named_with_s3s_words(peers, tmp_path):
    syncer, catalogue, store = peers
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "input.csv").write_bytes(b"1,2\n")
    await push(syncer, tmp_path / "src", "/in")
    store.objects.clear()
    with pytest.raises(SyncError, match=r"pull: 1 of 1 files not synced: /in/input.csv: S3 GET \w+: NoSuchKey \(gone\)"):
        await pull(syncer, tmp_path / "dest", "/in")


async def test_an_unreachable_s3_is_named_with_its_address(tmp_path):
    catalogue = MemoryCatalogue()
    (tmp_path / "f").write_bytes(b"x")

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)
    s3 = S3Client(S3Config("s3.test:8333", "bucket", "ak", "sk"), transport=httpx.MockTransport(refuse))
    with pytest.raises(SyncError, match=r"/d/f: S3 PUT \w+: ConnectError \(http://s3.test:8333: connection refused\)"):
        await push(Syncer(catalogue, s3), tmp_path, "/d")


async def test_a_snapshot_is_pulled_with_its_layout_and_later_revisions_do_not_leak_into_it(peers, tmp_path):
    syncer, catalogue, _ = peers
    src = tmp_path / "src"
    (src / "lib").mkdir(parents=True)
    (src / "main.py").write_bytes(b"print(1)\n")
    (src / "lib" / "util.py").write_bytes(b"x = 1\n")
    await push(syncer, src, "/code")
    snap = await catalogue.create_snapshot("/code", "v1")
    (src / "main.py").write_bytes(b"print(2)\n")
    await push(syncer, src, "/code", keep_local=True)

    dest = tmp_path / "dest"
    assert await syncer.pull_snapshot(snap.snapshot_id, dest) == 2
    assert tree(dest) == {"lib/util.py": b"x = 1\n", "main.py": b"print(1)\n"}, "no .cfs marker in a snapshot"


async def test_a_snapshot_file_already_present_is_not_downloaded_again(peers, tmp_path):
    syncer, catalogue, store = peers
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "f").write_bytes(b"x")
    await push(syncer, tmp_path / "src", "/c")
    snap = await catalogue.create_snapshot("/c", "v1")
    assert await syncer.pull_snapshot(snap.snapshot_id, tmp_path / "src") == 0
    assert [m for m, _ in store.requests] == ["PUT"]


def test_dir_plan_defaults_are_empty():
    assert DirPlan(Path("/d"), "/l").upload == () == DirPlan(Path("/d"), "/l").download


async def test_a_push_never_follows_a_symbolic_link_the_program_left(peers, tmp_path):
    """The push runs where the keys are: a link to /proc/self/environ would upload them."""
    syncer, catalogue, _ = peers
    secret = tmp_path / "secret"
    secret.write_text("AWS_S3_SECRETKEY=shh")
    out = tmp_path / "out"
    out.mkdir()
    (out / "result.txt").write_text("ok")
    (out / "leak").symlink_to(secret)
    (out / "leakdir").symlink_to(tmp_path)
    assert await push(syncer, out, "/out") == 1
    assert [f.name for f in catalogue.revisions] == ["result.txt"]
    (tmp_path / "linked").symlink_to(out)
    with pytest.raises(ValueError, match="is a symbolic link"):
        await push(syncer, tmp_path / "linked", "/out2")

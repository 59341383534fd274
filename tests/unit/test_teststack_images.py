"""The pure parts of building and running the operator image: apt's mirror, the image's cache
key, reading an OCI archive, and the runc config that runs it as the chart would."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest

from teststack import debian, images_operator, oci_archive
from tests import runc

DEB822 = """\
Types: deb
# a snapshot, commented out
URIs: http://mirror.example/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://security.example/debian-security
Suites: bookworm-security
Components: main
"""


def test_the_mirror_comes_from_a_deb822_sources_file():
    assert debian.mirror("bookworm", {"debian.sources": DEB822}) == "http://mirror.example/debian"


def test_the_mirror_comes_from_a_one_line_list_with_options_and_comments():
    listing = ("# deb http://old.example/debian bookworm main\n"
               "deb-src http://src.example/debian bookworm main\n"
               "deb [arch=amd64 signed-by=/k.gpg] https://one.example/debian bookworm contrib main # ours\n")
    assert debian.mirror("bookworm", {"sources.list": listing}) == "https://one.example/debian"


def test_the_mirror_skips_what_apt_skips_and_what_debootstrap_cannot_fetch():
    sources = {
        "a.list.disabled": "deb http://disabled.example/debian bookworm main\n",
        "b.sources": DEB822.replace("Types: deb\n", "Types: deb\nEnabled: no\n", 1),
        "c.list": "deb cdrom:[Debian]/ bookworm main\ndeb http://contrib-only.example/debian bookworm contrib\n",
        "d.list": "deb http://wanted.example/debian bookworm main\n",
    }
    assert debian.mirror("bookworm", sources) == "http://wanted.example/debian"
    with pytest.raises(LookupError, match="trixie"):
        debian.mirror("trixie", sources)


def tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


SOURCES = {"Dockerfile": "FROM x\n", ".dockerignore": "*\n", "pyproject.toml": "[project]\n", "README.md": "# r\n",
           "operator/colonies_operator/__init__.py": '__version__ = "1.2.3"\n'}


def test_the_image_key_follows_the_sources_but_not_caches_or_the_readme(tmp_path):
    root = tree(tmp_path, SOURCES)
    key = images_operator.source_key(root, "base:1")
    assert images_operator.source_key(root, "base:2") != key
    tree(root, {"README.md": "# edited\n", "operator/colonies_operator/__pycache__/x.pyc": "cached",
                "operator/colonies_operator.egg-info/PKG-INFO": "built"})
    assert images_operator.source_key(root, "base:1") == key
    for name in ("Dockerfile", "pyproject.toml", "operator/colonies_operator/new.py"):
        tree(root, {name: "changed\n"})
        assert images_operator.source_key(root, "base:1") != key, name
        key = images_operator.source_key(root, "base:1")


def test_the_image_name_carries_the_sources_version_and_key(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    image = images_operator.expected(tree(tmp_path / "src", SOURCES))
    repo, _, tag = image.name.rpartition(":")
    assert repo == "localhost/colonies-operator" and tag.startswith("1.2.3-")
    assert image.archive == tmp_path / "cache" / "colonies-operator" / "images" / f"colonies-operator-{tag[6:]}.oci.tar"


def test_the_base_name_changes_with_its_recipe(monkeypatch):
    name = images_operator.base_name()
    assert name.startswith("localhost/colonies-operator-python-base:bookworm-")
    monkeypatch.setattr(images_operator, "BASE_PACKAGES", (*images_operator.BASE_PACKAGES, "curl"))
    assert images_operator.base_name() != name


# --- OCI archives -------------------------------------------------------------------------

def layer(entries: dict[str, str | None], compress: bool) -> bytes:
    """A layer tar: name -> file text, or None for a directory."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as t:
        for name, text in entries.items():
            info = tarfile.TarInfo(name)
            if text is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                t.addfile(info)
            else:
                info.size, info.uid, info.gid = len(text), 10001, 10001
                t.addfile(info, io.BytesIO(text.encode()))
    return gzip.compress(out.getvalue()) if compress else out.getvalue()


def archive(path: Path, layers: list[bytes], config: dict) -> Path:
    blobs: dict[str, bytes] = {}

    def add(data: bytes) -> dict:
        digest = f"sha256:{hashlib.sha256(data).hexdigest()}"
        blobs[digest] = data
        return {"digest": digest, "size": len(data)}

    manifest = {"schemaVersion": 2, "config": add(json.dumps({"config": config}).encode()),
                "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar" + ("+gzip" if data[:2] == b"\x1f\x8b"
                                                                                       else ""), **add(data)}
                           for data in layers]}
    index = {"schemaVersion": 2, "manifests": [{**add(json.dumps(manifest).encode()),
                                                "annotations": {"org.opencontainers.image.ref.name": "localhost/x:1"}}]}
    with tarfile.open(path, "w") as t:
        for name, data in [("index.json", json.dumps(index).encode()),
                           *((f"blobs/sha256/{d[7:]}", b) for d, b in blobs.items())]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return path


def test_unpacking_applies_the_layers_in_order_with_whiteouts(tmp_path):
    bottom = layer({"etc/": None, "etc/passwd": "root:x:0:0::/root:/bin/sh\n", "etc/old": "gone",
                    "app/": None, "app/a": "a", "app/b": "b", "keep": "v1"}, compress=True)
    top = layer({"etc/.wh.old": "", "app/": None, "app/.wh..wh..opq": "", "app/c": "c", "keep": "v2"}, compress=False)
    path = archive(tmp_path / "image.oci.tar", [bottom, top], {"User": "10001:10001", "Env": ["A=1"]})
    image = oci_archive.unpack(path, tmp_path / "rootfs")
    rootfs = tmp_path / "rootfs"
    assert image.ref_name == "localhost/x:1" and image.config["User"] == "10001:10001"
    assert sorted(p.relative_to(rootfs).as_posix() for p in rootfs.rglob("*") if p.is_file()) == [
        "app/c", "etc/passwd", "keep"]
    assert (rootfs / "keep").read_text() == "v2" and (rootfs / "keep").stat().st_uid == 10001
    with pytest.raises(ValueError, match="not empty"):
        oci_archive.unpack(path, rootfs)


def test_a_layer_entry_outside_the_rootfs_is_refused(tmp_path):
    path = archive(tmp_path / "image.oci.tar", [layer({"../escape": "x"}, compress=True)], {})
    with pytest.raises(ValueError, match="leaves the rootfs"):
        oci_archive.unpack(path, tmp_path / "rootfs")
    assert not (tmp_path / "escape").exists()


# --- runc -----------------------------------------------------------------------------------

def test_the_runc_config_runs_as_the_images_user_on_a_read_only_root_without_capabilities(tmp_path):
    tree(tmp_path, {"etc/passwd": "root:x:0:0::/root:/bin/sh\ncolonies:x:10001:10001::/nonexistent:/usr/sbin/nologin\n"})
    image = oci_archive.Image(config={"User": "10001:10001", "Env": ["PATH=/opt/venv/bin:/usr/bin", "A=image"]},
                              ref_name="x", layers=(), layer_types=())
    config = runc.bundle_config(image, tmp_path, ["colonies-operator", "version"], {"A": "run"},
                                {"/etc/kube/config": tmp_path / "kubeconfig"})
    process = config["process"]
    assert process["user"] == {"uid": 10001, "gid": 10001}
    assert process["env"] == ["HOME=/nonexistent", "PATH=/opt/venv/bin:/usr/bin", "A=run"]
    assert process["noNewPrivileges"] and not any(process["capabilities"].values())
    assert config["root"] == {"path": str(tmp_path), "readonly": True}
    assert {"destination": "/etc/kube/config", "type": "bind", "source": str(tmp_path / "kubeconfig"),
            "options": ["rbind", "ro"]} in config["mounts"]
    assert "/tmp" not in {m["destination"] for m in config["mounts"]}  # no writable scratch space
    assert "network" not in {n["type"] for n in config["linux"]["namespaces"]}  # the stack is on loopback


def test_a_user_by_name_is_resolved_from_the_images_passwd(tmp_path):
    tree(tmp_path, {"etc/passwd": "app:x:500:600::/home/app:/bin/sh\n"})
    image = oci_archive.Image(config={"User": "app"}, ref_name="x", layers=(), layer_types=())
    assert runc.image_user(image, tmp_path) == runc.User(500, 600, "/home/app")
    with pytest.raises(ValueError, match="nobody"):
        runc.image_user(oci_archive.Image(config={"User": "nobody"}, ref_name="x", layers=(), layer_types=()), tmp_path)

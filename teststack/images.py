"""Container images for the real node, made here because no registry can be reached.

Each image is one layer written as an OCI image layout archive (what `ctr images import`
takes): `oci-layout`, `index.json` and sha256-addressed blobs (the gzipped layer tar, the image
config, the manifest). The index names the image as pods ask for it, so `busybox:1.36`
(normalised by the kubelet to `docker.io/library/busybox:1.36`) is found without a pull.

- pause: the static Go program in teststack/pause, the sandbox image of containerd's CRI;
- busybox: Debian's `busybox-static` binary with a symlink per applet (`busybox --list-full`).

Archives are deterministic (sorted entries, zero times), so the same inputs give the same
digests. They are built once into the versioned cache (`versions.images_dir()`).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import platform
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from teststack import apt, progress, versions as v

PAUSE_SOURCE = Path(__file__).with_name("pause") / "main.go"
BUSYBOX_BINARY = Path("/bin/busybox")  # from Debian's busybox-static
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
CONFIG_TYPE = "application/vnd.oci.image.config.v1+json"
LAYER_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip"


@dataclass(frozen=True)
class Entry:
    """One file, directory or symlink of a layer. `data` for files, `link` for symlinks."""

    path: str  # relative, e.g. "bin/sh"
    mode: int = 0o755
    data: bytes | None = None
    link: str | None = None

    def tarinfo(self) -> tarfile.TarInfo:
        info = tarfile.TarInfo(self.path)
        info.mode, info.mtime, info.uid, info.gid = self.mode, 0, 0, 0
        if self.link is not None:
            info.type, info.linkname = tarfile.SYMTYPE, self.link
        elif self.data is not None:
            info.size = len(self.data)
        else:
            info.type = tarfile.DIRTYPE
        return info


@dataclass(frozen=True)
class Image:
    name: str  # the fully qualified reference, e.g. docker.io/library/busybox:1.36
    entries: tuple[Entry, ...]
    config: Mapping[str, object] = field(default_factory=dict)  # Env, Cmd, Entrypoint, User, ...


def goarch() -> str:
    machine = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _with_parents(entries: Iterable[Entry]) -> list[Entry]:
    """The entries plus a directory entry for every parent not listed, sorted by path."""
    by_path = {e.path: e for e in entries}
    for path in list(by_path):
        parent = os.path.dirname(path)
        while parent and parent not in by_path:
            by_path[parent] = Entry(parent)
            parent = os.path.dirname(parent)
    return [by_path[p] for p in sorted(by_path)]


def layer_tar(entries: Iterable[Entry]) -> bytes:
    """An uncompressed, reproducible layer tar."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for e in _with_parents(entries):
            tar.addfile(e.tarinfo(), io.BytesIO(e.data) if e.data is not None else None)
    return buf.getvalue()


def oci_layout(image: Image) -> bytes:
    """The image as an OCI image layout archive (a tar), ready for `ctr images import`."""
    raw = layer_tar(image.entries)
    layer = gzip.compress(raw, mtime=0)
    config = json.dumps({
        "architecture": goarch(), "os": "linux",
        "config": dict(image.config),
        "rootfs": {"type": "layers", "diff_ids": [_sha(raw)]},
        "history": [{"created_by": "teststack/images.py"}],
    }, sort_keys=True).encode()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": MANIFEST_TYPE,
        "config": {"mediaType": CONFIG_TYPE, "digest": _sha(config), "size": len(config)},
        "layers": [{"mediaType": LAYER_TYPE, "digest": _sha(layer), "size": len(layer)}],
    }, sort_keys=True).encode()
    index = json.dumps({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": MANIFEST_TYPE, "digest": _sha(manifest), "size": len(manifest),
            "platform": {"architecture": goarch(), "os": "linux"},
            # containerd names the imported image after io.containerd.image.name
            "annotations": {"io.containerd.image.name": image.name,
                            "org.opencontainers.image.ref.name": image.name.rsplit(":", 1)[-1]},
        }],
    }, sort_keys=True).encode()
    files = {"oci-layout": json.dumps({"imageLayoutVersion": "1.0.0"}).encode(), "index.json": index}
    for blob in (layer, config, manifest):
        files["blobs/sha256/" + _sha(blob).split(":", 1)[1]] = blob
    return layer_tar(Entry(path, 0o644, data) for path, data in files.items())


def busybox_entries(binary: bytes, applets: Iterable[str]) -> tuple[Entry, ...]:
    """`bin/busybox` plus a relative symlink to it for each applet path (e.g. `usr/bin/env`)."""
    entries = [Entry("bin/busybox", 0o755, binary)]
    for applet in sorted(set(applets)):
        rel = applet.strip("/")
        if rel and rel != "bin/busybox":
            up = "../" * rel.count("/")
            entries.append(Entry(rel, 0o777, link=f"{up}bin/busybox"))
    return tuple(entries) + (
        Entry("etc/passwd", 0o644, b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n"),
        Entry("etc/group", 0o644, b"root:x:0:\nnobody:x:65534:\n"),
        Entry("tmp", 0o1777), Entry("root", 0o700), Entry("home"), Entry("var"),
    )


def busybox_image(binary: Path = BUSYBOX_BINARY) -> Image:
    apt.install([] if binary.exists() else ["busybox-static"], "the busybox image")
    listed = subprocess.run([str(binary), "--list-full"], check=True, capture_output=True, text=True).stdout
    return Image(v.BUSYBOX_IMAGE, busybox_entries(binary.read_bytes(), listed.split()),
                 {"Env": [PATH_ENV], "Cmd": ["sh"]})


def pause_image(pause_binary: Path) -> Image:
    return Image(v.PAUSE_IMAGE, (Entry("pause", 0o755, pause_binary.read_bytes()),),
                 {"Entrypoint": ["/pause"], "User": "65535:65535"})


def build_pause(out: Path, log: Path) -> None:
    """`go build` the pause program static; it needs no module (a single file, stdlib only)."""
    env = dict(os.environ, CGO_ENABLED="0", GOFLAGS="-trimpath", GOTOOLCHAIN=os.environ.get("GOTOOLCHAIN", "local"))
    with tempfile.TemporaryDirectory() as work:
        src = Path(work) / "main.go"
        shutil.copyfile(PAUSE_SOURCE, src)
        progress.run_logged(["go", "build", "-ldflags", "-s -w", "-o", str(out), "main.go"],
                            label="go build pause", log=log, env=env | {"GO111MODULE": "off"}, cwd=Path(work))


ARCHIVES = ("pause.tar", "busybox.tar")


def missing(images_dir: Path) -> list[str]:
    return [a for a in ARCHIVES if not (images_dir / a).exists()]


def build(images_dir: Path, log: Path) -> None:
    """Write whatever image archive is missing (each written whole, then renamed into place)."""
    images_dir.mkdir(parents=True, exist_ok=True)
    for archive in missing(images_dir):
        with tempfile.TemporaryDirectory(dir=images_dir) as work:
            if archive == "pause.tar":
                build_pause(Path(work) / "pause", log)
                image = pause_image(Path(work) / "pause")
            else:
                image = busybox_image()
            tmp = Path(work) / archive
            tmp.write_bytes(oci_layout(image))
            tmp.replace(images_dir / archive)
        progress.say(f"  image {image.name}: {images_dir / archive}")

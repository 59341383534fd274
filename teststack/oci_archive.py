"""Reading an OCI archive (a tar of an OCI image layout) holding one image: its config, its rootfs.

Enough to run the image with runc as a container runtime would, from the very file that a
node imports, without a container engine: the layers are applied in order, whiteouts included.
"""

from __future__ import annotations

import json
import os
import shutil
import tarfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

_WHITEOUT = ".wh."
_OPAQUE = ".wh..wh..opq"  # "this directory's lower contents are gone"
_LAYER_TYPES = ("application/vnd.oci.image.layer.v1.tar", "application/vnd.oci.image.layer.v1.tar+gzip")


@dataclass(frozen=True)
class Image:
    config: dict[str, Any]  # the image config's `config`: User, Env, Entrypoint, Cmd, WorkingDir, Labels
    ref_name: str            # the name the index gives it (what `ctr images import` names it)
    layers: tuple[str, ...]  # blob paths inside the archive, bottom first
    layer_types: tuple[str, ...]


def _blob(digest: str) -> str:
    algorithm, _, hex_digest = digest.partition(":")
    return f"blobs/{algorithm}/{hex_digest}"


def _json(archive: tarfile.TarFile, name: str) -> Any:
    member = archive.extractfile(name)
    if member is None:
        raise ValueError(f"{name} is not a file in the archive")
    return json.load(member)


def read(path: Path) -> Image:
    with tarfile.open(path) as archive:
        [entry] = _json(archive, "index.json")["manifests"]
        manifest = _json(archive, _blob(entry["digest"]))
        config = _json(archive, _blob(manifest["config"]["digest"]))
    return Image(config=config.get("config", {}),
                 ref_name=entry.get("annotations", {}).get("org.opencontainers.image.ref.name", ""),
                 layers=tuple(_blob(layer["digest"]) for layer in manifest["layers"]),
                 layer_types=tuple(layer["mediaType"] for layer in manifest["layers"]))


def _inside(rootfs: Path, name: str) -> Path:
    relative = PurePosixPath(name.lstrip("/"))
    if ".." in relative.parts:
        raise ValueError(f"layer entry {name!r} leaves the rootfs")
    return rootfs / relative


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.is_symlink() or path.exists():
        path.unlink()


def _apply(layer: tarfile.TarFile, rootfs: Path) -> None:
    for member in layer:
        target = _inside(rootfs, member.name)
        base = target.name
        if base == _OPAQUE:
            for child in target.parent.iterdir():
                _remove(child)
            continue
        if base.startswith(_WHITEOUT):
            _remove(target.with_name(base[len(_WHITEOUT):]))
            continue
        if not (member.isdir() and target.is_dir() and not target.is_symlink()):
            _remove(target)  # a later layer replaces what an earlier one put there
        # Our own image, owners and modes as built (setuid bits, absolute symlinks): trusted.
        layer.extract(member, rootfs, numeric_owner=True, filter="fully_trusted")


def unpack(path: Path, rootfs: Path) -> Image:
    """Apply the image's layers into `rootfs` (created; must be empty) and return the image."""
    image = read(path)
    unknown = set(image.layer_types) - set(_LAYER_TYPES)
    if unknown:
        raise ValueError(f"layers of a type this reader does not handle: {unknown}")
    rootfs.mkdir(parents=True, exist_ok=True)
    if any(rootfs.iterdir()):
        raise ValueError(f"{rootfs} is not empty")
    with tarfile.open(path) as archive:
        for blob in image.layers:
            stream = archive.extractfile(blob)
            if stream is None:
                raise ValueError(f"{blob} is missing from the archive")
            with tarfile.open(fileobj=stream, mode="r|*") as layer:
                _apply(layer, rootfs)
    return image


def tree_size(rootfs: Path) -> int:
    """Bytes of the unpacked image (files and links counted once)."""
    seen: set[int] = set()
    total = 0
    for dirpath, _, files in os.walk(rootfs):
        for name in files:
            st = os.lstat(os.path.join(dirpath, name))
            if st.st_ino not in seen:
                seen.add(st.st_ino)
                total += st.st_size
    return total

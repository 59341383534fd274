"""The operator image, built from the Dockerfile for real, as an OCI archive in the cache.

No registry is reachable, so the Dockerfile's base is built here once: a Debian bookworm with
Python from `debootstrap` (from the mirror apt already uses), committed with buildah under a
local name. `buildah bud --pull-never` then builds the Dockerfile on it (`BASE_IMAGE`; real
users get the public python:3.11-slim) and the image is pushed to an OCI archive, keyed by
what goes into it, so a change to the Dockerfile, pyproject.toml or the operator's sources
builds a new one and an unchanged tree reuses it.

`operator_image()` gives the archive and the image's name, e.g. for
`ctr -n k8s.io images import ARCHIVE` on a real node (pods then ask for that name with
`imagePullPolicy: IfNotPresent`). `python3 -m teststack.images_operator` builds and prints them.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import ssl
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from teststack import buildah, debian, progress, versions

ROOT = Path(__file__).resolve().parent.parent
SUITE = "bookworm"  # python:3.11-slim is bookworm too
# python3-venv brings the whole of python3 (asyncio, ssl, ...) and ensurepip's wheels, which the
# Dockerfile's `python3 -m venv` needs; python3-minimal alone has neither.
BASE_PACKAGES = ("python3-minimal", "python3-venv")
# What debootstrap leaves that an image does not need: its downloaded .debs, apt's package
# lists, docs, and this machine's resolver and host name.
BASE_TRIM = ("var/cache/apt", "var/lib/apt/lists", "usr/share/doc", "usr/share/man", "usr/share/info",
             "usr/share/locale", "etc/resolv.conf", "etc/hostname")
BASE_REPO = "localhost/colonies-operator-python-base"
OPERATOR_REPO = "localhost/colonies-operator"
TOOLS = {"buildah": "buildah", "debootstrap": "debootstrap", "runc": "runc"}  # command -> Debian package
# The build context that makes the image (see .dockerignore). README.md is copied too but only
# becomes the wheel's long description: editing it does not rebuild the image.
CONTEXT_FILES = ("Dockerfile", ".dockerignore", "pyproject.toml")
CONTEXT_TREES = ("operator",)
# Where the base's pip looks for trusted CAs (Debian patches pip's certifi to use the system's).
BASE_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
KEPT_ARCHIVES = 3  # other checkouts may want an older tree's image; older archives are removed


@dataclass(frozen=True)
class OperatorImage:
    archive: Path  # an OCI archive (`oci-archive:` in buildah/skopeo terms) holding one image
    name: str      # its reference inside the archive, e.g. localhost/colonies-operator:0.1.0-<key>


def images_dir() -> Path:
    return versions.cache_root() / "images"


def _log() -> Path:
    return images_dir() / "build.log"


def _digest(parts: Iterable[bytes]) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(len(part).to_bytes(8, "big") + part)  # length-prefixed: no two lists collide
    return h.hexdigest()


def base_name() -> str:
    """The base's local name; its tag changes with anything that changes how it is made."""
    recipe = [SUITE.encode(), *(p.encode() for p in BASE_PACKAGES), *(t.encode() for t in BASE_TRIM)]
    return f"{BASE_REPO}:{SUITE}-{_digest(recipe)[:12]}"


def context_files(root: Path) -> list[Path]:
    """The files of the build context that make the image, sorted, caches left out."""
    files = [root / f for f in CONTEXT_FILES]
    for tree in CONTEXT_TREES:
        files += [p for p in (root / tree).rglob("*")
                  if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
                  and not any(part.endswith(".egg-info") for part in p.parts)]
    return sorted(files)


def source_key(root: Path, base: str) -> str:
    """A hash of the base's name and every context file's path and bytes."""
    parts = [base.encode()]
    for f in context_files(root):
        parts += [f.relative_to(root).as_posix().encode(), f.read_bytes()]
    return _digest(parts)


def source_version(root: Path) -> str:
    """The package's version as the source says it (what `pip install` will install)."""
    text = (root / "operator" / "colonies_operator" / "__init__.py").read_text()
    found = re.search(r'^__version__\s*=\s*"([^"]+)"', text, flags=re.M)
    if not found:
        raise RuntimeError("no __version__ in operator/colonies_operator/__init__.py")
    return found.group(1)


def expected(root: Path = ROOT) -> OperatorImage:
    """Where the image of this tree is (or will be) and its name; builds nothing."""
    key = source_key(root, base_name())[:16]
    return OperatorImage(images_dir() / f"colonies-operator-{key}.oci.tar",
                         f"{OPERATOR_REPO}:{source_version(root)}-{key}")


def machine_ca_bundle() -> Path | None:
    """The CA bundle this machine's own pip and Python trust, if it is one file.

    A machine may reach PyPI only through a TLS-inspecting proxy whose CA it trusts: the
    build's `pip install` must trust what the machine trusts. It is bind-mounted for the RUN
    steps only, so it never becomes part of the image.
    """
    candidates = [os.environ.get(var) for var in ("PIP_CERT", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE")]
    candidates.append(ssl.get_default_verify_paths().cafile)
    return next((Path(c) for c in candidates if c and Path(c).is_file()), None)


@contextlib.contextmanager
def _locked() -> Iterator[None]:
    """One build at a time per machine (two checkouts, CI and a developer share the cache)."""
    images_dir().mkdir(parents=True, exist_ok=True)
    with open(images_dir() / ".lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            progress.say("[image] another run is building images; waiting for it")
            fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def ensure_base() -> str:
    """The base image's name, built first if the cache lacks it."""
    name = base_name()
    debian.ensure_installed(TOOLS)
    with _locked(), buildah.storage(images_dir() / "storage", _log()) as bh:
        if not bh.has_image(name):
            _build_base(bh, name)
    return name


def _build_base(bh: buildah.Buildah, name: str) -> None:
    mirror = debian.machine_mirror(SUITE)
    rootfs = images_dir() / "base-rootfs"
    shutil.rmtree(rootfs, ignore_errors=True)
    bh.output("rm", "--all")  # working containers of a build that was killed
    began = time.monotonic()
    progress.say(f"[image] building the Python base {name} with debootstrap from {mirror} "
                 f"(first time only, ~1-2 min; log: {_log()})")
    progress.run_logged(["debootstrap", "--variant=minbase", f"--include={','.join(BASE_PACKAGES)}", SUITE,
                         str(rootfs), mirror], label="debootstrap", log=_log())
    progress.say(f"[image] debootstrap done in {int(time.monotonic() - began)}s; committing the base")
    for path in BASE_TRIM:
        target = rootfs / path
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        else:
            target.unlink(missing_ok=True)
    container = bh.output("from", "--pull-never", "scratch")
    mount = bh.output("mount", container)
    # cp -a keeps owners, modes and links as debootstrap made them (buildah copy would chown to root)
    progress.run_logged(["cp", "-a", f"{rootfs}/.", mount], label="copy the base rootfs", log=_log())
    bh.output("umount", container)
    bh.output("config", "--env", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
              "--env", "LANG=C.UTF-8", "--cmd", "python3", container)
    bh.run("commit", "--rm", container, name, label="commit the base")
    shutil.rmtree(rootfs)
    for old in bh.output("images", "--noheading", "--format", "{{.Name}}:{{.Tag}}").splitlines():
        if old.startswith(f"{BASE_REPO}:") and old != name:  # a base made by an older recipe
            bh.output("rmi", old)
    progress.say(f"[image] base {name} built in {int(time.monotonic() - began)}s")


def operator_image(root: Path = ROOT) -> OperatorImage:
    """The operator image of this tree as an OCI archive, built (minutes) if the cache lacks it."""
    image = expected(root)
    if image.archive.exists():
        return image
    base = ensure_base()
    with _locked(), buildah.storage(images_dir() / "storage", _log()) as bh:
        if not image.archive.exists():  # another run may have built it while we waited
            _build_operator(bh, root, base, image)
    return image


def _build_operator(bh: buildah.Buildah, root: Path, base: str, image: OperatorImage) -> None:
    began = time.monotonic()
    progress.say(f"[image] building {image.name} from the Dockerfile (buildah bud; log: {_log()})")
    ca = machine_ca_bundle()
    trust = ["--volume", f"{ca}:{BASE_CA_BUNDLE}:ro"] if ca else []
    bh.run("bud", "--pull-never", "--network", "host", *trust, "--build-arg", f"BASE_IMAGE={base}",
           "--build-arg", f"VERSION={source_version(root)}", "-t", image.name, "-f", str(root / "Dockerfile"),
           str(root), label="buildah bud")
    progress.say(f"[image] bud done in {int(time.monotonic() - began)}s; pushing to an OCI archive")
    partial = image.archive.with_suffix(".partial")
    partial.unlink(missing_ok=True)
    bh.run("push", image.name, f"oci-archive:{partial}:{image.name}", label="buildah push")
    os.replace(partial, image.archive)
    bh.output("rmi", image.name)  # the archive is the product; the storage keeps only the base
    bh.output("rmi", "--prune")
    for old in sorted(images_dir().glob("colonies-operator-*.oci.tar"), key=lambda p: p.stat().st_mtime)[:-KEPT_ARCHIVES]:
        old.unlink()
    size = image.archive.stat().st_size / 1e6
    progress.say(f"[image] {image.name} built in {int(time.monotonic() - began)}s: {image.archive} ({size:.0f} MB)")


if __name__ == "__main__":
    built = operator_image()
    print(f"{built.archive}\n{built.name}")

"""Running an unpacked image with runc the way the chart's pod runs it: the image's user,
a read-only root, no capabilities, no new privileges; the host's network (the test stack
listens on loopback).

Unlike the chart, no /tmp is mounted: nothing at all is writable but /dev, so a write the
operator needed at start would fail here first.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import subprocess
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from teststack import procs
from teststack.oci_archive import Image

_ids = itertools.count()


@dataclass(frozen=True)
class User:
    uid: int
    gid: int
    home: str


def image_user(image: Image, rootfs: Path) -> User:
    """The image's USER (`uid[:gid]` or a name) as the runtime resolves it, with /etc/passwd for the rest."""
    spec = image.config.get("User") or "0"
    name, _, group = spec.partition(":")
    for line in (rootfs / "etc" / "passwd").read_text().splitlines():
        fields = line.split(":")
        if len(fields) >= 6 and name in (fields[0], fields[2]):
            return User(int(fields[2]), int(group) if group.isdigit() else int(fields[3]), fields[5])
    if not name.isdigit():
        raise ValueError(f"user {name!r} is not in the image's /etc/passwd")
    return User(int(name), int(group) if group.isdigit() else 0, "/")


def bundle_config(image: Image, rootfs: Path, args: Sequence[str], env: Mapping[str, str],
                  binds: Mapping[str, Path]) -> dict[str, Any]:
    """A runc config.json: `args` as the image's user, the image's env then `env`, `binds`
    (container path -> host path) mounted read-only."""
    user = image_user(image, rootfs)
    image_env = dict(item.split("=", 1) for item in image.config.get("Env", []))
    process_env = {"HOME": user.home} | image_env | dict(env)
    no_caps: dict[str, list[str]] = {k: [] for k in ("bounding", "effective", "inheritable", "permitted", "ambient")}
    mounts = [
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755",
                                                                               "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]},
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
         "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
        *({"destination": dest, "type": "bind", "source": str(src), "options": ["rbind", "ro"]}
          for dest, src in binds.items()),
    ]
    return {
        "ociVersion": "1.0.2",
        "process": {"terminal": False, "user": {"uid": user.uid, "gid": user.gid}, "args": list(args),
                    "env": [f"{k}={v}" for k, v in process_env.items()],
                    "cwd": image.config.get("WorkingDir") or "/", "capabilities": no_caps,
                    "noNewPrivileges": True},
        "root": {"path": str(rootfs), "readonly": True},
        "hostname": "colonies-operator",
        "mounts": mounts,
        "linux": {"namespaces": [{"type": t} for t in ("pid", "ipc", "uts", "mount")],
                  "maskedPaths": ["/proc/kcore", "/proc/keys", "/proc/timer_list", "/sys/firmware"],
                  "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]},
    }


@contextlib.contextmanager
def _container(image: Image, rootfs: Path, args: Sequence[str], env: Mapping[str, str] | None,
               binds: Mapping[str, Path] | None) -> Iterator[list[str]]:
    """The `runc run` command of a new container; the container is deleted when the block ends."""
    with tempfile.TemporaryDirectory(prefix="colonies-runc-") as tmp:
        bundle, state = Path(tmp) / "bundle", Path(tmp) / "state"
        bundle.mkdir()
        (bundle / "config.json").write_text(json.dumps(bundle_config(image, rootfs, args, env or {}, binds or {})))
        container = f"colonies-operator-test-{os.getpid()}-{next(_ids)}"
        try:
            yield ["runc", "--root", str(state), "run", "--bundle", str(bundle), container]
        finally:  # after a timeout or a failed test: nothing left running
            subprocess.run(["runc", "--root", str(state), "delete", "--force", container], capture_output=True)


def run(image: Image, rootfs: Path, args: Sequence[str], env: Mapping[str, str] | None = None,
        binds: Mapping[str, Path] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run `args` in a new container of the unpacked image; its exit code and output."""
    with _container(image, rootfs, args, env, binds) as argv:
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


@contextlib.contextmanager
def running(name: str, image: Image, rootfs: Path, args: Sequence[str], log: Path,
            env: Mapping[str, str] | None = None, binds: Mapping[str, Path] | None = None) -> Iterator[procs.Proc]:
    """`args` in a container in the background, output in `log`; stopped when the block ends
    (runc run forwards the SIGTERM to the container's process, as a kubelet would send it)."""
    with _container(image, rootfs, args, env, binds) as argv:
        proc = procs.start(name, argv, log, stop_timeout=30)
        try:
            yield proc
        finally:
            procs.stop(proc)

"""A cgroup (in every hierarchy) per real node: what it runs can be found, killed and removed.

containerd is started in `<root>/runtime` (its shims and their runc children inherit it) and
the kubelet puts pods under `<root>/kubepods`, so every process the node started, even one
whose parent died, is listed in the tree's cgroup.procs files.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

MOUNT = Path("/sys/fs/cgroup")


def hierarchies() -> list[Path]:
    """The mounted hierarchies: v1 (cpu, memory, pids, name=systemd, ...) and the hybrid v2
    `unified` one (containerd and the kubelet create their cgroups there too)."""
    out = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        sep = fields.index("-")
        if fields[sep + 1] in ("cgroup", "cgroup2") and fields[4].startswith(str(MOUNT) + "/"):
            out.append(Path(fields[4]))
    return out


def create(path: str) -> None:
    """mkdir `path` in every hierarchy; a new cpuset cgroup gets its parent's cpus and mems,
    without which no task may join it."""
    for h in hierarchies():
        d = h / path.strip("/")
        d.mkdir(parents=True, exist_ok=True)
        for f in ("cpuset.cpus", "cpuset.mems"):
            if (d / f).exists() and not (d / f).read_text().strip():
                (d / f).write_text((d.parent / f).read_text())


def pids(path: str) -> set[int]:
    out: set[int] = set()
    for h in hierarchies():
        root = h / path.strip("/")
        for procs_file in root.rglob("cgroup.procs") if root.exists() else ():
            with contextlib.suppress(OSError):
                out.update(int(p) for p in procs_file.read_text().split())
    return out


def kill_all(path: str, timeout: float = 15.0) -> int:
    """SIGKILL every process in the tree until it is empty; return how many were killed."""
    killed: set[int] = set()
    deadline = time.monotonic() + timeout
    while (left := pids(path)) and time.monotonic() < deadline:
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        killed |= left
        time.sleep(0.1)
    if pids(path):
        raise RuntimeError(f"processes in cgroup {path} survive SIGKILL: {sorted(pids(path))}")
    return len(killed)


def remove(path: str) -> None:
    """rmdir the (empty) tree in every hierarchy, deepest first."""
    for h in hierarchies():
        root = h / path.strip("/")
        if not root.exists():
            continue
        for d in sorted((p for p in root.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
            os.rmdir(d)
        os.rmdir(root)

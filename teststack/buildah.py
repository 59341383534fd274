"""buildah on a storage of the stack's own (in the cache), never the machine's default one.

The run root (locks, mount state) is a fresh temporary directory per use: nothing is left
mounted between uses, and a stale one from a killed run can never confuse the next.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from teststack import progress


@dataclass(frozen=True)
class Buildah:
    root: Path
    runroot: Path
    log: Path

    def argv(self, *args: str) -> list[str]:
        return ["buildah", "--root", str(self.root), "--runroot", str(self.runroot), "--storage-driver", "overlay",
                *args]

    def run(self, *args: str, label: str) -> None:
        """A slow step: output to the log, a progress line every 30 s."""
        progress.run_logged(self.argv(*args), label=label, log=self.log)

    def output(self, *args: str) -> str:
        """A quick query: its stdout, stripped."""
        done = subprocess.run(self.argv(*args), capture_output=True, text=True, timeout=300)
        if done.returncode != 0:
            raise RuntimeError(f"buildah {' '.join(args)} failed ({done.returncode}): {done.stderr.strip()}")
        return done.stdout.strip()

    def has_image(self, name: str) -> bool:
        return subprocess.run(self.argv("inspect", "--type", "image", name), capture_output=True).returncode == 0


@contextlib.contextmanager
def storage(root: Path, log: Path) -> Iterator[Buildah]:
    root.mkdir(parents=True, exist_ok=True)
    runroot = Path(tempfile.mkdtemp(prefix="colonies-operator-buildah-"))
    try:
        yield Buildah(root, runroot, log)
    finally:
        shutil.rmtree(runroot, ignore_errors=True)

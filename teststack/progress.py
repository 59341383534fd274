"""Progress lines for long steps: which step, how far, and the time so far."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

_START = time.monotonic()


def elapsed() -> str:
    s = int(time.monotonic() - _START)
    return f"{s // 60}m{s % 60:02d}s"


def say(message: str) -> None:
    print(f"[{elapsed()}] {message}", file=sys.stderr, flush=True)


def run_logged(
    argv: Sequence[str], *, label: str, log: Path, env: dict[str, str] | None = None,
    cwd: Path | None = None, heartbeat: float = 30.0,
) -> None:
    """Run a slow command with its output in `log`, saying it is still alive every `heartbeat` s.

    On failure the tail of the log is printed, so a broken build explains itself.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    began = time.monotonic()
    with log.open("ab") as out:
        out.write(f"\n$ {' '.join(argv)}\n".encode())
        out.flush()
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=cwd)
        while True:
            try:
                rc = proc.wait(timeout=heartbeat)
                break
            except subprocess.TimeoutExpired:
                say(f"  {label}: still running ({int(time.monotonic() - began)}s in this step)")
    if rc != 0:
        tail = log.read_text(errors="replace").splitlines()[-40:]
        raise RuntimeError(f"{label} failed (exit {rc}); last lines of {log}:\n" + "\n".join(tail))

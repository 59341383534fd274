"""The bench stops cleanly on SIGTERM, and on SIGINT even when its shell started it with
SIGINT ignored (a background job): every `finally` runs, so nothing it started is left."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

RUN = """
import asyncio, signal, sys
from pathlib import Path
from bench import run

async def phase():
    run._stop_on_signals()
    try:
        Path(sys.argv[1]).write_text("running")
        await asyncio.sleep(60)
    finally:
        Path(sys.argv[1]).write_text("cleaned up")

for sig in run.STOP_SIGNALS:
    signal.signal(sig, signal.default_int_handler)
try:
    asyncio.run(phase())
except (asyncio.CancelledError, KeyboardInterrupt):
    sys.exit(130)
"""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_cancels_the_run_and_its_finally_blocks_run(tmp_path: Path, sig: signal.Signals) -> None:
    mark = tmp_path / "mark"
    ignore_sigint = lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)  # noqa: E731 - as a shell's background job
    proc = subprocess.Popen([sys.executable, "-c", RUN, str(mark)], preexec_fn=ignore_sigint)
    try:
        deadline = time.monotonic() + 30
        while not mark.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        proc.send_signal(sig)
        assert proc.wait(timeout=30) == 130
    finally:
        proc.kill()
    assert mark.read_text() == "cleaned up"

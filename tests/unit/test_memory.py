"""Memory the operator frees goes back to the system: large blocks (a TLS connection's
256 KiB read buffer, one per followed log) stay on mmap even after the first one is freed."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

# Connections open and close while long-lived objects (cached Jobs) are made in between, as
# when every log stream reconnects after an apiserver restart; then they close again.
PROGRAM = textwrap.dedent("""
    import gc, os, sys
    from colonies_operator import memory
    if sys.argv[1] == "fixed":
        assert memory.keep_large_blocks_returnable()
    def rss_mib():
        return int(open(f"/proc/{os.getpid()}/statm").read().split()[1]) * 4096 / 2**20
    kept = []
    for round_ in range(2):
        buffers = []
        for _ in range(60):
            buffer = bytearray(256 * 1024)
            buffer[::4096] = b"x" * 64  # touched: resident
            buffers.append(buffer)
            kept.append([str(i) * 10 for i in range(200)])
        before = rss_mib()
        del buffers
        gc.collect()
    print(before - rss_mib())
""")


def freed_mib(program: str, mode: str) -> float:
    """Run `program` in a fresh interpreter (allocator settings are for the whole process);
    it prints how many MiB of RSS went back to the system."""
    return float(subprocess.run([sys.executable, "-c", program, mode], check=True, capture_output=True,
                                text=True).stdout)


@pytest.mark.parametrize("mode, returned", [("fixed", True), ("glibc's default", False)])
def test_large_blocks_freed_after_the_first_ones_go_back_to_the_system(mode, returned):
    freed = freed_mib(PROGRAM, mode)
    # 60 × 256 KiB = 15 MiB: given back whole, or kept by the heap when the threshold moved
    assert (freed > 12) is returned, freed


# Small blocks freed between objects that live on, as TLS state is when streams reconnect.
FRAGMENTED = textwrap.dedent("""
    import gc, os, sys
    from colonies_operator import memory
    def rss_mib():
        return int(open(f"/proc/{os.getpid()}/statm").read().split()[1]) * 4096 / 2**20
    kept, freed = [], []
    for _ in range(4000):
        freed.append(bytearray(8 * 1024))
        kept.append(bytearray(1024))
    del freed
    gc.collect()
    before = rss_mib()
    if sys.argv[1] == "trimmed":
        assert memory.give_back_free_pages()
    print(before - rss_mib())
""")


@pytest.mark.parametrize("mode, returned", [("trimmed", True), ("left alone", False)])
def test_free_pages_between_live_objects_go_back_when_trimmed(mode, returned):
    freed = freed_mib(FRAGMENTED, mode)
    # 4,000 × 8 KiB = 31 MiB freed in holes between live 1 KiB blocks; a trim gives back the
    # whole pages inside each hole, about half of it
    assert (freed > 10) is returned, freed

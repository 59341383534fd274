"""Memory the operator frees goes back to the system.

Every TLS connection holds a 256 KiB read buffer (asyncio's SSLProtocol), and the operator
opens one per followed log. glibc serves blocks that large with mmap and unmaps them when
they are freed, until the first one is freed: then it raises its mmap threshold to that
block's size (its "dynamic threshold"), and the next large blocks come from the heap, where
they sit among long-lived objects and are never given back. In the soak, the first apiserver
restart (every log stream reconnects at once) raised the RSS by ~30 MiB for good. Setting the
threshold turns that adjustment off.

Smaller blocks freed in the middle of the heap (a reconnect storm's TLS state and buffers,
between objects that live on) are not given back by glibc until `malloc_trim`, which the
operator calls once a minute: it gives back every whole free page, wherever it is.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import functools
import logging
from typing import Any

log = logging.getLogger(__name__)

M_MMAP_THRESHOLD = -3          # malloc.h
MMAP_THRESHOLD = 128 * 1024    # glibc's own default, kept fixed
TRIM_SECONDS = 60.0


@functools.cache
def _glibc(function: str) -> Any:
    """A glibc function, or None where the C library is another (musl): nothing to do there."""
    try:
        return getattr(ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6"), function)
    except (OSError, AttributeError):
        return None


def keep_large_blocks_returnable() -> bool:
    """Fix glibc's mmap threshold; False where that cannot be done."""
    mallopt = _glibc("mallopt")
    done = mallopt is not None and bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD))
    log.debug("glibc mmap threshold fixed at %d bytes: %s", MMAP_THRESHOLD, done)
    return done


def give_back_free_pages() -> bool:
    """`malloc_trim(0)`: True when glibc gave memory back."""
    trim = _glibc("malloc_trim")
    return trim is not None and bool(trim(0))


async def give_back_regularly(seconds: float = TRIM_SECONDS) -> None:
    while True:
        await asyncio.sleep(seconds)
        give_back_free_pages()

"""Waiting for an event with a time limit, in a way a cancel always ends.

Python 3.11's `asyncio.wait_for` returns normally, swallowing the cancel, when what it waits
for ends in the very turn the waiting task is cancelled (fixed in 3.12). A supervisor or a log
flusher that swallows its cancel runs on, and whoever awaits its end waits with it (an
executor's removal once took 135 s instead of 10). `asyncio.timeout` has no such gap.
"""

from __future__ import annotations

import asyncio


async def wait_set(event: asyncio.Event, seconds: float) -> bool:
    """True once `event` is set, False after `seconds` without it; a cancel always propagates."""
    try:
        async with asyncio.timeout(seconds):
            await event.wait()
    except TimeoutError:
        return False
    return True

"""Per-call overhead of the Colonies client: signing plus building the envelope, and a whole
call through the client against an in-memory transport (no network, no server).

    python3 bench/client_overhead.py [iterations]

Prints microseconds per call. Target (issue 2): sign + envelope under 200 µs.
"""

from __future__ import annotations

import asyncio
import base64
import json
import statistics
import sys
import time

import httpx

from colonies_operator.colonies.client import Connection, ServerAddress, envelope
from colonies_operator.colonies.crypto import Key

KEY = Key.generate()
FIELDS = {"processid": "ab" * 32, "message": "a log line of ordinary length, about eighty characters long........\n"}


def sign_and_envelope(n: int) -> list[float]:
    rounds = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(n):
            envelope("addlogmsg", FIELDS, KEY)
        rounds.append((time.perf_counter() - start) / n * 1e6)
    return rounds


async def whole_call(n: int) -> list[float]:
    ok = json.dumps({"payloadtype": "addlogmsg", "payload": base64.b64encode(b"{}").decode(), "error": False})
    transport = httpx.MockTransport(lambda request: httpx.Response(200, text=ok))
    rounds = []
    async with Connection(ServerAddress("bench.invalid", 1), transport=transport) as conn:
        client = conn.client(KEY)
        for _ in range(5):
            start = time.perf_counter()
            for _ in range(n):
                await client.add_log(FIELDS["processid"], FIELDS["message"])
            rounds.append((time.perf_counter() - start) / n * 1e6)
    return rounds


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    env = sign_and_envelope(n)
    call = asyncio.run(whole_call(n // 5))
    print(f"sign + envelope:                 median {statistics.median(env):7.1f} µs/call (min {min(env):.1f})")
    print(f"whole call, in-memory transport: median {statistics.median(call):7.1f} µs/call (min {min(call):.1f})")


if __name__ == "__main__":
    main()

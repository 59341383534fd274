"""Baseline 1, the ceiling: a minimal async executor with no Kubernetes at all.

It registers like the operator, then runs `--concurrency` assign loops on the operator's own
Colonies client (one HTTP pool, coincurve signatures) and closes each process as successful
at once. Whatever rate it reaches is what the Colonies server (and this machine) allow an
executor: the operator cannot launch faster than it can assign.

    python3 -m bench.ceiling --out FILE --count N [--concurrency K] ...   (run by bench.run)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid

from colonies_operator.colonies.client import Connection, RetryPolicy, ServerAddress
from colonies_operator.colonies.crypto import Key


async def run(a: argparse.Namespace) -> dict:
    async with Connection(ServerAddress(a.host, a.port), retry=RetryPolicy(attempts=10, deadline=60)) as conn:
        owner = conn.client(Key(a.colony_prvkey))
        key = Key.generate()
        me = conn.client(key)
        name = f"ceiling-{uuid.uuid4().hex[:8]}"
        await owner.add_executor(a.colony, key.id, name, a.executor_type)
        await owner.approve_executor(a.colony, name)
        await me.add_function(a.colony, name, "execute", a.executor_type)
        assigned: list[tuple[str, float]] = []
        closes: set[asyncio.Task[None]] = set()
        closed: list[float] = []
        deadline = time.monotonic() + a.deadline
        ready = time.time()
        if a.ready_file:
            with open(a.ready_file, "w") as f:
                f.write(str(ready))

        async def close(pid: str) -> None:
            await me.close_successful(pid, [])
            closed.append(time.time())

        async def loop() -> None:
            while len(assigned) < a.count and time.monotonic() < deadline:
                process = await me.assign(a.colony, 2, available_cpu="1000000m", available_mem="1000000Gi")
                if process is None:
                    continue
                assigned.append((process.processid, time.time()))
                task = asyncio.create_task(close(process.processid))
                closes.add(task)
                task.add_done_callback(closes.discard)

        await asyncio.gather(*(loop() for _ in range(a.concurrency)))
        await asyncio.gather(*list(closes), return_exceptions=True)
        await owner.remove_executor(a.colony, name)
        return {"ready": ready, "assigned": assigned, "closed": closed}


def main() -> None:
    ap = argparse.ArgumentParser()
    for flag in ("--host", "--colony", "--colony-prvkey", "--executor-type", "--out"):
        ap.add_argument(flag, required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--count", type=int, required=True)
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--deadline", type=float, default=600)
    ap.add_argument("--ready-file", default="")
    a = ap.parse_args()
    result = asyncio.run(run(a))
    with open(a.out, "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main()

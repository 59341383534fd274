"""Baseline 0, the Kubernetes ceiling: what the same apiserver takes in Job creates, with no
Colonies at all.

It builds the very Jobs the operator would (`jobs.builder`, the same settings and the same
funcspec), and creates them through the operator's own client (`KubeApi.connect`: one
connection pool, the same sizes) with as many creates in flight as the operator allows
itself (`CREATES_IN_FLIGHT`); kwok then runs and ends them. No executor that creates Jobs can
launch faster than this on the same machine at the same moment: the operator's launch rate
divided by this one says how much of the limit it reaches.

    python3 -m bench.kube_ceiling --out FILE --count N --namespace NS --kubeconfig F [--rate R] ...
    (run by bench.run: all at once for the burst, `--rate` for each step of bench.steps)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import time

from colonies_operator.colonies.models import Process
from colonies_operator.jobs import builder, spec
from colonies_operator.runtime.assigning import CREATES_IN_FLIGHT
from colonies_operator.runtime.kube import KubeApi


def funcspec(run_for: str, log_lines: int) -> dict:
    """The bench's funcspec (bench.run.Bench.spec), as the server would hold it."""
    return {"funcname": "execute", "maxwaittime": -1, "maxexectime": -1, "maxretries": 0,
            "conditions": {"nodes": 1, "processespernode": 1, "cpu": "1m", "mem": "1Mi"},
            "kwargs": {"docker-image": "busybox:1.36", "cmd": "echo", "args": ["bench"]},
            "env": {"KWOK_RUN_FOR": run_for, "KWOK_LOG_LINES": str(log_lines)}}


def jobs(count: int, namespace: str, run_for: str, log_lines: int) -> list[dict]:
    """`count` Jobs exactly as the operator's builder makes them, for made-up process ids."""
    settings = builder.JobSettings(namespace=namespace, executor_name="kube-ceiling", executor_id="0" * 64,
                                   colony_name="bench")
    raw = funcspec(run_for, log_lines)
    out = []
    for _ in range(count):
        process = Process.from_json({"processid": secrets.token_hex(32), "state": 1, "retries": 0, "spec": raw})
        out.append(builder.build_job(spec.parse_process(process, spec.SpecPolicy()), settings))
    return out


async def run(a: argparse.Namespace) -> dict:
    kube = await KubeApi.connect(a.kubeconfig)
    try:
        todo = jobs(a.count, a.namespace, a.run_for, a.log_lines)  # built before the clock starts
        created: list[float] = []
        scheduled: dict[str, float] = {}  # process id → when its create was due (with --rate)
        errors: list[str] = []
        gate = asyncio.Semaphore(a.concurrency)
        ready = time.time()
        if a.ready_file:
            with open(a.ready_file, "w") as f:
                f.write(str(ready))

        async def create(job: dict) -> None:
            async with gate:
                try:
                    await kube.create_job(a.namespace, job)
                    created.append(time.time())
                except Exception as exc:  # noqa: BLE001 - counted, not fatal: a ceiling with errors says so
                    errors.append(f"{type(exc).__name__}: {exc}"[:200])

        async def paced() -> None:
            """One create due every 1/rate s, as submissions arrive at the operator."""
            tasks, start = [], time.monotonic()
            for i, job in enumerate(todo):
                delay = start + i / a.rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                scheduled[job["metadata"]["annotations"][builder.PROCESS_ID_ANNOTATION]] = time.time()
                tasks.append(asyncio.create_task(create(job)))
            await asyncio.gather(*tasks)

        work = paced() if a.rate > 0 else asyncio.gather(*(create(j) for j in todo))
        await asyncio.wait_for(work, a.deadline)
        return {"ready": ready, "created": created, "scheduled": scheduled, "errors": errors}
    finally:
        await kube.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    for flag in ("--namespace", "--kubeconfig", "--out"):
        ap.add_argument(flag, required=True)
    ap.add_argument("--count", type=int, required=True)
    ap.add_argument("--concurrency", type=int, default=CREATES_IN_FLIGHT)
    ap.add_argument("--run-for", default="2s")
    ap.add_argument("--log-lines", type=int, default=5)
    ap.add_argument("--deadline", type=float, default=600)
    ap.add_argument("--ready-file", default="")
    ap.add_argument("--rate", type=float, default=0, help="creates due per second; 0: all at once (a burst)")
    a = ap.parse_args()
    result = asyncio.run(run(a))
    with open(a.out, "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main()

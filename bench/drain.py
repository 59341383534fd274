"""P1 capacity-bound drain: an executor with room for `--drain-slots` Jobs and a backlog of
`--drain` processes that each run `--drain-run-for` (16, 1,000 and 3 s by default). Users'
executors are almost always full: what counts there is how close the executor comes to the
bound its capacity sets (slots ÷ run time, processes per second), and how soon a Job whose
pod ended is followed by the next one created (its slot handed on).
"""

from __future__ import annotations

import bisect
import time
from typing import TYPE_CHECKING, Any

from bench import env
from bench.figures import summary

if TYPE_CHECKING:
    from bench.harness import Bench

BIG = {"cpu": "100000", "memory": "100000Gi"}


def handovers(finished: list[float], created: list[float]) -> list[float]:
    """For each Job that finished while others still waited, the time until the next Job was
    created (seconds)."""
    created = sorted(created)
    out = []
    for end in sorted(finished):
        i = bisect.bisect_left(created, end)
        if i < len(created):
            out.append(created[i] - end)
    return out


async def drain(b: Bench) -> None:
    n, slots = b.args.drain, b.args.drain_slots
    run_for = b.args.drain_run_for
    seconds = float(run_for.rstrip("s"))
    bound = slots / seconds
    out: dict[str, Any] = {"processes": n, "slots": slots, "pod_run_for": run_for,
                           "capacity_bound_per_second": bound}
    b.results["p1_drain"] = out
    if b.operator is None:
        b.start_operator("operator")
    ns = b.namespace("drain")
    etype = f"bench-drain-{b.run_id}"
    await b.ready_executor(ns, "drain", etype, capacity=BIG | {"maxConcurrentJobs": slots},
                           assignTimeoutSeconds=5)
    obs = await b.observer(ns, pods=True)
    try:
        await b.settle("P1 drain")
        cpu0 = b.cpu.sample()
        t0 = time.time()
        submitted = await b.submit(b.spec(etype, run_for, 5), n)
        done = await b.wait_final(list(submitted), n / bound * 3 + 300, "drain")
        t1 = time.time()
        created = sorted(j.seen for j in obs.jobs.values())
        finished = obs.ended()  # the pod's end: the Job's Complete comes a batch period (1 s) later
        span = (finished[-1] - created[0]) if created and finished else None
        per_second = (len(finished) / span) if span else None
        # the last `slots` Jobs to finish hand their slot to nobody
        gaps = handovers(finished[:-slots] if len(finished) > slots else [], created)
        out.update({
            "processes_per_second": per_second,
            "of_capacity_bound": per_second / bound if per_second else None,
            "finished_to_next_created_s": summary(gaps),
            "succeeded": sum(p.state.name == "SUCCESS" for p in done.values()),
            "cpu": env.CpuMeter.delta(cpu0, b.cpu.sample(), t1 - t0),
        })
        b.series["drain"] = {"created": [t - created[0] for t in created] if created else [],
                             "finished": [t - created[0] for t in finished] if created else []}
    finally:
        await obs.stop()

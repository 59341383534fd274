"""P1 shared type: one colony, one executor type, three executors that take from one backlog:
two ColonyExecutors on the operator under test and a third on a second operator process.

Colonies alone decides which executor gets which process. A backlog of `--shared` processes
(1,000 by default) drains across them; each process must run in exactly one Job, in one of the
three namespaces, and the split is reported.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import TYPE_CHECKING, Any

from bench import env
from bench.figures import summary
from teststack import procs

if TYPE_CHECKING:
    from bench.harness import Bench

BIG = {"cpu": "100000", "memory": "100000Gi"}


def once_each(submitted: list[str], uids_by_namespace: dict[str, dict[str, set[str]]]) -> dict[str, Any]:
    """Where each process ran: Jobs per process over every namespace, and the split."""
    jobs: Counter[str] = Counter()
    split: Counter[str] = Counter()
    for namespace, uids in uids_by_namespace.items():
        for pid, seen in uids.items():
            jobs[pid] += len(seen)
            split[namespace] += 1
    return {"split": dict(split),
            "processes_in_more_than_one_job": sum(1 for p in submitted if jobs[p] > 1),
            "processes_without_a_job": sum(1 for p in submitted if jobs[p] == 0)}


async def shared(b: Bench) -> None:
    n = b.args.shared
    out: dict[str, Any] = {"processes": n}
    b.results["p1_shared"] = out
    if b.operator is None:
        b.start_operator("operator")
    etype = f"bench-shared-{b.run_id}"
    first, second = b.namespace("shared-a"), b.namespace("shared-b")
    other = f"bench2-shared-{b.run_id}"  # outside the first operator's glob: the second one's alone
    env.make_namespace(b.state, other)
    operator2 = env.start_operator(b.state, [other], f"operator2-{b.run_id}", b.out / "logs")
    b.cpu.track("operator2", operator2.pid)
    try:
        for ns, name in ((first, "shared-a"), (second, "shared-b"), (other, "shared-c")):
            await b.ready_executor(ns, name, etype, capacity=BIG | {"maxConcurrentJobs": 2000},
                                   assignTimeoutSeconds=5)
        observers = {ns: await b.observer(ns) for ns in (first, second, other)}
        try:
            await b.settle("P1 shared")
            cpu0, t0 = b.cpu.sample(), time.time()
            submitted = await b.submit(b.spec(etype, b.args.run_for, 5), n)
            done = await b.wait_final(list(submitted), n / 5 + 300, "shared")
            t1 = time.time()
            seen = sorted(j.seen for obs in observers.values() for j in obs.jobs.values())
            out.update(once_each(list(submitted), {ns: obs.uids for ns, obs in observers.items()}))
            out.update({
                "executors": {first: "operator 1", second: "operator 1", other: "operator 2"},
                "jobs_per_second": (len(seen) - 1) / (seen[-1] - seen[0]) if len(seen) > 1 else None,
                "submitted_to_job_created_s": summary([
                    j.seen - submitted[j.process_id] for obs in observers.values() for j in obs.jobs.values()
                    if j.process_id in submitted]),
                "succeeded": sum(p.state.name == "SUCCESS" for p in done.values()),
                "cpu": env.CpuMeter.delta(cpu0, b.cpu.sample(), t1 - t0),
            })
        finally:
            for obs in observers.values():
                await obs.stop()
    finally:
        procs.stop(operator2.proc)
        b.cpu.forget("operator2")

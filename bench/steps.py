"""P1 highest sustained rate: the offered rate steps up (10, 20, 40, 60, 80/s by default) until
submitted → Job created p99 passes 1 s; the last step held is the figure. The operator, baseline
0 (the same Jobs created at that rate with no Colonies: the Kubernetes ceiling) and baseline 2
each climb on their own, in the same run.

Each step waits for its processes to end before the next begins, so a step measures its own
rate and not the backlog of the one before.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import TYPE_CHECKING, Any

from bench import profile
from bench.env import say
from bench.figures import summary
from bench.observe import Observer
from teststack import procs

if TYPE_CHECKING:
    from bench.harness import Bench

P99_LIMIT_S = 1.0  # submitted → Job created p99 a step may reach and still count as held
BIG_CAPACITY = {"cpu": "100000", "memory": "100000Gi", "maxConcurrentJobs": 100000}


def held(climbed: list[dict[str, Any]]) -> float | None:
    """The highest rate before the first step whose p99 passed the limit (None: not even the first)."""
    best = None
    for step in climbed:
        p99 = (step.get("submitted_to_job_created_s") or {}).get("p99")
        if p99 is None or p99 > P99_LIMIT_S:
            break
        best = step["rate"]
    return best


def _step(rate: float, launched: int, latencies: list[float]) -> dict[str, Any]:
    return {"rate": rate, "launched": launched, "submitted_to_job_created_s": summary(latencies)}


def _latencies(obs: Observer, due: dict[str, float]) -> list[float]:
    return [job.seen - due[job.process_id] for job in obs.jobs.values() if job.process_id in due]


async def _climb(b: Bench, who: str, rates: list[float], seconds: float, obs: Observer,
                 offer: Any) -> list[dict[str, Any]]:
    """Step up through `rates`; `offer(rate)` offers one step and returns process id → due time."""
    climbed = []
    for rate in rates:
        await b.settle(f"P1 steps, {who} at {rate:g}/s")
        step = await _offer_step(b, rate, obs, offer)
        climbed.append(step)
        p99 = (step["submitted_to_job_created_s"] or {}).get("p99")
        say(f"P1 steps, {who} at {rate:g}/s: p99 submitted → Job created "
            f"{'—' if p99 is None else f'{p99 * 1000:.0f} ms'}")
        if _missed(step):
            break
        await asyncio.sleep(float(b.args.run_for.rstrip("s")) + 2)  # its pods end before the next step
    return climbed


async def _offer_step(b: Bench, rate: float, obs: Observer, offer: Any) -> dict[str, Any]:
    due = await offer(rate)
    deadline = time.monotonic() + 120
    while sum(j.process_id in due for j in obs.jobs.values()) < len(due) and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    step = _step(rate, sum(j.process_id in due for j in obs.jobs.values()), _latencies(obs, due))
    step["offered"] = len(due)
    return step


def _missed(step: dict[str, Any]) -> bool:
    p99 = (step["submitted_to_job_created_s"] or {}).get("p99")
    return p99 is None or p99 > P99_LIMIT_S or step["launched"] < step["offered"]


async def _profile_first_miss(b: Bench, climbed: list[dict[str, Any]], obs: Observer, offer: Any) -> dict[str, Any] | None:
    """The first step that missed, offered once more with py-spy on the operator, kept as
    bench/profiles/p1-steps-first-miss.txt: where the operator's CPU goes when it can no longer
    keep up. A step of its own, after the climb: the sampler's CPU does not weigh on the steps
    that are measured."""
    if not b.args.profile or not climbed or not _missed(climbed[-1]):
        return None
    rate = climbed[-1]["rate"]
    await asyncio.sleep(float(b.args.run_for.rstrip("s")) + 2)
    await b.settle(f"P1 steps, operator at {rate:g}/s again, profiled")
    spy = profile.start(b, f"p1-steps-{rate:g}-per-s")
    if spy is None:
        return None
    step = await _offer_step(b, rate, obs, offer)
    p99 = (step["submitted_to_job_created_s"] or {}).get("p99")
    header = (f"the first step that missed, offered again: {rate:g}/s; p99 submitted → Job created "
              f"{'—' if p99 is None else f'{p99 * 1000:.0f} ms'} with the sampler on\n")
    return {"step": step, "profile": profile.stop(b, spy, published_as="p1-steps-first-miss", header=header)}


async def _operator(b: Bench, rates: list[float], seconds: float) -> dict[str, Any]:
    if b.operator is None:
        b.start_operator("operator")
    ns = b.namespace("steps")
    etype = f"bench-steps-{b.run_id}"
    await b.ready_executor(ns, "steps", etype, capacity=BIG_CAPACITY, assignTimeoutSeconds=5)
    obs = await b.observer(ns)
    try:
        async def offer(rate: float) -> dict[str, float]:
            return await b.submit_at_rate(b.spec(etype, b.args.run_for, 5), rate, seconds)
        climbed = await _climb(b, "operator", rates, seconds, obs, offer)
        return {"steps": climbed, "first_miss_profiled": await _profile_first_miss(b, climbed, obs, offer)}
    finally:
        await obs.stop()


async def _kube(b: Bench, rates: list[float], seconds: float) -> dict[str, Any]:
    ns = b.namespace("steps-kube")
    obs = await b.observer(ns)
    try:
        async def offer(rate: float) -> dict[str, float]:
            count = int(rate * seconds)
            proc, result, _ = b.start_baseline("kube_ceiling", f"bench-steps-kube-{rate:g}-{b.run_id}", count, ns,
                                               seconds + 120, rate=rate)
            await b.wait_proc(proc, seconds + 150)
            return json.loads(result.read_text())["scheduled"] if result.exists() else {}
        return {"steps": await _climb(b, "baseline 0", rates, seconds, obs, offer)}
    finally:
        await obs.stop()


async def _naive(b: Bench, rates: list[float], seconds: float) -> dict[str, Any]:
    ns = b.namespace("steps-naive")
    etype = f"bench-steps-naive-{b.run_id}"
    obs = await b.observer(ns)
    total = int(sum(rates) * seconds)
    proc, _, ready = b.start_baseline("naive", etype, total, ns, len(rates) * (seconds + 300))
    try:
        await b.wait_file(ready, proc)

        async def offer(rate: float) -> dict[str, float]:
            return await b.submit_at_rate(b.spec(etype, b.args.run_for, 5), rate, seconds)
        return {"steps": await _climb(b, "baseline 2", rates, seconds, obs, offer)}
    finally:
        procs.stop(proc)
        await obs.stop()


async def steps(b: Bench) -> None:
    rates = [float(r) for r in b.args.step_rates.split(",")]
    seconds = b.args.step_seconds
    out: dict[str, Any] = {"rates": rates, "step_seconds": seconds, "p99_limit_s": P99_LIMIT_S,
                           "pod_run_for": b.args.run_for}
    b.results["p1_steps"] = out
    for key, who, climb in (("operator", "operator", _operator), ("kube_ceiling", "kube", _kube),
                            ("naive", "naive", _naive)):
        if who != "operator" and who not in b.args.executors:
            continue
        climbed = await climb(b, rates, seconds)
        out[key] = climbed | {"highest_rate_held": held(climbed["steps"])}

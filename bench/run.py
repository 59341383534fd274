"""The benchmark: P1 launch rate (burst and sustained), P2 assigned → Job created (under those
loads and at a light one), P3 Kubernetes requests per process, P4 in-flight scale, P5 recovery
after SIGKILL; the operator as it ships next to baseline 0 (bench.kube_ceiling: the same Jobs
created with no Colonies, the Kubernetes ceiling), baseline 1 (bench.ceiling) and baseline 2
(bench.naive), all in one run on one stack.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from colonies_operator.colonies.client import Connection, RetryPolicy, ServerAddress
from colonies_operator.colonies.models import ProcessState
from colonies_operator.runtime.kube import KubeApi

from bench import compare, drain, env, profile, report, shared, soak, steps
from bench.figures import cpu_per_process, rate, summary
from bench.env import say
from bench.harness import Bench
from bench.observe import Observer
from teststack import procs
from teststack.state import StackState

IN_FLIGHT = "colonies_operator_processes_in_flight"
SUCCEEDED = "colonies_operator_processes_total"
BIG_CAPACITY = {"cpu": "100000", "memory": "100000Gi"}
# assigned → the Job's create sent: the operator's own share of a launch, before the apiserver's
OWN_SHARE = "colonies_operator_assigned_to_job_create_sent_seconds"


# --- P1 burst ------------------------------------------------------------------------------------

async def burst(b: Bench) -> None:
    n = b.args.burst
    run_for = b.args.run_for
    out: dict[str, Any] = {"processes": n, "pod_run_for": run_for}
    b.results["p1_burst"] = out
    b.series["burst"] = {}

    # the operator: the backlog is there before the operator process starts
    ns = b.namespace("burst")
    etype = f"bench-burst-{b.run_id}"
    env.create_executor(b.state, ns, "burst", etype, capacity=BIG_CAPACITY | {"maxConcurrentJobs": n + 50},
                        assignTimeoutSeconds=5)
    obs = await b.observer(ns)
    submitted = await b.submit(b.spec(etype, run_for, 5), n)
    await b.settle("P1 burst, operator")
    api_before = b.scrape_apiserver()
    cpu0 = b.cpu.sample()
    t0 = time.time()
    op = b.start_operator("operator")
    spy = profile.start(b, "p1-burst") if b.args.profile else None
    await b.wait_jobs(obs, n, 300, "operator burst")
    launched = obs.launch_times()
    api_after = b.scrape_apiserver()
    done = await b.wait_final(list(submitted), 300, "operator burst")
    scrape = b.scrape()
    cpu1 = b.cpu.sample()
    t1 = time.time()
    out["operator"] = {
        "jobs_per_second": rate(launched),
        "operator_start_to_first_job_s": launched[0] - t0 if launched else None,
        "first_to_last_job_s": launched[-1] - launched[0] if launched else None,
        "assigned_to_job_created_s": summary(b.latencies(obs, done)),
        "succeeded": sum(p.state is ProcessState.SUCCESS for p in done.values()),
        "kube_requests_per_process": scrape.kube_requests() / n if scrape else None,
        "kube_requests": scrape.kube_by() if scrape else None,
        "log_streams_per_process": scrape.kube_requests(exclude_verbs=()) / n - scrape.kube_requests() / n if scrape else None,
        "cpu": env.CpuMeter.delta(cpu0, cpu1, t1 - t0),
        "rss_mib": env.rss_mib(op.pid),
        "apiserver_job_create_s": apiserver_job_creates(api_before, api_after),
    }
    if scrape:
        out["operator"]["histogram_assigned_to_job_created_s"] = hist_summary(
            env.histogram_delta(None, scrape, "colonies_operator_assigned_to_job_created_seconds"))
        out["operator"]["histogram_assign_roundtrip_s"] = hist_summary(
            env.histogram_delta(None, scrape, "colonies_operator_assign_roundtrip_seconds"))
        out["operator"]["histogram_own_share_s"] = hist_summary(
            env.histogram_delta(None, scrape, OWN_SHARE))
    out["operator"]["cpu_seconds_per_process"] = cpu_per_process(out["operator"]["cpu"], n)
    b.series["burst"]["operator"] = [t - launched[0] for t in launched] if launched else []
    b.series["latency_burst_operator"] = b.latencies(obs, done)
    if spy:
        out["operator"]["profile"] = profile.stop(b, spy)
    await obs.stop()
    b.series["burst_scrape"] = scrape

    if "kube" in b.args.executors:
        await burst_kube_ceiling(b, out)
    if "ceiling" not in b.args.executors:
        return
    # baseline 1: assign + close, no Kubernetes
    etype = f"bench-burst-ceiling-{b.run_id}"
    submitted = await b.submit(b.spec(etype, run_for, 5), n)
    await b.settle("P1 burst, baseline 1")
    cpu0 = b.cpu.sample()
    t0 = time.time()
    proc, result, _ = b.start_baseline("ceiling", etype, n, None, 300)
    await b.wait_proc(proc, 330)
    data = json.loads(result.read_text())
    times = sorted(t for _, t in data["assigned"])
    cpu = env.CpuMeter.delta(cpu0, b.cpu.sample(), time.time() - t0)
    out["ceiling"] = {"jobs_per_second": rate(times), "first_to_last_s": times[-1] - times[0] if times else None,
                      "cpu": cpu, "cpu_seconds_per_process": cpu_per_process(cpu, n)}
    b.series["burst"]["ceiling"] = [t - times[0] for t in times] if times else []

    if "naive" not in b.args.executors:
        return
    # baseline 2: pycolonies + kubernetes, a thread per process
    ns = b.namespace("burst-naive")
    etype = f"bench-burst-naive-{b.run_id}"
    obs = await b.observer(ns)
    submitted = await b.submit(b.spec(etype, run_for, 5), n)
    await b.settle("P1 burst, baseline 2")
    api_before = b.scrape_apiserver()
    cpu0 = b.cpu.sample()
    t0 = time.time()
    proc, result, _ = b.start_baseline("naive", etype, n, ns, 600)
    await b.wait_jobs(obs, n, 600, "naive burst")
    launched = obs.launch_times()
    api_after = b.scrape_apiserver()
    await b.wait_proc(proc, 600)
    done = await b.processes(list(submitted))
    data = json.loads(result.read_text())
    out["naive"] = {
        "jobs_per_second": rate(launched),
        "start_to_first_job_s": launched[0] - t0 if launched else None,
        "first_to_last_job_s": launched[-1] - launched[0] if launched else None,
        "assigned_to_job_created_s": summary(b.latencies(obs, done)),
        "succeeded": sum(p.state is ProcessState.SUCCESS for p in done.values()),
        "errors": data.get("error_count"), "cpu": env.CpuMeter.delta(cpu0, b.cpu.sample(), time.time() - t0),
        "apiserver_job_create_s": apiserver_job_creates(api_before, api_after),
    }
    b.series["burst"]["naive"] = [t - launched[0] for t in launched] if launched else []
    b.series["latency_burst_naive"] = b.latencies(obs, done)
    await obs.stop()


async def burst_kube_ceiling(b: Bench, out: dict[str, Any]) -> None:
    """Baseline 0: the same number of the same Jobs, created by a bare loop with the operator's
    client and concurrency, no Colonies; timed by the same watch as the operator's."""
    n = out["processes"]
    ns = b.namespace("burst-kube")
    obs = await b.observer(ns)
    await b.settle("P1 burst, baseline 0")
    api_before = b.scrape_apiserver()
    cpu0 = b.cpu.sample()
    t0 = time.time()
    proc, result, _ = b.start_baseline("kube_ceiling", f"bench-burst-kube-{b.run_id}", n, ns, 300)
    await b.wait_jobs(obs, n, 300, "baseline 0 burst")
    launched = obs.launch_times()
    api_after = b.scrape_apiserver()
    await b.wait_proc(proc, 60)
    data = json.loads(result.read_text()) if result.exists() else {}
    cpu = env.CpuMeter.delta(cpu0, b.cpu.sample(), time.time() - t0)
    out["kube_ceiling"] = {
        "cpu_seconds_per_process": cpu_per_process(cpu, n),
        "jobs_per_second": rate(launched),
        "start_to_first_job_s": launched[0] - t0 if launched else None,
        "first_to_last_job_s": launched[-1] - launched[0] if launched else None,
        "errors": len(data.get("errors") or []),
        "cpu": cpu,
        "apiserver_job_create_s": apiserver_job_creates(api_before, api_after),
    }
    b.series["burst"]["kube_ceiling"] = [t - launched[0] for t in launched] if launched else []
    await obs.stop()


# --- P1 sustained ---------------------------------------------------------------------------------

async def sustained(b: Bench, phase: str = "sustained") -> None:
    """A steady rate of submissions: P1 sustained (a rate near the machine's ceiling) or, as
    phase "light", P2 at a light load, where assigned → created is the operator's own
    latency plus one uncontended Job create rather than the queueing of a saturated machine."""
    if phase == "light":
        per_s, seconds, key = b.args.light_rate, b.args.light_seconds, "p2_light"
    else:
        per_s, seconds, key = b.args.sustained_rate, b.args.sustained_seconds, "p1_sustained"
    n = int(per_s * seconds)
    out: dict[str, Any] = {"offered_per_second": per_s, "seconds": seconds, "processes": n,
                           "pod_run_for": b.args.run_for}
    b.results[key] = out
    b.series[phase] = {}

    async def measure(kind: str, obs: Observer | None, submitted: dict[str, float], done: dict[str, Any],
                      launched: list[float]) -> dict[str, Any]:
        t_sub = min(submitted.values())
        lat = []
        if obs is not None:
            for job in obs.jobs.values():
                if job.process_id in submitted:
                    lat.append(job.seen - submitted[job.process_id])
        else:
            lat = [p.starttime.timestamp() - submitted[pid] for pid, p in done.items() if p.starttime]
        b.series[phase][kind] = [t - t_sub for t in launched]
        return {"jobs_per_second": rate(launched), "launched": len(launched),
                "behind_at_end_s": (max(launched) - max(submitted.values())) if launched else None,
                "submitted_to_job_created_s": summary(lat),
                "succeeded": sum(p.state is ProcessState.SUCCESS for p in done.values())}

    # the operator (already running since the burst)
    if b.operator is None:
        b.start_operator("operator")
    ns = b.namespace(phase)
    etype = f"bench-{phase}-{b.run_id}"
    await b.ready_executor(ns, phase, etype, capacity=BIG_CAPACITY | {"maxConcurrentJobs": n + 50},
                           assignTimeoutSeconds=5)
    obs = await b.observer(ns)
    await b.settle(f"{key} ({per_s}/s for {seconds:.0f}s), operator")
    before, api_before = b.scrape(), b.scrape_apiserver()
    cpu0 = b.cpu.sample()
    t0 = time.time()
    spy = profile.start(b, f"p1-{phase}") if b.args.profile and phase == "sustained" else None
    submitted = await b.submit_at_rate(b.spec(etype, b.args.run_for, 5), per_s, seconds)
    await b.wait_jobs(obs, n, 300, f"operator {phase}")
    launched = obs.launch_times()
    done = await b.wait_final(list(submitted), 300, f"operator {phase}")
    await asyncio.sleep(2)  # the "reported" marks follow the closes
    after, api_after = b.scrape(), b.scrape_apiserver()
    t1 = time.time()
    o = out["operator"] = await measure("operator", obs, submitted, done, launched)
    o["assigned_to_job_created_s"] = summary(b.latencies(obs, done))
    o["apiserver_job_create_s"] = apiserver_job_creates(api_before, api_after)
    b.series[f"latency_{phase}_operator"] = b.latencies(obs, done)
    if before and after:
        o["kube_requests_per_process"] = (after.kube_requests() - before.kube_requests()) / n
        o["log_streams_per_process"] = ((after.kube_requests(exclude_verbs=()) - before.kube_requests(exclude_verbs=()))
                                        / n - o["kube_requests_per_process"])
        by_before = before.kube_by()
        o["kube_requests"] = {k: v - by_before.get(k, 0) for k, v in after.kube_by().items() if v - by_before.get(k, 0)}
        o["histogram_assigned_to_job_created_s"] = hist_summary(
            env.histogram_delta(before, after, "colonies_operator_assigned_to_job_created_seconds"))
        o["histogram_own_share_s"] = hist_summary(env.histogram_delta(before, after, OWN_SHARE))
        o["histogram_event_loop_lag_s"] = hist_summary(
            env.histogram_delta(before, after, "colonies_operator_event_loop_lag_seconds"))
        o["rpcs_per_process"] = rpcs_delta(before, after, n)
    o["cpu"] = env.CpuMeter.delta(cpu0, b.cpu.sample(), t1 - t0)
    if spy:
        o["profile"] = profile.stop(b, spy)
    await obs.stop()

    if "ceiling" not in b.args.executors:
        return
    # baseline 1
    etype = f"bench-{phase}-ceiling-{b.run_id}"
    proc, result, ready = b.start_baseline("ceiling", etype, n, None, seconds + 300)
    await b.wait_file(ready, proc)
    await b.settle(f"{key}, baseline 1")
    cpu0 = b.cpu.sample()
    t0 = time.time()
    submitted = await b.submit_at_rate(b.spec(etype, b.args.run_for, 5), per_s, seconds)
    await b.wait_proc(proc, 300)
    data = json.loads(result.read_text())
    done = await b.processes(list(submitted))
    c = out["ceiling"] = await measure("ceiling", None, submitted, done, sorted(t for _, t in data["assigned"]))
    c["cpu"] = env.CpuMeter.delta(cpu0, b.cpu.sample(), time.time() - t0)

    if "naive" not in b.args.executors:
        return
    # baseline 2
    ns = b.namespace(f"{phase}-naive")
    etype = f"bench-{phase}-naive-{b.run_id}"
    obs = await b.observer(ns)
    proc, result, ready = b.start_baseline("naive", etype, n, ns, seconds + 600)
    await b.wait_file(ready, proc)
    await b.settle(f"{key}, baseline 2")
    api_before = b.scrape_apiserver()
    cpu0 = b.cpu.sample()
    t0 = time.time()
    submitted = await b.submit_at_rate(b.spec(etype, b.args.run_for, 5), per_s, seconds)
    await b.wait_jobs(obs, n, 600, f"naive {phase}")
    launched = obs.launch_times()
    api_after = b.scrape_apiserver()
    await b.wait_proc(proc, 600)
    done = await b.processes(list(submitted))
    nv = out["naive"] = await measure("naive", obs, submitted, done, launched)
    nv["assigned_to_job_created_s"] = summary(b.latencies(obs, done))
    nv["apiserver_job_create_s"] = apiserver_job_creates(api_before, api_after)
    # it writes its figures when it ends; one stopped at its deadline (a thread per process
    # falls behind at this rate) has none: its launches above are still what it managed
    naive_data = json.loads(result.read_text()) if result.exists() else {"error_count": "stopped at its deadline"}
    nv["errors"] = naive_data.get("error_count")
    for k in ("kube_requests_per_process", "log_reads_per_process", "polls_per_running_process_per_minute", "requests"):
        nv[k] = naive_data.get(k)
    nv["cpu"] = env.CpuMeter.delta(cpu0, b.cpu.sample(), time.time() - t0)
    b.series[f"latency_{phase}_naive"] = b.latencies(obs, done)
    await obs.stop()


# --- P4 in-flight scale ------------------------------------------------------------------------------

async def scale(b: Bench) -> None:
    target = b.args.in_flight
    out: dict[str, Any] = {"target": target}
    b.results["p4_scale"] = out
    if b.operator is None:
        b.start_operator("operator")
    op = b.operator
    assert op is not None
    ns = b.namespace("scale")
    etype = f"bench-scale-{b.run_id}"
    await b.ready_executor(ns, "scale", etype, capacity=BIG_CAPACITY | {"maxConcurrentJobs": target},
                           assignTimeoutSeconds=5)
    obs = await b.observer(ns, pods=True)
    await b.settle("P4")
    key = f"{ns}/scale"
    base = b.scrape()
    cpu0 = b.cpu.sample()
    t0 = time.time()
    spy = profile.start(b, "p4-ramp") if b.args.profile else None
    say(f"P4: submitting {target} long-running processes")
    submitted = await b.submit(b.spec(etype, "3600s", 2), target)
    ramp: list[tuple[float, int, int, int, float]] = []  # (t, jobs, pods running, in flight, rss)
    best, best_at = 0, time.monotonic()
    stalled = False
    while True:
        s = b.scrape()
        in_flight = int(s.total(IN_FLIGHT, executor=key)) if s else 0
        point = (time.time() - t0, len(obs.jobs), obs.pods_running(), in_flight, env.rss_mib(op.pid))
        ramp.append(point)
        progress = min(point[1], point[2], point[3])
        if progress > best:
            best, best_at = progress, time.monotonic()
        if point[1] >= target and point[2] >= target and point[3] >= target:
            break
        if time.monotonic() - best_at > b.args.stall_seconds or time.monotonic() - t0 > b.args.scale_timeout:
            stalled = True
            break
        if len(ramp) % 10 == 0:
            say(f"P4: {point[1]} Jobs, {point[2]} pods running, {point[3]} in flight, operator RSS {point[4]:.0f} MiB")
        await asyncio.sleep(1.0)
    ramped = time.time()
    cpu1 = b.cpu.sample()
    if spy:
        out["ramp_profile"] = profile.stop(b, spy)
    out["ramp"] = {"seconds": ramped - t0, "jobs_per_second": rate(obs.launch_times()),
                   "cpu": env.CpuMeter.delta(cpu0, cpu1, ramped - t0), "stalled": stalled}
    reached = min(ramp[-1][1], ramp[-1][2], ramp[-1][3])
    out["reached_in_flight"] = ramp[-1][3]
    out["reached_pods_running"] = ramp[-1][2]
    out["reached_jobs"] = ramp[-1][1]
    b.series["scale_ramp"] = ramp
    # steady state: everything in flight, nothing changing
    say(f"P4: {reached} in flight; holding {b.args.steady_seconds}s to measure a steady state")
    before = b.scrape()
    cpu0 = b.cpu.sample()
    t0 = time.time()
    spy = profile.start(b, "p4-steady") if b.args.profile else None
    rss = []
    while time.time() - t0 < b.args.steady_seconds:
        rss.append(env.rss_mib(op.pid))
        await asyncio.sleep(1.0)
    after = b.scrape()
    t1 = time.time()
    if spy:
        out["steady_profile"] = profile.stop(b, spy)
    steady: dict[str, Any] = {"seconds": t1 - t0, "rss_mib_max": max(rss), "cpu": env.CpuMeter.delta(cpu0, b.cpu.sample(), t1 - t0)}
    if before and after:
        delta = after.kube_requests() - before.kube_requests()
        steady["in_flight"] = after.total(IN_FLIGHT, executor=key)
        steady["kube_requests_in_window"] = delta
        steady["periodic_requests_per_in_flight_process_per_minute"] = (
            delta / max(1.0, steady["in_flight"]) / (t1 - t0) * 60)
        by_before = before.kube_by()
        steady["kube_requests"] = {k: v - by_before.get(k, 0) for k, v in after.kube_by().items()
                                   if v - by_before.get(k, 0)}
        steady["colonies_rpcs"] = rpcs_delta(before, after, 1)
        steady["event_loop_lag_s"] = hist_summary(
            env.histogram_delta(before, after, "colonies_operator_event_loop_lag_seconds"))
        out["ramp"]["event_loop_lag_s"] = hist_summary(
            env.histogram_delta(base, before, "colonies_operator_event_loop_lag_seconds"))
    out["steady"] = steady
    out["rss_mib_max"] = max([r[4] for r in ramp] + rss)
    out["submitted"] = len(submitted)
    await obs.stop()


# --- P5 recovery -------------------------------------------------------------------------------------

async def recovery(b: Bench) -> None:
    n, lines = b.args.recovery, b.args.log_lines
    run_for = f"{int(n / 10 + 60)}s"  # all must be running before any finishes
    out: dict[str, Any] = {"processes": n, "log_lines_each": lines, "pod_run_for": run_for}
    b.results["p5_recovery"] = out
    if b.operator is None:
        b.start_operator("operator")
    assert b.operator is not None
    ns = b.namespace("recovery")
    etype = f"bench-recovery-{b.run_id}"
    await b.ready_executor(ns, "recovery", etype, capacity=BIG_CAPACITY | {"maxConcurrentJobs": n + 10},
                           assignTimeoutSeconds=5, logs={"flushSeconds": 0.5})
    obs = await b.observer(ns, pods=True)
    await b.settle("P5")
    key = f"{ns}/recovery"
    submitted = await b.submit(b.spec(etype, run_for, lines), n)
    say(f"P5: {n} processes submitted; waiting for all to run")
    deadline = time.monotonic() + n / 5 + 120
    while time.monotonic() < deadline:
        s = b.scrape()
        if obs.pods_running() >= n and s and s.total(IN_FLIGHT, executor=key) >= n:
            break
        await asyncio.sleep(0.5)
    await asyncio.sleep(1.0)  # some logs shipped, some not: the kill lands mid-stream
    s = b.scrape()
    out["in_flight_at_kill"] = s.total(IN_FLIGHT, executor=key) if s else None
    out["pods_running_at_kill"] = obs.pods_running()
    # operator-wide counter: the earlier phases' lines included
    out["log_lines_shipped_by_the_operator_before_kill"] = (
        s.total("colonies_operator_log_lines_shipped_total") if s else None)
    old = b.operator
    os.kill(old.pid, signal.SIGKILL)
    killed = time.monotonic()
    procs.stop(old.proc)
    b.operator = None
    states = await b.processes(list(submitted))
    open_at_kill = sum(p.state is ProcessState.RUNNING for p in states.values())
    out["open_at_kill"] = open_at_kill
    say(f"P5: SIGKILL with {out['in_flight_at_kill']} in flight ({open_at_kill} open in Colonies); restarting")
    b.start_operator("operator-restarted")  # returns once the new process is live
    live = time.monotonic() - killed
    spy = profile.start(b, "p5-readopt") if b.args.profile else None
    readopted = None
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        s = b.scrape()
        if s and s.total(IN_FLIGHT, executor=key) >= open_at_kill:
            readopted = time.monotonic() - killed
            break
        await asyncio.sleep(0.1)
    if spy:
        out["readopt_profile"] = profile.stop(b, spy)
    out["restart_to_liveness_s"] = live
    out["kill_to_all_readopted_s"] = readopted
    out["liveness_to_all_readopted_s"] = readopted - live if readopted is not None else None
    say(f"P5: re-adopted in {readopted}s; waiting for every process to finish")
    done = await b.wait_final(list(submitted), int(run_for[:-1]) + 300, "recovery")
    await asyncio.sleep(2)
    expected = [f"line {i}" for i in range(1, lines + 1)]
    gate = asyncio.Semaphore(16)
    lost = duplicated = wrong = 0

    async def check(pid: str) -> None:
        nonlocal lost, duplicated, wrong
        async with gate:
            entries = await b.user.get_all_logs(b.state.colonies.colony_name, pid)
        got = "".join(e.message for e in entries).splitlines()
        have = Counter(got)
        lost += sum(1 for line in expected if have[line] == 0)
        duplicated += sum(max(0, have[line] - 1) for line in expected)
        wrong += int(got != expected)
    await asyncio.gather(*(check(p) for p in submitted))
    jobs = await b.kube.list_jobs(ns, "")
    per_process = Counter((j["metadata"].get("annotations") or {}).get("colonyos.io/process-id") for j in jobs.get("items") or [])
    after = b.scrape()
    out.update({
        "succeeded": sum(p.state is ProcessState.SUCCESS for p in done.values()),
        "log_lines_lost": lost, "log_lines_duplicated": duplicated, "processes_with_log_not_exact": wrong,
        "jobs": sum(per_process.values()),
        "processes_with_more_than_one_job": sum(1 for c in per_process.values() if c > 1),
        "processes_without_job": sum(1 for p in submitted if per_process.get(p, 0) == 0),
        "closed_by_restarted_operator": after.total(SUCCEEDED, executor=key, outcome="succeeded") if after else None,
    })
    await obs.stop()


# --- summaries -----------------------------------------------------------------------------------------


def hist_summary(buckets: list[tuple[float, float]]) -> dict[str, Any] | None:
    if not buckets or buckets[-1][1] <= 0:
        return None
    return {"n": buckets[-1][1], "p50": env.histogram_quantile(0.5, buckets),
            "p99": env.histogram_quantile(0.99, buckets),
            "buckets": {str(le): c for le, c in buckets}}


def apiserver_job_creates(before: env.Scrape | None, after: env.Scrape | None) -> dict[str, Any] | None:
    """The apiserver's own latency of POST jobs (its request-duration histogram): how much of
    assigned → created is the apiserver answering, whoever asks."""
    if before is None or after is None:
        return None
    name, labels = "apiserver_request_duration_seconds", {"verb": "POST", "resource": "jobs"}
    b = dict(before.buckets(name, **labels))
    return hist_summary([(le, v - b.get(le, 0.0)) for le, v in after.buckets(name, **labels)])


def rpcs_delta(before: env.Scrape, after: env.Scrape, per: int) -> dict[str, float]:
    def table(s: env.Scrape) -> dict[str, float]:
        return {f"{l.get('method')} {l.get('outcome')}": v for n, l, v in s.samples
                if n == "colonies_operator_colonies_rpcs_total"}
    b, a = table(before), table(after)
    return {k: round((v - b.get(k, 0)) / per, 3) for k, v in a.items() if v - b.get(k, 0)}


async def light(b: Bench) -> None:
    await sustained(b, "light")


# --- P6 real launches ---------------------------------------------------------------------------

async def real(b: Bench) -> None:
    """Assigned (the server's start time) → the container running on the stack's real node (the
    CRI timestamp of the first line it prints), one process at a time and `--real-batch` at
    once: what a user waits for, next to Kubernetes' pod-startup SLO (p99 ≤ 5 s)."""
    node = b.state.real_node
    if node is None:
        raise RuntimeError("the stack has no real node")
    n, batch = b.args.real, b.args.real_batch
    out: dict[str, Any] = {"processes": n, "node": node.name, "batch": batch}
    b.results["p6_real"] = out
    if b.operator is None:
        b.start_operator("operator")
    ns = b.namespace("real")
    etype = f"bench-real-{b.run_id}"
    await b.ready_executor(ns, "real", etype, capacity={"cpu": "2", "memory": "2Gi", "maxConcurrentJobs": 50},
                           assignTimeoutSeconds=5,
                        jobTemplate={"nodeSelector": node.node_selector, "tolerations": [node.toleration]})
    c = b.state.colonies
    spec = {"funcname": "execute", "maxwaittime": -1, "maxexectime": 120, "maxretries": 0,
            "conditions": {"colonyname": c.colony_name, "executortype": etype, "nodes": 1, "processespernode": 1,
                           # a container's start (runc init, the shell) runs under its own CPU limit:
                           # at 10m an echo takes ~5.5 s to start, at 100m ~0.55 s, at 250m ~0.26 s
                           "cpu": "100m", "mem": "32Mi"},
            "kwargs": {"docker-image": "busybox:1.36", "cmd": "echo", "args": ["running"]}}

    async def launch(count: int, with_env: bool = False) -> list[float]:
        submitted = await b.submit(spec | {"env": {"BENCH_REAL": "1"}} if with_env else spec, count)
        done = await b.wait_final(list(submitted), 300, "real launches")
        return [t for pid, p in done.items() if p.state is ProcessState.SUCCESS and p.starttime
                for t in [env.first_line_time(b.state, ns, pid) - p.starttime.timestamp()] if t is not None]

    await b.settle("P6 real launches, one at a time")
    one = [t for _ in range(n) for t in await launch(1)]
    await b.settle(f"P6 real launches, {batch} at once")
    many = [t for _ in range(max(1, n // batch)) for t in await launch(batch)]
    # The same with an env: a process that arrives with none is read again before its Job is
    # built (runtime/settling.py, up to env_settle_seconds), one with any env is not.
    await b.settle("P6 real launches with an env, one at a time")
    one_env = [t for _ in range(n) for t in await launch(1, with_env=True)]
    await b.settle(f"P6 real launches with an env, {batch} at once")
    many_env = [t for _ in range(max(1, n // batch)) for t in await launch(batch, with_env=True)]
    out["assigned_to_container_running_s"] = summary(one)
    out[f"assigned_to_container_running_{batch}_at_once_s"] = summary(many)
    out["with_env"] = {"assigned_to_container_running_s": summary(one_env),
                       f"assigned_to_container_running_{batch}_at_once_s": summary(many_env)}
    b.series["latency_real_one"], b.series["latency_real_batch"] = one, many


PHASES = {"burst": burst, "light": light, "sustained": sustained, "steps": steps.steps, "drain": drain.drain,
          "shared": shared.shared, "recovery": recovery, "scale": scale, "real": real, "soak": soak.phase}
DEFAULT_PHASES = [p for p in PHASES if p != "soak"]  # the soak (20 minutes of faults) runs when named


STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def _stop_on_signals() -> None:
    """In the event loop a signal cancels the run, so every `finally` of the phase runs."""
    loop, run = asyncio.get_running_loop(), asyncio.current_task()
    assert run is not None
    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, run.cancel)


async def main_async(args: argparse.Namespace, state: StackState, out: Path) -> dict[str, Any]:
    _stop_on_signals()
    env.install_crd(state)
    env.add_nodes(state, args.nodes)
    c = state.colonies
    kube = await KubeApi.connect(state.kubeconfig)
    async with Connection(ServerAddress(c.host, c.port), retry=RetryPolicy(attempts=10, deadline=60),
                          max_connections=64) as conn:
        b = Bench(state, args, out, conn, conn.client(c.user_prvkey), kube, env.CpuMeter(state))
        try:
            for phase in args.phases:
                began = time.monotonic()
                try:
                    await PHASES[phase](b)
                except Exception as exc:  # report what the other phases measured
                    import traceback
                    traceback.print_exc()
                    b.results.setdefault("errors", {})[phase] = f"{type(exc).__name__}: {exc}"
                say(f"{phase} done in {time.monotonic() - began:.0f}s")
                # what was measured so far survives a run stopped later
                (out / "partial.json").write_text(json.dumps({"results": b.results}, indent=1, default=str))
        finally:
            b.stop_operator()
            await kube.close()
        return {"results": b.results, "series": b.series}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python3 -m bench", description=__doc__)
    ap.add_argument("--phases", default=",".join(DEFAULT_PHASES),
                    help=f"comma-separated subset of {','.join(PHASES)} (run in this order; the default: all "
                         "but soak)")
    ap.add_argument("--burst", type=int, default=200, help="P1 backlog size")
    ap.add_argument("--run-for", default="2s", help="how long each P1 pod runs (kwok)")
    ap.add_argument("--sustained-rate", type=float, default=30, help="P1 sustained submissions per second")
    ap.add_argument("--sustained-seconds", type=float, default=60)
    ap.add_argument("--step-rates", default="10,20,40,60,80",
                    help="P1 steps: offered rates per second, climbed until submitted → Job created p99 > 1 s")
    ap.add_argument("--step-seconds", type=float, default=20, help="P1 steps: seconds of each step")
    ap.add_argument("--drain", type=int, default=1000, help="P1 drain: backlog of processes")
    ap.add_argument("--drain-slots", type=int, default=16, help="P1 drain: the executor's maxConcurrentJobs")
    ap.add_argument("--drain-run-for", default="3s", help="P1 drain: how long each pod runs (kwok)")
    ap.add_argument("--shared", type=int, default=1000,
                    help="P1 shared type: backlog drained by three executors of one type, on two operators")
    ap.add_argument("--light-rate", type=float, default=5, help="P2 at a light load: submissions per second")
    ap.add_argument("--light-seconds", type=float, default=30)
    ap.add_argument("--in-flight", type=int, default=5000, help="P4 target of processes in flight")
    ap.add_argument("--scale-timeout", type=float, default=900, help="P4: give up the ramp after this many seconds")
    ap.add_argument("--stall-seconds", type=float, default=120, help="P4: give up when nothing progressed this long")
    ap.add_argument("--steady-seconds", type=float, default=60, help="P4 steady-state window")
    ap.add_argument("--recovery", type=int, default=1000, help="P5 processes in flight at the SIGKILL")
    ap.add_argument("--log-lines", type=int, default=20, help="P5 log lines per pod")
    ap.add_argument("--real", type=int, default=100, help="P6 processes launched on the real node, one at a time")
    ap.add_argument("--real-batch", type=int, default=20, help="P6: then the same number, this many at once")
    ap.add_argument("--soak-seconds", type=float, default=1200, help="soak: seconds of submissions and faults")
    ap.add_argument("--soak-rate", type=float, default=10, help="soak: submissions per second")
    ap.add_argument("--soak-warmup", type=float, default=360,
                    help="soak: seconds of submissions before the first fault and the first RSS window (the "
                         "Job cache fills for the Jobs' TTL, 300 s, and their run)")
    ap.add_argument("--fault-every", type=float, default=60, help="soak: seconds between faults")
    ap.add_argument("--soak-seed", type=int, default=13, help="soak: the seed of the faults' order and choices")
    ap.add_argument("--nodes", type=int, default=6, help="extra kwok nodes of 1000 pods each")
    ap.add_argument("--assign-concurrency", type=int, default=4, help="baseline 1's concurrent assign loops")
    ap.add_argument("--executors", default="operator,kube,ceiling,naive",
                    help="P1: which of operator,kube (baseline 0),ceiling (baseline 1),naive (baseline 2) to run "
                         "(the operator always runs)")
    ap.add_argument("--no-profile", dest="profile", action="store_false", help="do not run py-spy on the operator")
    ap.add_argument("--stack-dir", help="reuse the healthy stack in this run dir instead of a fresh one")
    ap.add_argument("--keep-stack", action="store_true", help="keep the fresh stack's run dir (logs)")
    ap.add_argument("--results", default=str(env.ROOT / "bench" / "results"))
    ap.add_argument("--compare", metavar="JSON",
                    help="a run's JSON (e.g. bench/results/reference/*.json): print every figure next to it")
    args = ap.parse_args(argv)
    args.phases = [p for p in PHASES if p in args.phases.split(",")]
    # SIGTERM and SIGINT stop the run with the operator, the baselines and the stack stopped on
    # the way out. Python's default SIGTERM ends the process at once and leaves them running,
    # and a shell starts a background job with SIGINT ignored.
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.default_int_handler)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    results_dir = Path(args.results)
    out = results_dir / stamp
    (out / "logs").mkdir(parents=True, exist_ok=True)
    started = time.time()
    wanted = 2 * max(args.in_flight, args.recovery, args.burst) + 1000
    with env.inotify_instances(wanted) as inotify, env.bench_stack(args.stack_dir, keep=args.keep_stack) as state:
        try:
            data = asyncio.run(main_async(args, state, out))
        except (asyncio.CancelledError, KeyboardInterrupt):
            partial = out / "partial.json"
            say("stopped by a signal" + (f"; what was measured so far: {partial}" if partial.exists() else ""))
            return 130
    data["meta"] = {"started": started, "seconds": time.time() - started, "args": vars(args),
                    "cpus": os.cpu_count(), "python": sys.version.split()[0], "inotify_max_user_instances": inotify}
    data["series"].pop("burst_scrape", None)
    json_path = results_dir / f"{stamp}.json"
    json_path.write_text(json.dumps(data, indent=1, default=str))
    png = results_dir / f"{stamp}.png"
    report.plot(data, png)
    table = report.table(data)
    (out / "table.txt").write_text(table)
    print(table)
    if args.compare:
        print(compare.table(data, json.loads(Path(args.compare).read_text()), args.compare))
    print(f"\nJSON: {json_path}\nplot: {png}\nlogs and profiles: {out}")
    shutil.copy(json_path, out / "results.json")
    return 0

"""Soak with faults: a steady stream of processes for a long time, and one fault after another.

Processes are submitted at a steady rate; each runs a while (drawn from a range) and prints
numbered lines. Every `fault_every` seconds one fault is injected, drawn in a fixed, seeded
order that goes through every kind once per round: SIGKILL the operator (it is started again),
restart the Colonies server, restart the apiserver, expire every watch (etcd compacted while
the apiserver is down: a watch resumed from where it was gets 410 Gone; kopf's do, the
operator's own Job and Pod watches list again after any break), SIGSTOP etcd, SIGSTOP the operator,
delete a running Job by hand, cancel running processes.

At the end every process must be in a final state the faults explain (CANCELLED only if we
cancelled it, FAILED only as JobDeleted of a Job we deleted), none may have run in two Jobs,
and every succeeded process's log holds each of its lines exactly once. The operator's RSS is
sampled throughout; its flatness compares the first and the last 5 minutes after a warm-up
(submissions without faults while the Job cache fills: the operator starts on an empty
cluster, a user's runs for weeks). `scripts/bench --phases soak` runs it for 6 + 20 minutes; a
2-minute version without a warm-up is an integration test (tests/integration/test_soak.py).
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from colonies_operator.colonies.client import ColoniesClient
from colonies_operator.colonies.models import ProcessState
from colonies_operator.runtime.kube import KubeApi
from teststack import colonies_server, procs
from teststack import kube as stack_kube
from teststack.state import StackState

from bench import env
from bench.observe import Observer

if TYPE_CHECKING:
    from bench.harness import Bench

FAULTS = ("kill_operator", "restart_colonies", "restart_apiserver", "expire_watches", "stop_etcd",
          "stop_operator", "delete_job", "cancel_processes")
FINAL = (ProcessState.SUCCESS, ProcessState.FAILED, ProcessState.CANCELLED)


@dataclass(frozen=True)
class SoakSettings:
    seconds: float = 1200          # how long processes are submitted (and faults injected)
    rate: float = 10.0             # submissions per second
    run_for: tuple[int, int] = (5, 30)  # each process runs this many seconds (drawn, inclusive)
    log_lines: int = 100
    fault_every: float = 60.0
    seed: int = 13
    stop_etcd_seconds: float = 10.0
    stop_operator_seconds: float = 30.0
    cancel: int = 10               # processes cancelled by one cancel fault
    drain_timeout: float = 900.0   # after the last submission, how long every process has to end
    rss_window: float = 300.0      # RSS: the first and the last this many seconds are compared
    # Submissions at `rate` before the first fault and the first RSS window: an operator that
    # starts on an empty cluster fills its Job cache for the Jobs' TTL (300 s) and their run.
    warmup: float = 0.0


class OperatorControl(Protocol):
    @property
    def pid(self) -> int: ...

    def restart(self) -> None:
        """SIGKILL the operator, then start it again; returns once the new one is live."""


def fault_order(seed: int, count: int) -> list[str]:
    """`count` faults: each round holds every kind once, in an order drawn from `seed`."""
    rng = random.Random(seed)
    out: list[str] = []
    while len(out) < count:
        round_ = list(FAULTS)
        rng.shuffle(round_)
        out += round_
    return out[:count]


@dataclass
class Explained:
    """What the faults did to processes, so their ends can be explained."""

    cancelled: set[str] = field(default_factory=set)
    jobs_deleted: set[str] = field(default_factory=set)


def verdict(submitted: list[str], processes: dict[str, Any], explained: Explained,
            job_uids: dict[str, set[str]], logs: dict[str, list[str]], expected_lines: dict[str, list[str]]) -> dict[str, Any]:
    """The soak's figures: nothing lost, nothing unexplained, nothing twice, logs exact."""
    states = Counter(processes[p].state.name if p in processes else "UNKNOWN" for p in submitted)
    unexplained = []
    for pid in submitted:
        p = processes.get(pid)
        if p is None or p.state not in FINAL:
            continue
        if p.state is ProcessState.CANCELLED and pid not in explained.cancelled:
            unexplained.append((pid[:12], "CANCELLED", "not cancelled by the soak"))
        if p.state is ProcessState.FAILED and not (pid in explained.jobs_deleted
                                                   and (p.errors or [""])[0].startswith("JobDeleted")):
            unexplained.append((pid[:12], "FAILED", (p.errors or ["(no error)"])[0][:200]))
    succeeded = [p for p in submitted if p in processes and processes[p].state is ProcessState.SUCCESS]
    lost = duplicated = not_exact = 0
    inexact: list[tuple[str, int, int, int]] = []  # (process, lines lost, duplicated, lines read back)
    for pid in succeeded:
        want, got = expected_lines[pid], logs.get(pid, [])
        have = Counter(got)
        missing = sum(1 for line in want if have[line] == 0)
        twice = sum(max(0, have[line] - 1) for line in want)
        lost, duplicated = lost + missing, duplicated + twice
        if got != want:
            not_exact += 1
            inexact.append((pid, missing, twice, len(got)))
    return {
        "submitted": len(submitted),
        "states": dict(states),
        "not_final": sum(n for s, n in states.items() if s not in {f.name for f in FINAL}),
        "unexplained": len(unexplained),
        "unexplained_first": unexplained[:5],
        "cancelled_by_soak": len(explained.cancelled),
        "jobs_deleted_by_soak": len(explained.jobs_deleted),
        "ran_in_more_than_one_job": sum(1 for p in submitted if len(job_uids.get(p, ())) > 1),
        "succeeded_without_a_job_seen": sum(1 for p in succeeded if not job_uids.get(p)),
        "log_lines_checked": sum(len(expected_lines[p]) for p in succeeded),
        "log_lines_lost": lost,
        "log_lines_duplicated": duplicated,
        "processes_with_log_not_exact": not_exact,
        "log_not_exact_first": inexact[:5],
    }


def rss_flatness(samples: list[tuple[float, int]], window: float, *, since: float = 0.0) -> dict[str, Any] | None:
    """Mean RSS of the first `window` seconds from `since` and of the last `window` seconds,
    and their ratio."""
    samples = [(t, kib) for t, kib in samples if t >= since]
    if len(samples) < 2:
        return None
    t0, t1 = since, samples[-1][0]
    window = min(window, (t1 - t0) / 2)
    first = [kib for t, kib in samples if t - t0 < window and kib]
    last = [kib for t, kib in samples if t1 - t < window and kib]
    if not first or not last:
        return None
    a, b = sum(first) / len(first), sum(last) / len(last)
    return {"first_mib": round(a / 1024, 1), "last_mib": round(b / 1024, 1), "last_over_first": round(b / a, 3),
            "window_s": round(window), "first_from_s": round(since),
            "max_mib": round(max(k for _, k in samples) / 1024, 1)}


class Soak:
    def __init__(self, state: StackState, user: ColoniesClient, kube: KubeApi, *, namespace: str,
                 executor_type: str, operator: OperatorControl, settings: SoakSettings,
                 say: Callable[[str], None] = print) -> None:
        self.state = state
        self.user = user
        self.kube = kube
        self.namespace = namespace
        self.executor_type = executor_type
        self.operator = operator
        self.s = settings
        self.say = say
        self.runs = random.Random(settings.seed)        # how long each process runs
        self.choices = random.Random(settings.seed + 1)  # which Job a fault deletes, which processes it cancels
        self.colony = state.colonies.colony_name
        self.submitted: list[str] = []
        self.expected: dict[str, list[str]] = {}
        self.submit_errors = 0
        self.submit_error = ""  # the first one's words
        self.explained = Explained()
        self.faults: list[dict[str, Any]] = []
        self.rss: list[tuple[float, int]] = []
        self.started = 0.0

    def spec(self, run_for: int, lines: int) -> dict[str, Any]:
        return {"funcname": "execute", "maxwaittime": -1, "maxexectime": -1, "maxretries": 0,
                "conditions": {"colonyname": self.colony, "executortype": self.executor_type, "nodes": 1,
                               "processespernode": 1, "cpu": "1m", "mem": "1Mi"},
                "kwargs": {"docker-image": "busybox:1.36", "cmd": "echo", "args": ["soak"]},
                "env": {"KWOK_RUN_FOR": f"{run_for}s", "KWOK_LOG_LINES": str(lines)}}

    async def run(self) -> dict[str, Any]:
        observer = Observer(self.kube, self.namespace, pods=False)
        await observer.start()
        self.started = time.monotonic()
        sampler = asyncio.create_task(self._sample_rss())
        try:
            await asyncio.gather(self._submit_all(), self._inject_all())
            self.say(f"soak: {len(self.submitted)} submitted, {len(self.faults)} faults; waiting for every end")
            processes = await self._wait_final()
        finally:
            sampler.cancel()
            await asyncio.gather(sampler, return_exceptions=True)
        await asyncio.sleep(2)  # the last Jobs' watch events
        await observer.stop()
        logs = await self._logs([p for p in self.submitted if processes.get(p) is not None
                                 and processes[p].state is ProcessState.SUCCESS])
        out = verdict(self.submitted, processes, self.explained, observer.uids, logs, self.expected)
        out.update({"settings": asdict(self.s), "submit_errors": self.submit_errors,
                    "submit_error_first": self.submit_error, "faults": self.faults,
                    "rss": rss_flatness(self.rss, self.s.rss_window, since=self.s.warmup),
                    "rss_warmup_included": rss_flatness(self.rss, self.s.rss_window),
                    "seconds": round(time.monotonic() - self.started, 1)})
        return out

    # --- the stream of processes -----------------------------------------------------------

    async def _submit_all(self) -> None:
        total = int(self.s.rate * (self.s.warmup + self.s.seconds))
        tasks = []
        for i in range(total):
            delay = self.started + i / self.s.rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(self._submit_one(self.runs.randint(*self.s.run_for))))
        await asyncio.gather(*tasks)

    async def _submit_one(self, run_for: int) -> None:
        try:
            p = await self.user.submit(self.spec(run_for, self.s.log_lines))
        except Exception as exc:  # noqa: BLE001 - the server was restarting: not the operator's to run
            self.submit_errors += 1
            self.submit_error = self.submit_error or f"{type(exc).__name__}: {exc}"[:300]
            return
        self.submitted.append(p.processid)
        self.expected[p.processid] = [f"line {i}" for i in range(1, self.s.log_lines + 1)]

    async def _sample_rss(self) -> None:
        """Every 5 s; a sample taken while the operator restarts is 0 and left out of the figures."""
        while True:
            pid = self.operator.pid
            self.rss.append((time.monotonic() - self.started, procs.rss_kib(pid) if pid else 0))
            await asyncio.sleep(5)

    # --- the faults ----------------------------------------------------------------------------

    async def _inject_all(self) -> None:
        count = int(self.s.seconds // self.s.fault_every)
        for i, kind in enumerate(fault_order(self.s.seed, count), start=1):
            delay = self.started + self.s.warmup + i * self.s.fault_every - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            began = time.monotonic()
            try:
                detail = await getattr(self, f"_{kind}")()
            except Exception as exc:  # noqa: BLE001 - a fault that could not be injected is reported
                detail = f"not injected: {type(exc).__name__}: {exc}"
            took = time.monotonic() - began
            self.faults.append({"at_s": round(began - self.started, 1), "fault": kind, "took_s": round(took, 1),
                                "detail": detail})
            self.say(f"soak: fault {i}/{count} at {began - self.started:.0f}s: {kind} ({detail}; {took:.1f}s)")

    async def _kill_operator(self) -> str:
        old = self.operator.pid
        await asyncio.to_thread(self.operator.restart)
        return f"pid {old} killed, {self.operator.pid} started"

    async def _restart_colonies(self) -> str:
        self.state = await asyncio.to_thread(colonies_server.restart_colonies, self.state)
        return "restarted"

    async def _restart_apiserver(self) -> str:
        self.state = await asyncio.to_thread(stack_kube.restart_apiserver, self.state)
        return "restarted"

    async def _expire_watches(self) -> str:
        self.state = await asyncio.to_thread(stack_kube.restart_apiserver, self.state, expire_watches=True)
        return "etcd compacted while the apiserver was down"

    async def _stop_etcd(self) -> str:
        pid = self.state.proc("etcd").pid
        return await _stopped(pid, self.s.stop_etcd_seconds, "etcd")

    async def _stop_operator(self) -> str:
        return await _stopped(self.operator.pid, self.s.stop_operator_seconds, "operator")

    async def _delete_job(self) -> str:
        jobs = (await self.kube.list_jobs(self.namespace, "")).get("items") or []
        running = [j for j in jobs if (j.get("status") or {}).get("active") and not (j.get("metadata") or {}).get(
            "deletionTimestamp")]
        if not running:
            return "no running Job"
        job = self.choices.choice(sorted(running, key=lambda j: j["metadata"]["name"]))
        pid = (job["metadata"].get("annotations") or {}).get("colonyos.io/process-id", "")
        self.explained.jobs_deleted.add(pid)
        await self.kube.delete_job(self.namespace, job["metadata"]["name"], propagation="Background")
        return f"Job {job['metadata']['name']} deleted"

    async def _cancel_processes(self) -> str:
        running = await self.user.get_processes(self.colony, ProcessState.RUNNING, count=100,
                                                executor_type=self.executor_type)
        ours = sorted(p.processid for p in running if p.processid in self.expected)
        chosen = self.choices.sample(ours, min(self.s.cancel, len(ours)))
        for pid in chosen:
            self.explained.cancelled.add(pid)  # before: the cancel may land and its reply be lost
            try:
                await self.user.cancel(pid)
            except Exception:  # noqa: BLE001 - it ended first: it then ends as it would have
                pass
        return f"{len(chosen)} cancelled"

    # --- the end ---------------------------------------------------------------------------------

    async def _wait_final(self) -> dict[str, Any]:
        deadline = time.monotonic() + self.s.drain_timeout
        seen: dict[str, Any] = {}
        open_ = list(self.submitted)
        gate = asyncio.Semaphore(32)

        async def one(pid: str) -> None:
            async with gate:
                try:
                    seen[pid] = await self.user.get_process(pid)
                except Exception:  # noqa: BLE001 - asked again next round
                    pass
        while open_ and time.monotonic() < deadline:
            await asyncio.gather(*(one(p) for p in open_))
            open_ = [p for p in open_ if p not in seen or seen[p].state not in FINAL]
            if open_:
                await asyncio.sleep(2)
        return seen

    async def _logs(self, pids: list[str]) -> dict[str, list[str]]:
        gate = asyncio.Semaphore(16)
        out: dict[str, list[str]] = {}

        async def one(pid: str) -> None:
            async with gate:
                entries = await self.user.get_all_logs(self.colony, pid)
            out[pid] = "".join(e.message for e in entries).splitlines()
        await asyncio.gather(*(one(p) for p in pids))
        return out


async def _stopped(pid: int, seconds: float, what: str) -> str:
    os.kill(pid, signal.SIGSTOP)
    try:
        await asyncio.sleep(seconds)
    finally:
        os.kill(pid, signal.SIGCONT)
    return f"{what} (pid {pid}) stopped for {seconds:.0f}s"


# --- the bench phase -------------------------------------------------------------------------------


class _BenchOperator:
    """The bench's operator subprocess, as the soak kills and restarts it."""

    def __init__(self, b: Bench, namespace: str) -> None:
        self.b = b
        self.namespace = namespace

    @property
    def pid(self) -> int:
        """The operator's pid; 0 while a restart is between the old one and the new one."""
        return self.b.operator.pid if self.b.operator is not None else 0

    def restart(self) -> None:
        old = self.b.operator
        assert old is not None
        os.kill(old.pid, signal.SIGKILL)
        procs.stop(old.proc)
        self.b.operator = None
        self.b.start_operator("operator-soak", [self.namespace])


async def phase(b: Bench) -> None:
    """The soak, on a stack cleared of the earlier phases' namespaces (thousands of Jobs and
    pods would weigh on every component and on the operator's cache and RSS), with an operator
    of its own that watches the soak's namespace only."""
    a = b.args
    settings = SoakSettings(seconds=a.soak_seconds, rate=a.soak_rate, fault_every=a.fault_every, seed=a.soak_seed,
                            warmup=a.soak_warmup)
    out: dict[str, Any] = {}
    b.results["soak"] = out
    b.stop_operator()
    ns = f"bench-soak-{b.run_id}"
    out["namespaces_cleared"] = len(await asyncio.to_thread(env.delete_namespaces, b.state, "bench-", f"-{b.run_id}", ns))
    ns = b.namespace("soak")
    b.start_operator("operator-soak", [ns])
    etype = f"bench-soak-{b.run_id}"
    await b.ready_executor(ns, "soak", etype, capacity={"cpu": "100000", "memory": "100000Gi",
                                                        "maxConcurrentJobs": 2000},
                           assignTimeoutSeconds=5, logs={"flushSeconds": 0.5})
    await b.settle("soak")
    soak = Soak(b.state, b.user, b.kube, namespace=ns, executor_type=etype, operator=_BenchOperator(b, ns),
                settings=settings, say=lambda text: print(text, flush=True))
    try:
        out.update(await soak.run())
    finally:
        b.series["soak_rss"] = [(round(t, 1), round(kib / 1024, 1)) for t, kib in soak.rss if kib]
        b.state = soak.state  # the restarts gave components new pids

"""What every bench phase stands on: the stack, the clients, the operator under test, and
the helpers to submit processes, wait for their ends and watch their Jobs."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from colonies_operator.colonies.client import ColoniesClient, Connection
from colonies_operator.colonies.models import ProcessState
from colonies_operator.runtime.kube import KubeApi

from bench import env
from bench.env import say
from bench.observe import Observer
from teststack import procs
from teststack.state import StackState

FINAL = (ProcessState.SUCCESS, ProcessState.FAILED, ProcessState.CANCELLED)


@dataclass
class Bench:
    state: StackState
    args: argparse.Namespace
    out: Path                       # this run's directory: logs, raw profiles
    conn: Connection
    user: ColoniesClient
    kube: KubeApi
    cpu: env.CpuMeter
    results: dict[str, Any] = field(default_factory=dict)
    series: dict[str, Any] = field(default_factory=dict)  # for the plot
    operator: env.Operator | None = None
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:6])

    # --- processes ---------------------------------------------------------------------------

    def spec(self, executor_type: str, run_for: str, log_lines: int) -> dict[str, Any]:
        c = self.state.colonies
        return {"funcname": "execute", "maxwaittime": -1, "maxexectime": -1, "maxretries": 0,
                "conditions": {"colonyname": c.colony_name, "executortype": executor_type, "nodes": 1,
                               "processespernode": 1, "cpu": "1m", "mem": "1Mi"},
                "kwargs": {"docker-image": "busybox:1.36", "cmd": "echo", "args": ["bench"]},
                "env": {"KWOK_RUN_FOR": run_for, "KWOK_LOG_LINES": str(log_lines)}}

    async def submit(self, spec: dict[str, Any], count: int) -> dict[str, float]:
        """Submit `count` processes at once (16 at a time); process id → submit time."""
        gate = asyncio.Semaphore(16)
        out: dict[str, float] = {}

        async def one() -> None:
            async with gate:
                p = await self.user.submit(spec)
                out[p.processid] = time.time()
        await asyncio.gather(*(one() for _ in range(count)))
        return out

    async def submit_at_rate(self, spec: dict[str, Any], per_second: float, seconds: float) -> dict[str, float]:
        out: dict[str, float] = {}
        tasks = []
        start = time.monotonic()
        total = int(per_second * seconds)

        async def one() -> None:
            p = await self.user.submit(spec)
            out[p.processid] = time.time()
        for i in range(total):
            delay = start + i / per_second - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one()))
        await asyncio.gather(*tasks)
        return out

    async def processes(self, pids: list[str]) -> dict[str, Any]:
        gate = asyncio.Semaphore(32)
        out = {}

        async def one(pid: str) -> None:
            async with gate:
                out[pid] = await self.user.get_process(pid)
        await asyncio.gather(*(one(p) for p in pids))
        return out

    async def wait_final(self, pids: list[str], timeout: float, what: str) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        open_ = list(pids)
        seen: dict[str, Any] = {}
        while True:
            got = await self.processes(open_)
            seen.update(got)
            open_ = [p for p in open_ if got[p].state not in FINAL]
            if not open_ or time.monotonic() > deadline:
                if open_:
                    say(f"{what}: {len(open_)} of {len(pids)} processes still open after {timeout:.0f}s")
                return seen
            await asyncio.sleep(1.0)

    # --- executors ---------------------------------------------------------------------------

    def namespace(self, phase: str) -> str:
        name = f"bench-{phase}-{self.run_id}"
        env.make_namespace(self.state, name)
        return name

    def start_operator(self, name: str, namespaces: list[str] | None = None) -> env.Operator:
        """The operator under test, watching every namespace of this run (or `namespaces`)."""
        op = env.start_operator(self.state, namespaces or [f"bench-*-{self.run_id}"], f"{name}-{self.run_id}",
                                self.out / "logs")
        self.cpu.track("operator", op.pid)
        self.operator = op
        return op

    def stop_operator(self) -> None:
        if self.operator is not None:
            procs.stop(self.operator.proc)
            self.operator = None

    def start_baseline(self, module: str, executor_type: str, count: int, namespace: str | None,
                       deadline: float, rate: float = 0) -> tuple[procs.Proc, Path, Path]:
        c = self.state.colonies
        out = self.out / f"{module}-{executor_type}.json"
        ready = self.out / f"{module}-{executor_type}.ready"
        argv = [sys.executable, "-m", f"bench.{module}", "--count", str(count), "--out", str(out),
                "--ready-file", str(ready), "--deadline", str(deadline)]
        if module != "kube_ceiling":  # baseline 0 has no Colonies
            argv += ["--host", c.host, "--port", str(c.port), "--colony", c.colony_name,
                     "--colony-prvkey", c.colony_prvkey, "--executor-type", executor_type]
        if module in ("naive", "kube_ceiling"):
            argv += ["--namespace", namespace or "", "--kubeconfig", self.state.kubeconfig]
        if module == "kube_ceiling":
            argv += ["--run-for", self.args.run_for, "--rate", str(rate)]
        if module == "ceiling":
            argv += ["--concurrency", str(self.args.assign_concurrency)]
        pypath = os.pathsep.join([str(env.ROOT / "operator"), str(env.ROOT)])
        proc = procs.start(f"{module}-{executor_type}", argv, self.out / "logs" / f"{module}-{executor_type}.log",
                           env=self.state.env() | {"PYTHONPATH": pypath})
        self.cpu.track(module, proc.pid)
        return proc, out, ready

    async def wait_proc(self, proc: procs.Proc, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while procs.alive(proc) and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        procs.stop(proc)

    async def wait_file(self, path: Path, proc: procs.Proc, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not path.exists():
            if not procs.alive(proc) or time.monotonic() > deadline:
                raise RuntimeError(f"{proc.name} did not get ready; see {proc.log}")
            await asyncio.sleep(0.1)

    async def settle(self, what: str, busy_cores: float = 0.35, timeout: float = 60) -> None:
        """Wait until the stack is quiet (all components together under `busy_cores` over 2 s):
        the previous phase's pods finishing, or the apiserver digesting a new CRD, would
        otherwise eat into the next measurement on a small machine."""
        deadline = time.monotonic() + timeout
        while True:
            before = self.cpu.sample()
            await asyncio.sleep(2.0)
            used = sum(v["cores"] for k, v in env.CpuMeter.delta(before, self.cpu.sample(), 2.0).items()
                       if not k.startswith("bench"))
            if used < busy_cores or time.monotonic() > deadline:
                say(f"{what}: stack at {used:.2f} cores; starting")
                return

    async def ready_executor(self, namespace: str, name: str, executor_type: str, **spec: Any) -> None:
        """Create a ColonyExecutor and wait (up to a minute) for it to be Ready."""
        env.create_executor(self.state, namespace, name, executor_type, **spec)
        deadline = time.monotonic() + 60
        while not env.executor_ready(self.state, namespace, name) and time.monotonic() < deadline:
            await asyncio.sleep(0.2)

    async def observer(self, namespace: str, pods: bool = False) -> Observer:
        obs = Observer(self.kube, namespace, pods=pods)
        await obs.start()
        return obs

    async def wait_jobs(self, obs: Observer, count: int, timeout: float, what: str) -> bool:
        deadline = time.monotonic() + timeout
        while len(obs.jobs) < count:
            if time.monotonic() > deadline:
                say(f"{what}: only {len(obs.jobs)} of {count} Jobs after {timeout:.0f}s")
                return False
            await asyncio.sleep(0.1)
        return True

    # --- measurements shared by the phases ---------------------------------------------------

    def latencies(self, obs: Observer, processes: dict[str, Any]) -> list[float]:
        """Assigned (the server's start time) → Job seen by our watch, per process, in seconds."""
        out = []
        for job in obs.jobs.values():
            p = processes.get(job.process_id)
            if p is not None and p.starttime is not None:
                out.append(job.seen - p.starttime.timestamp())
        return out

    def scrape(self) -> env.Scrape | None:
        if self.operator is None:
            return None
        return env.scrape(self.operator.metrics_url)

    def scrape_apiserver(self) -> env.Scrape | None:
        try:
            return env.scrape_apiserver(self.state)
        except Exception as exc:  # noqa: BLE001 - a missing figure, not a failed phase
            say(f"apiserver /metrics: {exc}")
            return None

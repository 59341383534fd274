"""Two replicas with leader election (`run --leader-election`), as processes on the session's
stack: one serves while the other stands by doing nothing; the standby takes over when the
leader is SIGKILLed (once the Lease runs out) or stopped (at once: the Lease is released), and
re-adopts what runs so that every process ends once, with each log line exactly once; a leader
that sees another holder of its Lease stops at once.

Each test has its own namespace, served by name (no pattern: a standby never starts kopf's
watches, which `running_operator` would wait for), and its Lease in that namespace.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from kubernetes_asyncio import client

from colonies_operator.colonies.models import ProcessState
from teststack import procs
from tests.fixtures.kube import new_namespace
from tests.fixtures.operator import (GROUP, PLURAL, VERSION, Executor, RunningOperator, running_operator,
                                     start_executor)
from tests.helpers import scrape_total, wait_for

pytestmark = pytest.mark.integration

LEASE = "colonies-operator-leader"
# Processes in flight when the leader is killed. 200 is the measurement (a one-off run:
# STANDBY_IN_FLIGHT=200); the default keeps the test light on a 2-core machine.
IN_FLIGHT = int(os.environ.get("STANDBY_IN_FLIGHT") or 40)


@pytest_asyncio.fixture
async def sb_namespace(api) -> AsyncIterator[str]:
    name = await new_namespace(api, "sb")
    yield name
    # The replicas are gone by now: nobody would remove kopf's finalizer of the ColonyExecutors,
    # and the namespace would stay Terminating.
    custom = client.CustomObjectsApi(api)
    for resource in (await custom.list_namespaced_custom_object(GROUP, VERSION, name, PLURAL))["items"]:
        await custom.patch_namespaced_custom_object(GROUP, VERSION, name, PLURAL, resource["metadata"]["name"],
                                                    {"metadata": {"finalizers": None}},
                                                    _content_type="application/merge-patch+json")
    await client.CoreV1Api(api).delete_namespace(name)


@contextlib.contextmanager
def replica(stack, namespace: str, tag: str, **lease: str) -> Iterator[RunningOperator]:
    """One replica serving `namespace` with leader election, its Lease there (`lease`: more
    COLONIES_OPERATOR_LEASE_* settings, e.g. SECONDS="60")."""
    env = {"COLONIES_OPERATOR_LEASE_NAMESPACE": namespace} | {f"COLONIES_OPERATOR_LEASE_{k}": v
                                                              for k, v in lease.items()}
    with running_operator(stack, "--namespace", namespace, "--leader-election", env=env,
                          name=f"operator-sb-{tag}-{uuid.uuid4().hex[:4]}") as running:
        yield running


def leadership(replica: RunningOperator) -> dict[str, Any]:
    """What the replica's liveness endpoint says of it: {leading, identity, ...}."""
    return httpx.get(replica.liveness_url, timeout=10).json()["leadership"]


def log_of(replica: RunningOperator) -> str:
    return Path(replica.proc.log).read_text(errors="replace")


async def lease_holder(api, namespace: str) -> str:
    lease = await client.CoordinationV1Api(api).read_namespaced_lease(LEASE, namespace)
    return lease.spec.holder_identity or ""


async def leading(api, namespace: str, replica: RunningOperator, identity: str) -> None:
    """Wait until `replica` (`identity`) holds the Lease."""
    async def holds() -> bool:
        return await lease_holder(api, namespace) == identity
    await wait_for(holds, 60, f"{replica.proc.name} to lead")


async def identity_of(replica: RunningOperator) -> str:
    """The identity a replica campaigns as, from its log (its liveness endpoint changes hands as
    it starts to lead)."""
    def campaigning() -> str | None:
        match = re.search(r"campaigning for the Lease \S+ as (\S+)", log_of(replica))
        return match.group(1) if match else None
    return await wait_for(campaigning, 30, f"{replica.proc.name} to campaign")


def metrics_answer(replica: RunningOperator) -> bool:
    try:
        httpx.get(replica.metrics_url, timeout=5)
        return True
    except httpx.TransportError:
        return False


def assert_stands_by(standby: RunningOperator, leader_identity: str) -> None:
    """A standby serves nothing: it says so, started none of kopf, its runtimes or its metrics."""
    assert leadership(standby) | {"identity": ""} == {"leading": False, "identity": "", "holder": leader_identity}
    text = log_of(standby)
    assert "standing by: the Lease" in text
    for served in ("kopf", "colonies_operator.runtime", "colonies_operator.handlers"):
        assert served not in text, f"the standby's log shows {served} at work:\n{text[-3000:]}"
    assert not metrics_answer(standby)


async def all_pods_started(ex: Executor, count: int) -> bool:
    pods = await client.CoreV1Api(ex.api).list_namespaced_pod(ex.namespace)
    return sum(p.status.phase in ("Running", "Succeeded") for p in pods.items) == count


async def ends_once_with_exact_logs(ex: Executor, processes: list[Any], lines: int) -> None:
    for process in processes:
        done = await ex.final(process.processid, timeout=180)
        assert done.state is ProcessState.SUCCESS, done.errors
        assert await ex.log_lines(process.processid) == [f"line {i}" for i in range(1, lines + 1)]
    # one Job per process: nothing ran twice
    assert len(await ex.jobs()) == len(processes)


async def test_the_standby_does_nothing_then_takes_over_a_sigkilled_leader_and_readopts_every_process(
        api, colonies, stack, crd, sb_namespace):
    count, lines = IN_FLIGHT, 60
    # Pods start over a while (kwok on 2 shared cores: seconds to a minute for 200): each runs long
    # enough for all to run at once, and prints its lines over its whole run, through the kill
    # and the takeover.
    run_for = 60 + count
    interval_ms = run_for * 800 // lines
    with contextlib.ExitStack() as replicas:
        a = replicas.enter_context(replica(stack, sb_namespace, "a"))
        a_identity = await identity_of(a)
        await leading(api, sb_namespace, a, a_identity)
        b = replicas.enter_context(replica(stack, sb_namespace, "b"))
        b_started = time.monotonic()
        ex = await start_executor(api, colonies, sb_namespace, stack, logs={"flushSeconds": 0.5},
                                  capacity={"cpu": "64", "memory": "128Gi", "maxConcurrentJobs": max(count, 100)})
        processes = [await ex.submit(env={"KWOK_RUN_FOR": f"{run_for}s", "KWOK_LOG_LINES": str(lines),
                                          "KWOK_LOG_INTERVAL_MS": str(interval_ms)},
                                     conditions={"walltime": run_for + 120}) for _ in range(count)]
        await wait_for(lambda: all_pods_started(ex, count), 240, f"{count} pods to start")
        assert scrape_total(a.metrics_url, "colonies_operator_processes_in_flight") > 0  # the leader serves
        # long enough for a standby that would campaign wrongly or serve anyway to have done so
        await asyncio.sleep(max(0.0, 25 - (time.monotonic() - b_started)))
        assert_stands_by(b, a_identity)

        killed = time.monotonic()
        os.kill(a.pid, signal.SIGKILL)
        states = [(await ex.colonies.user.get_process(p.processid)).state for p in processes]
        open_at_kill = sum(s is ProcessState.RUNNING for s in states)
        assert open_at_kill > 0
        b_identity = await identity_of(b)
        await leading(api, sb_namespace, b, b_identity)
        took_over = time.monotonic() - killed

        async def adopted() -> bool:
            return metrics_answer(b) and scrape_total(
                b.metrics_url, "colonies_operator_processes_in_flight") == open_at_kill
        await wait_for(adopted, 60, "the new leader to adopt every open process")
        readopted = time.monotonic() - killed
        assert leadership(b)["leading"] is True and leadership(b)["identity"] == b_identity
        await ends_once_with_exact_logs(ex, processes, lines)
        await wait_for(lambda: scrape_total(b.metrics_url, "colonies_operator_processes_total",
                                            outcome="succeeded") == open_at_kill, 30, "every process to be counted")
    print(f"\nleader SIGKILLed with {open_at_kill} of {count} processes open: the standby held the Lease after "
          f"{took_over:.1f} s and had re-adopted all after {readopted:.1f} s (lease 10 s, renew deadline 7 s, "
          f"retry 2 s); {count * lines} log lines compared, 0 lost, 0 duplicated")


async def test_a_stopped_leader_releases_the_lease_and_the_standby_takes_over_at_once(
        api, colonies, stack, crd, sb_namespace):
    # A Lease of 120 s: the standby takes over within the timeout below only if it was released.
    lease = {"SECONDS": "120", "RENEW_DEADLINE_SECONDS": "60", "RETRY_SECONDS": "1"}
    count, lines = 5, 40
    with contextlib.ExitStack() as replicas:
        a = replicas.enter_context(replica(stack, sb_namespace, "a", **lease))
        await leading(api, sb_namespace, a, await identity_of(a))
        b = replicas.enter_context(replica(stack, sb_namespace, "b", **lease))
        ex = await start_executor(api, colonies, sb_namespace, stack, logs={"flushSeconds": 0.5})
        processes = [await ex.submit(env={"KWOK_RUN_FOR": "40s", "KWOK_LOG_LINES": str(lines),
                                          "KWOK_LOG_INTERVAL_MS": "500"}) for _ in range(count)]
        await wait_for(lambda: all_pods_started(ex, count), 60, f"{count} pods to start")

        stopped = time.monotonic()
        os.kill(a.pid, signal.SIGTERM)
        await wait_for(lambda: procs.exit_code(a.proc) is not None, 60, "the leader to stop")
        assert procs.exit_code(a.proc) == 0, log_of(a)[-3000:]
        assert "released the Lease" in log_of(a)
        await leading(api, sb_namespace, b, await identity_of(b))  # waits 60 s at most: half the lease
        handed_over = time.monotonic() - stopped
        await ends_once_with_exact_logs(ex, processes, lines)
    print(f"\nSIGTERM: the leader stopped and released; the standby held the Lease {handed_over:.1f} s after the "
          "signal (lease 120 s)")


async def test_a_leader_that_sees_another_holder_of_its_lease_stops_at_once_without_releasing(
        api, colonies, stack, crd, sb_namespace):
    with replica(stack, sb_namespace, "a") as a:
        await leading(api, sb_namespace, a, await identity_of(a))
        await start_executor(api, colonies, sb_namespace, stack)
        leases = client.CoordinationV1Api(api)
        lease = await leases.read_namespaced_lease(LEASE, sb_namespace)
        lease.spec.holder_identity = "intruder"
        lease.spec.lease_duration_seconds = 3600
        await leases.replace_namespaced_lease(LEASE, sb_namespace, lease)
        await wait_for(lambda: procs.exit_code(a.proc) is not None, 60, "the leader to stop")
        assert procs.exit_code(a.proc) == 3
        assert "is held by intruder: stopping at once" in log_of(a)
        assert await lease_holder(api, sb_namespace) == "intruder"

"""What every ColonyExecutor of one operator shares: one Kubernetes client, one Colonies
connection pool per server, one Job/Pod watch per namespace, and the metrics over them."""

from __future__ import annotations

import functools
import gc
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from colonies_operator import config as cfg
from colonies_operator import metrics
from colonies_operator.colonies.client import Connection, ServerAddress
from colonies_operator.metrics import Metrics
from colonies_operator.runtime.executor import ExecutorRuntime
from colonies_operator.runtime.kube import KubeApi
from colonies_operator.runtime.watch import JobWatch


@dataclass
class Shared:
    """Operator-wide objects: one Kubernetes client, one Colonies pool per server, one watch per namespace."""

    kube: KubeApi
    settings: cfg.OperatorSettings
    metrics: Metrics = field(default_factory=Metrics)
    connections: dict[ServerAddress, Connection] = field(default_factory=dict)
    watches: dict[str, JobWatch] = field(default_factory=dict)
    runtimes: dict[str, ExecutorRuntime] = field(default_factory=dict)  # "namespace/name" → running runtime

    def __post_init__(self) -> None:
        self.metrics.add_source(self._collect)
        tune_gc()

    def _collect(self) -> list[Any]:
        kube = self.kube.counter.snapshot()
        rpcs: Counter[tuple[str, str]] = Counter()
        for connection in self.connections.values():
            rpcs.update(connection.calls)
        executors = {key: r.stats for key, r in self.runtimes.items()}
        return [
            metrics.counter("kube_requests_total", "Kubernetes API requests", ["verb", "resource", "code"],
                            [((v, r, str(c)), n) for (v, r, c), n in kube.items()]),
            metrics.counter("colonies_rpcs_total", "Colonies RPCs by method and outcome", ["method", "outcome"],
                            rpcs.items()),
            metrics.gauge("processes_in_flight", "Processes being run", ["executor"],
                          [((k,), s.in_flight) for k, s in executors.items()]),
            metrics.gauge("processes_queued", "Processes whose Job waits for Kueue's admission (spec.kueue)",
                          ["executor"], [((k,), r.capacity.queued) for k, r in self.runtimes.items()]),
            metrics.counter("processes_total", "Processes ended, by outcome", ["executor", "outcome"],
                            [((k, o), getattr(s, o)) for k, s in executors.items()
                             for o in ("succeeded", "failed", "fenced")]),
            *self._demand(),
            metrics.counter("executor_runtime_starts_total",
                            "Runtimes started per ColonyExecutor: once, plus one per identity edit or failure",
                            ["executor"], [((k,), n) for k, n in self.metrics.runtime_starts.items()]),
            metrics.counter("log_lines_shipped_total", "Log lines sent to Colonies", [],
                            [((), self.metrics.log_lines)]),
            metrics.counter("log_bytes_shipped_total", "Log bytes sent to Colonies", [],
                            [((), self.metrics.log_bytes)]),
        ]

    def _demand(self) -> list[Any]:
        """The autoscaling signals: WAITING processes each executor could take, and its processes
        without a node (capacity.elastic)."""
        polled = [((r.config.colony_name, r.config.executor_type, key), r.demand.waiting)
                  for key, r in self.runtimes.items() if r.demand.waiting is not None]
        return [
            metrics.gauge("waiting_processes",
                          "WAITING processes in Colonies this executor could take (a lower bound when capped)",
                          ["colony", "executor_type", "executor"], [(k, w.count) for k, w in polled]),
            metrics.gauge("waiting_processes_capped",
                          "1 when Colonies listed its most (100) waiting processes: there may be more",
                          ["colony", "executor_type", "executor"], [(k, float(w.capped)) for k, w in polled]),
            metrics.gauge("waiting_processes_stale",
                          "1 when the last poll of waiting processes failed: the count is older",
                          ["colony", "executor_type", "executor"], [(k, float(w.stale)) for k, w in polled]),
            metrics.gauge("processes_without_node",
                          "Processes taken whose Job has no node yet (capacity.elastic bounds them)", ["executor"],
                          [((k,), r.placement.unplaced) for k, r in self.runtimes.items()]),
        ]

    def connection(self, address: ServerAddress) -> Connection:
        if address not in self.connections:
            self.connections[address] = Connection(address)
        return self.connections[address]

    def watch(self, namespace: str) -> JobWatch:
        if namespace not in self.watches:
            self.watches[namespace] = JobWatch(self.kube, namespace)
        return self.watches[namespace]

    async def close(self) -> None:
        for watch in self.watches.values():
            await watch.stop()
        for connection in self.connections.values():
            await connection.aclose()


@functools.cache  # once per process, however many resources start
def tune_gc() -> None:
    """Keep Python's cycle collector from stopping the event loop for seconds.

    A full collection scans every tracked object: with thousands of processes in flight that
    is a million objects and 0.5-2 s, and it runs whenever the long-lived heap grew by a
    quarter, i.e. several times while a backlog ramps up (measured: event-loop lag p99 2.2 s
    on the way to 5,000 in flight). So: move everything that exists at start (modules, kopf,
    the clients: ~150,000 objects) out of the scans for good, and collect the young
    generations less often, which makes full collections rarer; reference counting still
    frees everything that is not in a cycle at once.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)

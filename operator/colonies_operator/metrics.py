"""Prometheus metrics, served at /metrics from the operator's own event loop.

Counters that already exist as plain numbers (the Kubernetes request counter, the Colonies
call counter, executor stats) are read at scrape time by a collector, so the hot paths
pay nothing for them; only latencies are observed as they happen.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

PREFIX = "colonies_operator"
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.assign_seconds = Histogram(
            f"{PREFIX}_assign_roundtrip_seconds", "Round trip of an assign that returned a process",
            registry=self.registry, buckets=LATENCY_BUCKETS)
        self.job_created_seconds = Histogram(
            f"{PREFIX}_assigned_to_job_created_seconds", "From a process assigned to its Job created",
            registry=self.registry, buckets=LATENCY_BUCKETS)
        # The operator's own share of a launch: what comes before the apiserver's (the create's
        # round trip is the rest of assigned → created).
        self.job_create_sent_seconds = Histogram(
            f"{PREFIX}_assigned_to_job_create_sent_seconds",
            "From a process assigned to its Job's create request sent (the operator's own share of a launch)",
            registry=self.registry, buckets=(0.001, 0.0025, *LATENCY_BUCKETS))
        self.loop_lag_seconds = Histogram(
            f"{PREFIX}_event_loop_lag_seconds", "How late the event loop runs a timer",
            registry=self.registry, buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5))
        self.log_lines = 0
        self.log_bytes = 0
        self.runtime_starts: Counter[str] = Counter()  # "namespace/name" → runtimes started for it

    def add_source(self, collect: Callable[[], Iterable[Any]]) -> None:
        """Register a callable yielding metric families at scrape time."""
        self.registry.register(_Source(collect))

    def shipped(self, lines: int, size: int) -> None:
        self.log_lines += lines
        self.log_bytes += size

    def render(self) -> bytes:
        return generate_latest(self.registry)

    async def measure_loop_lag(self, interval: float = 0.5) -> None:
        loop = asyncio.get_running_loop()
        while True:
            start = loop.time()
            await asyncio.sleep(interval)
            self.loop_lag_seconds.observe(max(0.0, loop.time() - start - interval))


class _Source(Collector):
    def __init__(self, collect: Callable[[], Iterable[Any]]) -> None:
        self._collect = collect

    def collect(self) -> Iterable[Any]:
        return self._collect()


def counter(name: str, doc: str, labels: list[str], samples: Iterable[tuple[tuple[str, ...], float]]) -> CounterMetricFamily:
    family = CounterMetricFamily(f"{PREFIX}_{name}", doc, labels=labels)
    for values, value in samples:
        family.add_metric(list(values), value)
    return family


def gauge(name: str, doc: str, labels: list[str], samples: Iterable[tuple[tuple[str, ...], float]]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(f"{PREFIX}_{name}", doc, labels=labels)
    for values, value in samples:
        family.add_metric(list(values), value)
    return family


def now() -> float:
    return time.monotonic()

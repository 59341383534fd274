"""The figures a phase reports: rates and quantiles of measured times."""

from __future__ import annotations

import statistics
from typing import Any


def rate(times: list[float]) -> float | None:
    """Events per second from the first event to the last."""
    if len(times) < 2:
        return None
    span = max(times) - min(times)
    return (len(times) - 1) / span if span > 0 else None


def quantile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    return statistics.quantiles(ordered, n=1000, method="inclusive")[min(998, max(0, round(q * 1000) - 1))]


def summary(values: list[float]) -> dict[str, Any] | None:
    if not values:
        return None
    return {"n": len(values), "p50": quantile(values, 0.5), "p90": quantile(values, 0.9),
            "p99": quantile(values, 0.99), "max": max(values), "mean": statistics.fmean(values)}


BENCH_OWN = "bench (submitting, watching)"


def cpu_per_process(cpu: dict[str, dict[str, float]] | None, count: int) -> dict[str, float] | None:
    """CPU seconds each process cost each component (the bench's own submitting and watching
    left out), the largest first, with their sum under "all"."""
    if not cpu or count <= 0:
        return None
    parts = {name: v["cpu_seconds"] / count for name, v in cpu.items() if name != BENCH_OWN and v["cpu_seconds"]}
    out = dict(sorted(parts.items(), key=lambda kv: -kv[1]))
    out["all"] = sum(parts.values())
    return out


def cpu_bound(per_process: dict[str, float] | None, cores: int) -> float | None:
    """The most processes per second these cores could run at that cost: the machine's bound."""
    if not per_process or not per_process.get("all"):
        return None
    return cores / per_process["all"]

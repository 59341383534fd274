"""What the supervisors of one executor share, and how a supervisor ends.

`report` retries a result until Colonies takes it or refuses it for good: a result is never
dropped because the server was briefly away.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from colonies_operator.colonies import errors
from colonies_operator.colonies.client import ColoniesClient
from colonies_operator.jobs import builder
from colonies_operator.metrics import Metrics
from colonies_operator.runtime.capacity import Capacity
from colonies_operator.runtime.kube import KubeApi
from colonies_operator.runtime.placement import Placement
from colonies_operator.runtime.watch import JobWatch

log = logging.getLogger(__name__)
T = TypeVar("T")

# Adopted processes reading what Colonies holds of their logs at once, per executor. After a
# restart with thousands in flight, unbounded reads took the whole Colonies connection pool
# from the running processes' log lines and results, and queued past the pool's timeout.
RESUME_READS = 8


class Fenced(Exception):
    """The process stopped being ours (cancelled, unassigned, re-assigned)."""


class End(enum.Enum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    FENCED = "fenced"      # the process stopped being ours; nothing reported
    STOPPED = "stopped"    # the operator is stopping; the Job is left for adoption


@dataclass
class ExecutorStats:
    in_flight: int = 0
    succeeded: int = 0
    failed: int = 0
    fenced: int = 0

    def count(self, end: End) -> None:
        if end is End.SUCCEEDED:
            self.succeeded += 1
        elif end is End.FAILED:
            self.failed += 1
        elif end is End.FENCED:
            self.fenced += 1


@dataclass
class Context:
    """What every supervisor of one executor shares."""

    colonies: ColoniesClient
    kube: KubeApi
    watch: JobWatch
    capacity: Capacity
    job_settings: builder.JobSettings
    logs: Any  # config.LogSettings
    pending_grace_seconds: float
    policy: Any = None  # jobs.spec.SpecPolicy: what a process read again is checked against
    env_settle_seconds: float = 0.0  # runtime/settling.py
    unschedulable_grace_seconds: float | None = None  # capacity.elastic's elasticPendingSeconds; else the above
    placement: Placement = field(default_factory=Placement)
    metrics: Metrics = field(default_factory=Metrics)
    stats: ExecutorStats = field(default_factory=ExecutorStats)
    on_change: Callable[[], None] = lambda: None
    resume_reads: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(RESUME_READS))


async def report(call: Callable[[], Awaitable[T]], what: str) -> T:
    """Retry a Colonies call until it lands or is refused for good: a result (or a read the
    process cannot go on without) is never dropped because the server was briefly away.
    Rejections propagate."""
    delay = 1.0
    while True:
        try:
            return await call()
        except (errors.ColoniesUnreachable, errors.ColoniesServerError) as exc:
            log.warning("%s failed, retrying in %.0fs: %s", what, delay, exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)


def internal_error(exc: BaseException) -> str:
    return (f"InternalError({type(exc).__name__}: {exc}): the operator failed while running this process, "
            "and stopped its Job; this is a bug of colonies-operator, please report it with the operator's log")

"""kopf at the edge: operator settings, shared clients, and one daemon per ColonyExecutor.

Handlers stay thin: everything they do is delegated to `runtime.resource`, which knows
nothing of kopf. kopf does not watch Jobs or Pods (its watches filter labels on the client
side); the runtime's own label-selected watches do.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import kopf
from aiohttp import web

from colonies_operator import config as cfg
from colonies_operator import memory
from colonies_operator.metrics import Metrics
from colonies_operator.runtime.kube import KubeApi
from colonies_operator.runtime.resource import ExecutorResource
from colonies_operator.runtime.shared import Shared

GROUP, VERSION, PLURAL = "colonyos.io", "v1alpha1", "colonyexecutors"
STUCK_SECONDS = 600  # an assign loop that did not go round this long (it wakes at least every 30 s) is stuck


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    # One replica serves (the only one, or the Lease's holder: leadership.py); kopf's peering
    # does not elect one (peers of equal priority both run), so it is not used.
    settings.peering.standalone = True
    # Our own names for kopf's bookkeeping on the resources it handles.
    settings.persistence.finalizer = "colonyos.io/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="colonyos.io")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix="colonyos.io", key="last-handled-configuration")
    operator_settings: cfg.OperatorSettings = memo.get("operator_settings") or cfg.OperatorSettings.from_env()
    # Namespaced RBAC cannot list namespaces or CRDs cluster-wide; only namespace patterns
    # ("team-*") need that scan, and they come with a ClusterRole.
    settings.scanning.disabled = not any(c in ns for ns in operator_settings.namespaces for c in "*?[!")
    # Watch streams can go quiet without closing (nolar/kopf#585): renew them regularly.
    settings.watching.server_timeout = 120
    settings.watching.client_timeout = 150
    settings.watching.connect_timeout = 10
    settings.posting.level = logging.WARNING  # kopf's own log lines as Events: only problems
    # A daemon that ends soon after it is told to stop (a deleted resource's removal) is waited
    # for right then, not only after cancellation_backoff.
    settings.background.instant_exit_timeout = 2.0
    memo.shared = Shared(kube=await KubeApi.connect(memo.get("kubeconfig")), settings=operator_settings)
    memo.background = [asyncio.create_task(memo.shared.metrics.measure_loop_lag(), name="loop-lag"),
                       asyncio.create_task(memory.give_back_regularly(), name="malloc-trim")]
    if operator_settings.metrics_port:
        memo.metrics_server = await serve_metrics(memo.shared.metrics, operator_settings.metrics_port)


async def serve_metrics(metrics: Metrics, port: int) -> web.AppRunner:
    async def handle(_: web.Request) -> web.Response:
        return web.Response(body=metrics.render(), content_type="text/plain", charset="utf-8")

    app = web.Application()
    app.router.add_get("/metrics", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "0.0.0.0", port).start()
    return runner


@kopf.on.probe(id="executors")
def executors_alive(memo: kopf.Memo, **_: Any) -> dict[str, float]:
    """Seconds since each executor's assign loop last went round, or since its runtime started
    while it has not reached its loop yet (registering, listing, adopting). A loop wakes at
    least every 30 s, even when full or paused; one stuck, or a runtime that never reaches
    its loop, fails liveness."""
    shared: Shared = memo.shared
    now = time.monotonic()
    ages = {key: now - (r.health.last_loop_time if r.health.assigning else r.started_at)
            for key, r in shared.runtimes.items()}
    stuck = [key for key, age in ages.items() if age > STUCK_SECONDS]
    if stuck:
        raise RuntimeError(f"executors stuck: {', '.join(stuck)}")
    return {key: round(age, 1) for key, age in ages.items()}


@kopf.on.probe(id="leadership")
def leadership(memo: kopf.Memo, **_: Any) -> dict[str, Any]:
    """Who serves: this replica, by holding the Lease, or alone (no leader election)."""
    elector = memo.get("elector")
    if elector is None:
        return {"leading": True, "election": False}
    return {"leading": elector.leading, "identity": elector.identity}


@kopf.on.cleanup()
async def close(memo: kopf.Memo, **_: Any) -> None:
    for task in memo.get("background") or []:
        task.cancel()
    if memo.get("metrics_server") is not None:
        await memo.metrics_server.cleanup()
    shared: Shared | None = memo.get("shared")
    if shared is not None:
        await shared.close()
        await shared.kube.close()


# On deletion or shutdown the daemon is asked to stop and gets `cancellation_backoff` seconds
# before kopf cancels it; kept short: kopf holds the finalizer that long even when the daemon
# ends at once (nolar/kopf#797). A deleted resource's daemon then finishes its removal (fail
# what runs, delete the Jobs, unregister) shielded from that cancel, within
# `cancellation_timeout`: kopf waits that long before it leaves a daemon orphaned.
# `backoff`: the daemon catches what it expects; if a bug still ends it, its processes wait
# for the restart (they are adopted then), so it comes back in 5 s, not kopf's default 60.
@kopf.daemon(GROUP, VERSION, PLURAL, backoff=5, cancellation_backoff=10, cancellation_timeout=110)
async def colonyexecutor_daemon(
    name: str, namespace: str, uid: str, body: kopf.Body, spec: kopf.Spec, meta: kopf.Meta,
    status: kopf.Status, stopped: kopf.DaemonStopped, memo: kopf.Memo, **_: Any,
) -> None:
    def emit(type_: str, reason: str, message: str) -> None:
        kopf.event(body, type=type_, reason=reason, message=message)

    async def wait_stopped(seconds: float) -> bool:
        await stopped.wait(seconds)
        return bool(stopped)

    def deleted() -> bool:
        return bool(stopped.reason and stopped.reason & kopf.DaemonStoppingReason.RESOURCE_DELETED)

    resource = ExecutorResource(
        memo.shared, namespace, name, uid,
        spec=lambda: dict(spec), generation=lambda: int(meta.get("generation") or 0),
        status=dict(status), emit=emit,
    )
    await resource.serve(wait_stopped, deleted)

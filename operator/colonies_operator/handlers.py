"""kopf at the edge: operator settings, shared clients, and one daemon per ColonyExecutor.

Handlers stay thin: everything they do is delegated to `runtime.resource`, which knows
nothing of kopf. kopf does not watch Jobs or Pods (its watches filter labels on the client
side); the runtime's own label-selected watches do.
"""

from __future__ import annotations

import logging
from typing import Any

import kopf

from colonies_operator import config as cfg
from colonies_operator.runtime.kube import KubeApi
from colonies_operator.runtime.resource import ExecutorResource, Shared

GROUP, VERSION, PLURAL = "colonyos.io", "v1alpha1", "colonyexecutors"


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    # One replica (the chart's Deployment uses strategy Recreate): no peering objects needed.
    settings.peering.standalone = True
    # Our own names for kopf's bookkeeping on the resources it handles.
    settings.persistence.finalizer = "colonyos.io/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="colonyos.io")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix="colonyos.io", key="last-handled-configuration")
    # Namespaced RBAC cannot list namespaces or CRDs cluster-wide.
    settings.scanning.disabled = True
    # Watch streams can go quiet without closing (nolar/kopf#585): renew them regularly.
    settings.watching.server_timeout = 120
    settings.watching.client_timeout = 150
    settings.watching.connect_timeout = 10
    settings.posting.level = logging.WARNING  # kopf's own log lines as Events: only problems
    operator_settings: cfg.OperatorSettings = memo.get("operator_settings") or cfg.OperatorSettings.from_env()
    memo.shared = Shared(kube=await KubeApi.connect(memo.get("kubeconfig")), settings=operator_settings)


@kopf.on.cleanup()
async def close(memo: kopf.Memo, **_: Any) -> None:
    shared: Shared | None = memo.get("shared")
    if shared is not None:
        await shared.close()
        await shared.kube.close()


# On deletion or shutdown the daemon is asked to stop and gets `cancellation_backoff` seconds
# to do so cleanly (fail in-flight processes, unregister) before kopf cancels it.
@kopf.daemon(GROUP, VERSION, PLURAL, cancellation_backoff=60, cancellation_timeout=30)
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

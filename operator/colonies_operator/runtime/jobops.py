"""What a supervisor does to its Job besides creating it: Events, the reported mark, the
Job controller's FailedCreate words, deletion; and two readings of a Job's state.

All best effort where the outcome is already in Colonies: a Job already gone is no failure,
and an apiserver that cannot be reached (a restart takes seconds) is waited for a while.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime, timezone
from typing import Any

from colonies_operator.jobs import statuses
from colonies_operator.runtime.kube import UNREACHABLE, KubeApi, KubeError

log = logging.getLogger(__name__)

KUBE_PATIENCE = 60.0  # how long a best-effort call waits for an apiserver that cannot be reached

REPORTED_ANNOTATION = "colonyos.io/reported"


def reported(job: Mapping[str, Any] | None) -> bool:
    """Whether the Job's result is in Colonies (it carries the mark)."""
    return bool((((job or {}).get("metadata") or {}).get("annotations") or {}).get(REPORTED_ANNOTATION))


def reported_patch(how: str, ttl_seconds: int | None) -> dict[str, Any]:
    """Mark a Job reported, and only now give it its TTL: a finished Job whose result is not in
    Colonies yet must not be garbage-collected (the operator may be down when it finishes)."""
    patch: dict[str, Any] = {"metadata": {"annotations": {REPORTED_ANNOTATION: how}}}
    if ttl_seconds is not None:
        patch["spec"] = {"ttlSecondsAfterFinished": ttl_seconds}
    return patch


async def mark_reported(kube: KubeApi, namespace: str, name: str, how: str, ttl_seconds: int | None) -> None:
    # the Job may be gone already; the report itself has landed
    await patiently(lambda: kube.patch_job(namespace, name, reported_patch(how, ttl_seconds)),
                    f"marking Job {name} reported", refused=logging.INFO)


async def delete(kube: KubeApi, namespace: str, name: str) -> None:
    await patiently(lambda: kube.delete_job(namespace, name), f"deleting Job {name}")


async def patiently(call: Callable[[], Awaitable[Any]], what: str, *, refused: int = logging.WARNING) -> None:
    """Make a call the apiserver may refuse (logged at `refused`), trying again while it cannot
    be reached at all, for up to KUBE_PATIENCE seconds."""
    delay, give_up = 0.5, time.monotonic() + KUBE_PATIENCE
    while True:
        try:
            await call()
            return
        except KubeError as exc:
            log.log(refused, "%s failed: %s", what, exc)
            return
        except UNREACHABLE as exc:
            if time.monotonic() + delay > give_up:
                log.warning("%s failed: the apiserver could not be reached for %.0fs: %s", what, KUBE_PATIENCE, exc)
                return
            log.info("%s: the apiserver could not be reached (%s); trying again", what, exc)
        await asyncio.sleep(delay)
        delay = min(delay * 2, 5.0)


async def exists(kube: KubeApi, namespace: str, selector: str, name: str) -> bool | None:
    """Whether the Job exists now (one LIST by name: the operator has no right to GET Jobs);
    None when the apiserver could not be reached to say."""
    try:
        listing = await kube.list_jobs(namespace, selector, field_selector=f"metadata.name={name}")
    except UNREACHABLE as exc:
        log.info("looking for Job %s: the apiserver could not be reached: %s", name, exc)
        return None
    return bool(listing.get("items"))


async def post_event(kube: KubeApi, namespace: str, name: str, uid: str, type_: str, reason: str,
                     message: str) -> None:
    """An Event on the Job, for `kubectl describe job`."""
    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    event = {
        "apiVersion": "v1", "kind": "Event", "type": type_, "reason": reason, "message": message[:1024],
        "metadata": {"name": f"{name}.{time.time_ns():x}", "namespace": namespace},
        "involvedObject": {"apiVersion": "batch/v1", "kind": "Job", "name": name, "namespace": namespace, "uid": uid},
        "source": {"component": "colonies-operator"}, "firstTimestamp": now, "lastTimestamp": now, "count": 1,
    }
    try:
        await kube.post_event(namespace, event)
    except Exception as exc:
        log.info("Event on Job %s not posted: %s", name, exc)


async def failed_create_message(kube: KubeApi, namespace: str, name: str) -> str | None:
    """The latest FailedCreate Event of the Job controller about this Job (why its pods are
    refused: quota, LimitRange, Pod Security admission, a webhook), or None."""
    selector = f"involvedObject.kind=Job,involvedObject.name={name},reason=FailedCreate"
    try:
        events = (await kube.list_events(namespace, selector)).get("items") or []
    except (KubeError, *UNREACHABLE) as exc:  # read again at the next look
        log.info("reading the Events of Job %s failed: %s", name, exc)
        return None
    if not events:
        return None
    latest = max(events, key=lambda e: e.get("lastTimestamp") or e.get("eventTime") or "")
    return str(latest.get("message") or "")


def done_with(job: dict[str, Any], pods: list[dict[str, Any]]) -> bool:
    """A Job no longer runs anything: finished, and every pod of it terminal."""
    finished = statuses.true_condition(job, "Complete", "SuccessCriteriaMet", "Failed", "FailureTarget")
    return bool(finished) and all(statuses.phase(p) in ("Succeeded", "Failed") for p in pods)


def pods_settled(pods: list[dict[str, Any]]) -> bool:
    """Every pod is terminal or on its way out (a Job past its deadline deletes its pods)."""
    return all(statuses.phase(p) in ("Succeeded", "Failed") or p.get("metadata", {}).get("deletionTimestamp")
               for p in pods)

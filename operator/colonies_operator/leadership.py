"""Leader election over a coordination.k8s.io/v1 Lease, so that of several replicas exactly one serves.

client-go's semantics (k8s.io/client-go/tools/leaderelection), which `kubectl get lease` and
every controller-manager already speak:
- the Lease's spec holds `holderIdentity`, `leaseDurationSeconds`, `acquireTime`, `renewTime`
  and `leaseTransitions`; every write carries the resourceVersion read, so of two candidates
  writing at once one gets 409 Conflict (optimistic concurrency, no lock server);
- a candidate takes the Lease when nobody holds it, or when its record has not changed for
  `leaseDurationSeconds` *as measured on the candidate's own clock* since it first saw that
  record (never by comparing renewTime with its clock: clocks of two nodes differ);
- the leader renews every `retry_seconds`; when no renewal succeeded for `renew_deadline_seconds`
  (shorter than the lease, so it gives up before anyone may take over) it has lost, and so it
  has when it sees another holder;
- a leader that stops releases the Lease (no holder, duration 1 s), so a standby takes over at
  its next try instead of waiting for the lease to run out.

`Elector` is the candidate and leader; `lead` runs a service while holding the Lease.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Protocol
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web

from colonies_operator.runtime.kube import Conflict, KubeError, NotFound

log = logging.getLogger(__name__)

DEFAULT_LEASE_NAME = "colonies-operator-leader"
# Errors of one try (the apiserver refused, or could not be reached): the loop tries again.
TRY_ERRORS = (KubeError, aiohttp.ClientError, OSError, asyncio.TimeoutError)
UNANSWERED_LEASES = 6  # a standby that could not read the Lease for this many lease durations is unhealthy


class LeadershipLost(Exception):
    """The leader can no longer be sure it is the only one: it must stop serving at once."""


class LeaseApi(Protocol):
    """The three Lease calls (runtime/kube.py's KubeApi has them)."""

    async def read_lease(self, namespace: str, name: str) -> dict[str, Any] | None: ...
    async def create_lease(self, namespace: str, lease: Mapping[str, Any]) -> dict[str, Any]: ...
    async def replace_lease(self, namespace: str, name: str, lease: Mapping[str, Any]) -> dict[str, Any]: ...


@dataclass(frozen=True)
class LeaseSettings:
    """Where the Lease is and how it is kept; the defaults give a takeover within ~15 s of a
    leader's death (lease 10 s, noticed within one retry after it runs out, plus one retry of
    observation lag) and cost one write every 2 s."""

    namespace: str
    name: str = DEFAULT_LEASE_NAME
    identity: str = ""             # empty: `default_identity()`
    lease_seconds: float = 10.0    # a silent holder keeps the Lease this long
    renew_deadline_seconds: float = 7.0  # a leader that could not renew for this long stops serving
    retry_seconds: float = 2.0     # how often a leader renews and a standby tries

    def __post_init__(self) -> None:
        if not self.namespace:
            raise ValueError("COLONIES_OPERATOR_LEASE_NAMESPACE: no namespace for the Lease (in a pod it is the "
                             "pod's own; outside one, set it)")
        if not 0 < self.retry_seconds < self.renew_deadline_seconds < self.lease_seconds:
            raise ValueError(
                "COLONIES_OPERATOR_LEASE_*: need 0 < retry (COLONIES_OPERATOR_LEASE_RETRY_SECONDS="
                f"{self.retry_seconds:g}) < renew deadline (COLONIES_OPERATOR_LEASE_RENEW_DEADLINE_SECONDS="
                f"{self.renew_deadline_seconds:g}) < lease (COLONIES_OPERATOR_LEASE_SECONDS={self.lease_seconds:g}): "
                "a leader must give up before a standby may take over")


    @classmethod
    def from_env(cls, env: Mapping[str, str], own_namespace: str | None) -> LeaseSettings:
        """COLONIES_OPERATOR_LEASE_{NAMESPACE,NAME,SECONDS,RENEW_DEADLINE_SECONDS,RETRY_SECONDS};
        the namespace defaults to the operator's own."""
        def seconds(key: str, default: float) -> float:
            name = f"COLONIES_OPERATOR_LEASE_{key}"
            try:
                return float(env.get(name) or default)
            except ValueError:
                raise ValueError(f"{name}={env[name]!r} is not a number of seconds") from None

        return cls(namespace=env.get("COLONIES_OPERATOR_LEASE_NAMESPACE") or own_namespace or "",
                   name=env.get("COLONIES_OPERATOR_LEASE_NAME") or DEFAULT_LEASE_NAME,
                   lease_seconds=seconds("SECONDS", cls.lease_seconds),
                   renew_deadline_seconds=seconds("RENEW_DEADLINE_SECONDS", cls.renew_deadline_seconds),
                   retry_seconds=seconds("RETRY_SECONDS", cls.retry_seconds))


def default_identity() -> str:
    """The pod's name (or host name) and a random part: a restarted container is a new candidate."""
    return f"{os.environ.get('POD_NAME') or socket.gethostname()}_{uuid.uuid4().hex[:12]}"


def micro_time(seconds: float) -> str:
    """A metav1.MicroTime: RFC 3339 in UTC with microseconds."""
    return datetime.fromtimestamp(seconds, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Elector:
    """One candidate for one Lease. `clock` (monotonic seconds) measures expiry; `wall` (Unix
    seconds) only writes the record's times, which are for people to read."""

    def __init__(self, api: LeaseApi, settings: LeaseSettings, *,
                 clock: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time) -> None:
        self.api, self.settings = api, settings
        self.identity = settings.identity or default_identity()
        self.clock, self.wall = clock, wall
        self.lease: dict[str, Any] | None = None  # the Lease as last read or written
        self.observed_spec: dict[str, Any] | None = None  # its spec, and when we first saw it so
        self.observed_at = 0.0
        self.leading = False
        self.answered_at = self.clock()  # the last try the apiserver answered (won, or saw the holder)
        self.last_error = ""

    @property
    def holder(self) -> str:
        return str(((self.lease or {}).get("spec") or {}).get("holderIdentity") or "")

    def _observe(self, lease: dict[str, Any]) -> None:
        self.lease = lease
        spec = lease.get("spec") or {}
        if spec != self.observed_spec:
            self.observed_spec, self.observed_at = spec, self.clock()

    def _held_by_another(self) -> bool:
        spec = self.observed_spec or {}
        duration = float(spec.get("leaseDurationSeconds") or 0)
        return bool(self.holder) and self.holder != self.identity and self.clock() < self.observed_at + duration

    def _record(self, previous: Mapping[str, Any]) -> dict[str, Any]:
        now = micro_time(self.wall())
        transitions = int(previous.get("leaseTransitions") or 0)
        ours = previous.get("holderIdentity") == self.identity
        return {"holderIdentity": self.identity, "leaseDurationSeconds": int(self.settings.lease_seconds),
                "acquireTime": previous.get("acquireTime") if ours else now, "renewTime": now,
                "leaseTransitions": transitions if ours or not previous else transitions + 1}

    async def try_acquire_or_renew(self) -> bool:
        """One try: True when this candidate holds the Lease afterwards (taken or renewed)."""
        ns, name = self.settings.namespace, self.settings.name
        if self.leading and self.lease is not None:
            # the fast path of a leader: write over the version it wrote last
            try:
                self._observe(await self.api.replace_lease(ns, name, self._with_spec(self._record(self.lease["spec"]))))
                return True
            except Conflict:
                pass  # someone else wrote it: read it, see who holds it now
        lease = await self.api.read_lease(ns, name)
        if lease is None:
            body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                    "metadata": {"name": name, "namespace": ns}, "spec": self._record({})}
            try:
                self._observe(await self.api.create_lease(ns, body))
            except Conflict:  # another candidate created it first
                return self._lose()
            return self._win()
        self._observe(lease)
        if self._held_by_another():
            return self._lose()
        try:
            self._observe(await self.api.replace_lease(ns, name, self._with_spec(self._record(lease.get("spec") or {}))))
        except Conflict:  # another candidate wrote first
            return self._lose()
        return self._win()

    def _with_spec(self, spec: dict[str, Any]) -> dict[str, Any]:
        assert self.lease is not None
        return {**self.lease, "spec": spec}

    def _win(self) -> bool:
        if not self.leading:
            log.info("leading: took the Lease %s/%s as %s", self.settings.namespace, self.settings.name, self.identity)
        self.leading = True
        return True

    def _lose(self) -> bool:
        if self.leading:
            log.error("the Lease %s/%s is held by %s now", self.settings.namespace, self.settings.name,
                      self.holder or "nobody")
        self.leading = False
        return False

    async def _try(self, timeout: float) -> bool:
        try:
            won = await asyncio.wait_for(self.try_acquire_or_renew(), timeout)
        except TRY_ERRORS as exc:
            self.last_error = f"{type(exc).__name__}: {exc}"
            log.warning("Lease %s/%s: %s", self.settings.namespace, self.settings.name, self.last_error)
            return False
        self.answered_at, self.last_error = self.clock(), ""
        return won

    def standby_health(self) -> tuple[bool, dict[str, Any]]:
        """(healthy, what the liveness endpoint says) of a standby: unhealthy once the Lease has
        not been readable for UNANSWERED_LEASES leases (e.g. no RBAC for it), so a standby that
        could never lead is restarted and seen, not left looking fine."""
        stale = self.clock() - self.answered_at > UNANSWERED_LEASES * self.settings.lease_seconds
        body = {"leading": self.leading, "identity": self.identity, "holder": self.holder}
        if stale:
            body["error"] = f"the Lease {self.settings.namespace}/{self.settings.name} did not answer: {self.last_error}"
        return not stale, body

    async def acquire(self) -> None:
        """Try every `retry_seconds` until this candidate leads."""
        announced = ""
        while not await self._try(self.settings.retry_seconds * 2):
            if self.holder and self.holder != announced:
                announced = self.holder
                log.info("standing by: the Lease %s/%s is held by %s", self.settings.namespace, self.settings.name,
                         self.holder)
            await asyncio.sleep(self.settings.retry_seconds)

    async def hold(self) -> None:
        """Renew every `retry_seconds` for as long as it succeeds; raises LeadershipLost when
        another holds the Lease, or when no renewal succeeded for `renew_deadline_seconds`."""
        deadline = self.settings.renew_deadline_seconds
        renewed = self.clock()
        while True:
            # No try may end past the deadline: a standby may take over soon after it.
            await asyncio.sleep(min(self.settings.retry_seconds, max(0.0, renewed + deadline - self.clock())))
            left = renewed + deadline - self.clock()
            if left > 0 and await self._try(left):
                renewed = self.clock()
                continue
            if self.holder and self.holder != self.identity:
                self.leading = False
                raise LeadershipLost(f"the Lease {self.settings.namespace}/{self.settings.name} is held by "
                                     f"{self.holder}")
            if self.clock() - renewed >= deadline:
                self.leading = False
                raise LeadershipLost(f"could not renew the Lease {self.settings.namespace}/{self.settings.name} "
                                     f"for {deadline:g} s")

    async def release(self) -> None:
        """Give the Lease up (no holder, 1 s), so a standby takes it at its next try."""
        if not self.leading or self.lease is None:
            return
        self.leading = False
        spec = self.lease.get("spec") or {}
        now = micro_time(self.wall())
        released = {"leaseDurationSeconds": 1, "acquireTime": now, "renewTime": now,
                    "leaseTransitions": int(spec.get("leaseTransitions") or 0)}
        try:
            await asyncio.wait_for(self.api.replace_lease(self.settings.namespace, self.settings.name,
                                                          self._with_spec(released)), self.settings.retry_seconds * 2)
            log.info("released the Lease %s/%s", self.settings.namespace, self.settings.name)
        except (NotFound, *TRY_ERRORS) as exc:  # it runs out by itself
            log.warning("could not release the Lease %s/%s (%s): a standby takes over when it runs out",
                        self.settings.namespace, self.settings.name, exc)


async def lead(elector: Elector, serve: Callable[[], Awaitable[None]], lost: Callable[[LeadershipLost], None]) -> None:
    """Campaign until leading, then `serve` while renewing. When `serve` ends, release the
    Lease. When leadership is lost, `lost(exc)` is called while `serve` still runs: it must
    end the process at once (a graceful stop would keep serving next to the new leader)."""
    await elector.acquire()
    serving = asyncio.create_task(serve(), name="serve")
    holding = asyncio.create_task(elector.hold(), name="hold-lease")
    try:
        await asyncio.wait({serving, holding}, return_when=asyncio.FIRST_COMPLETED)
        if holding.done():
            error = holding.exception()
            exc = error if isinstance(error, LeadershipLost) else LeadershipLost(f"renewing failed: {error!r}")
            lost(exc)
            raise exc
    finally:
        holding.cancel()
        if not serving.done():
            serving.cancel()
        await asyncio.gather(serving, holding, return_exceptions=True)
        await elector.release()
    serving.result()


async def serve_standby_health(endpoint: str, elector: Elector) -> web.AppRunner | None:
    """The liveness endpoint of a standby: healthy (a standby must not be restarted for
    standing by) and saying who leads. kopf's own endpoint replaces it once leading."""
    if not endpoint:
        return None
    parts = urlsplit(endpoint)

    async def health(_: web.Request) -> web.Response:
        healthy, body = elector.standby_health()
        return web.json_response({"leadership": body}, status=200 if healthy else 503)

    app = web.Application()
    app.router.add_get(parts.path or "/", health)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, parts.hostname or "0.0.0.0", parts.port or 80).start()
    return runner

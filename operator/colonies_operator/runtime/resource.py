"""The life of one ColonyExecutor resource: parse its spec, load its keys, run an
`ExecutorRuntime`, keep its status and conditions current, and survive every bad input
with a condition and an Event instead of a crash loop.

No kopf here: the edge passes in getters for the live spec, a stop check and an Event
emitter, so tests can drive a resource without kopf.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime, timezone
from typing import Any

from colonies_operator import config as cfg
from colonies_operator.colonies import errors
from colonies_operator.colonies.crypto import Key
from colonies_operator.runtime.capacity import Capacity
from colonies_operator.runtime.executor import ExecutorRuntime
from colonies_operator.runtime.kube import UNREACHABLE, KubeError
from colonies_operator.runtime.registration import NameConflict
from colonies_operator.runtime import templates
from colonies_operator.runtime.shared import Shared

log = logging.getLogger(__name__)

RETRY_SECONDS = 5.0    # how soon a broken resource (missing Secret, unreachable server) is retried
STATUS_SECONDS = 1.0   # status is patched at most this often, and only when it changed
EXECUTOR_KEY_FIELD = "executorPrvKey"

Emit = Callable[[str, str, str], None]              # (type Normal|Warning, reason, message)
WaitStopped = Callable[[float], Awaitable[bool]]    # wait up to n s; True when stopping


class Problem(Exception):
    """Why a resource cannot run now: becomes Ready=False with this reason, and an Event."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason, self.message = reason, message


def _condition(type_: str, status: bool, reason: str, message: str) -> dict[str, str]:
    return {"type": type_, "status": "True" if status else "False", "reason": reason, "message": message[:1000]}


class ExecutorResource:
    def __init__(
        self, shared: Shared, namespace: str, name: str, uid: str, *,
        spec: Callable[[], Mapping[str, Any]], generation: Callable[[], int],
        status: Mapping[str, Any], emit: Emit,
    ) -> None:
        self.shared = shared
        self.namespace, self.name, self.uid = namespace, name, uid
        self._spec, self._generation, self._emit = spec, generation, emit
        self._base = {k: int(status.get(k) or 0) for k in ("succeeded", "failed")}  # counts survive restarts
        self._conditions: dict[str, dict[str, str]] = {
            c["type"]: dict(c) for c in status.get("conditions") or [] if isinstance(c, Mapping) and "type" in c}
        self._published: dict[str, Any] = {}
        self._last_event: tuple[str, str] | None = None
        self.runtime: ExecutorRuntime | None = None
        self.capacity: Capacity | None = None  # shared by the runtimes of successive identities
        self._draining: str = ""               # why the current runtime takes no new work

    # --- the loop ----------------------------------------------------------------------------

    async def serve(self, wait_stopped: WaitStopped, deleted: Callable[[], bool]) -> None:
        while True:
            generation = self._generation()
            try:
                config = self._config()
                colony_key = await self._colony_key(config)
                executor_key = await self._executor_key(config, colony_key)
                config = await self._checked(config)
            except cfg.ConfigError as exc:
                await self._not_ready("InvalidSpec", str(exc))
            except Problem as exc:
                await self._not_ready(exc.reason, exc.message)
            else:
                if await self._run(config, colony_key, executor_key, generation, wait_stopped, deleted):
                    return
                continue
            if await wait_stopped(RETRY_SECONDS):
                return

    def _config(self) -> cfg.ExecutorConfig:
        return cfg.executor_config(self.namespace, self.name, self._spec(), self.shared.settings, self.uid)

    async def _run(self, config: cfg.ExecutorConfig, colony_key: Key, executor_key: Key, generation: int,
                   wait_stopped: WaitStopped, deleted: Callable[[], bool]) -> bool:
        """Run until stopped (True) or until the runtime must be rebuilt (False)."""
        if self.capacity is None:
            self.capacity = Capacity(config.budget, pools=config.profile_budgets)
        self.capacity.set_budget(config.budget, config.profile_budgets)
        runtime = ExecutorRuntime(config, connection=self.shared.connection(config.server), colony_key=colony_key,
                                  executor_key=executor_key, kube=self.shared.kube,
                                  watch=self.shared.watch(self.namespace), capacity=self.capacity,
                                  metrics=self.shared.metrics)
        self.runtime = runtime
        self.shared.runtimes[f"{self.namespace}/{self.name}"] = runtime
        self.shared.metrics.runtime_starts[f"{self.namespace}/{self.name}"] += 1
        task = asyncio.create_task(runtime.run(), name=f"executor-{self.namespace}/{self.name}")
        draining: asyncio.Task[None] | None = None
        registered = False
        try:
            while not task.done():
                if await wait_stopped(STATUS_SECONDS):
                    if deleted():
                        await self._remove(runtime, task)
                    return True
                if runtime.health.registered and not registered:
                    registered = True
                    self._event("Normal", "Registered",
                                f"executor {config.executor_name} ({runtime.executor_id[:12]}…) registered in colony {config.colony_name}")
                if draining is None and self._generation() != generation:
                    generation = self._generation()
                    try:
                        new = await self._checked(self._config())
                    except cfg.ConfigError as exc:
                        self._event("Warning", "InvalidSpec", f"{exc}; keeping the previous configuration")
                    except Problem as exc:
                        self._event("Warning", exc.reason, f"{exc.message}; keeping the previous configuration")
                    else:
                        if _identity(new) != _identity(config):
                            # Another server, colony, name, type, location or key: what runs now
                            # finishes and reports under the identity that took it, then the new
                            # one registers (two registrations of one name or id cannot coexist).
                            self._draining = (f"the executor's identity changed; {{n}} processes taken by "
                                              f"{config.executor_name} finish first")
                            draining = asyncio.create_task(runtime.drain())
                        else:
                            await runtime.update_config(new)
                            config = new
                if draining is not None and draining.done():
                    await self._retire(runtime, task)
                    return False
                await self._publish(runtime, config, generation)
            exc = task.exception()
            if exc is None:
                return False
            reason, message = _registration_problem(exc)
            await self._not_ready(reason, message, executor_id=runtime.executor_id)
            return await wait_stopped(RETRY_SECONDS)
        finally:
            self._draining = ""
            if draining is not None:
                draining.cancel()
            if not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
            self._fold(runtime)
            self.runtime = None
            self.shared.runtimes.pop(f"{self.namespace}/{self.name}", None)

    def _fold(self, runtime: ExecutorRuntime) -> None:
        """Keep an ended runtime's counts: the status counts over the resource's whole life."""
        self._base["succeeded"] += runtime.stats.succeeded
        self._base["failed"] += runtime.stats.failed
        runtime.stats.succeeded = runtime.stats.failed = 0

    async def _retire(self, runtime: ExecutorRuntime, task: asyncio.Task[None]) -> None:
        """The old identity has nothing in flight any more: stop it and unregister it."""
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        try:
            await runtime.registration.unregister()
        except errors.ColoniesError as exc:
            log.warning("unregistering the previous executor %s failed: %s", runtime.config.executor_name, exc)

    async def _remove(self, runtime: ExecutorRuntime, task: asyncio.Task[None]) -> None:
        reason = (f"ExecutorRemoved: the ColonyExecutor {self.namespace}/{self.name} was deleted while this "
                  "process ran; its Job was deleted. Submit it again to run it on another executor")
        removal = asyncio.ensure_future(runtime.remove(reason, task))
        try:
            await asyncio.shield(removal)
        except asyncio.CancelledError:
            # kopf's cancellation_backoff ran out; it still waits cancellation_timeout for us
            await asyncio.gather(removal, return_exceptions=True)
        except errors.ColoniesError as exc:
            log.warning("removing executor %s from Colonies failed: %s", self.name, exc)
        # A change of the resource wakes kopf, which then sees this daemon done and lets the
        # resource go at once, rather than at the end of the period it sleeps between checks.
        self._set_condition("Ready", False, "Removed", "the resource is deleted: its processes were failed, "
                                                       "its Jobs deleted and the executor unregistered")
        await self._patch({"inFlight": 0, "conditions": list(self._conditions.values())})

    # --- keys --------------------------------------------------------------------------------

    async def _colony_key(self, config: cfg.ExecutorConfig) -> Key:
        ref = config.colony_key
        data = await self._secret(ref.name)
        if data is None:
            raise Problem("ColonyKeySecretMissing", f"Secret {self.namespace}/{ref.name} does not exist; "
                                                    f"create it with the colony's private key under '{ref.key}'")
        return self._key(data, ref, "InvalidColonyKey")

    async def _executor_key(self, config: cfg.ExecutorConfig, colony_key: Key) -> Key:
        """The key named by executorKeySecretRef; else the one an earlier version generated into
        `<name>-executor-key`; else one derived from the colony key and this resource's
        identity, which needs no Secret at all (and no right to create Secrets)."""
        ref = config.executor_key
        if ref is not None:
            data = await self._secret(ref.name)
            if data is None:
                raise Problem("ExecutorKeySecretMissing", f"Secret {self.namespace}/{ref.name} does not exist")
            return self._key(data, ref, "InvalidExecutorKey")
        legacy = cfg.SecretRef(config.generated_key_secret, EXECUTOR_KEY_FIELD)
        data = await self._secret(legacy.name)
        if data is not None:
            return self._key(data, legacy, "InvalidExecutorKey")
        # The executor name is part of it: Colonies cannot hold one id under two names.
        return colony_key.derive(f"executor/{self.namespace}/{self.name}/{self.uid}/{config.executor_name}")

    async def _checked(self, config: cfg.ExecutorConfig) -> cfg.ExecutorConfig:
        """`config` with its server's CA, once the apiserver accepts the Jobs its templates make."""
        config = await self._server_ca(config)
        refused = await templates.refusal(self.shared.kube, config)
        if refused:
            raise Problem("InvalidSpec", refused)
        return config

    async def _server_ca(self, config: cfg.ExecutorConfig) -> cfg.ExecutorConfig:
        """`config` verifying the Colonies server against the CA bundle that spec.server.caSecretRef names."""
        ref = config.ca_secret
        if ref is None:
            return config
        data = await self._secret(ref.name)
        if data is None:
            raise Problem("CASecretMissing", f"Secret {self.namespace}/{ref.name} does not exist; create it with the "
                                             f"CA certificate(s) of the Colonies server, PEM, under '{ref.key}'")
        if ref.key not in data:
            raise Problem("InvalidCA", f"Secret {self.namespace}/{ref.name} has no key '{ref.key}'")
        try:
            return dataclasses.replace(config, server=config.server.with_ca(data[ref.key]))
        except ValueError:
            raise Problem("InvalidCA", f"Secret {self.namespace}/{ref.name} key '{ref.key}' holds no valid PEM "
                                       "certificate (a CA bundle: -----BEGIN CERTIFICATE----- ...)") from None

    async def _secret(self, name: str) -> dict[str, str] | None:
        try:
            return await self.shared.kube.read_secret(self.namespace, name)
        except KubeError as exc:
            raise Problem("SecretUnreadable", f"reading Secret {self.namespace}/{name} failed: {exc}") from None
        except UNREACHABLE as exc:
            raise Problem("ApiserverUnreachable", f"reading Secret {self.namespace}/{name} failed: the apiserver "
                                                  f"did not answer ({exc or type(exc).__name__})") from None

    def _key(self, data: Mapping[str, str], ref: cfg.SecretRef, reason: str) -> Key:
        # Whoever reads the ColonyExecutor reads this message: it names only what the spec
        # names, never the Secret's other keys, a value or its length.
        if ref.key not in data:
            raise Problem(reason, f"Secret {self.namespace}/{ref.name} has no key '{ref.key}'")
        try:
            return Key(data[ref.key])
        except ValueError:
            raise Problem(reason, f"Secret {self.namespace}/{ref.name} key '{ref.key}' is not a valid private key "
                                  "(64 hexadecimal characters)") from None

    # --- status and events -------------------------------------------------------------------

    def _event(self, type_: str, reason: str, message: str) -> None:
        if self._last_event != (reason, message):
            self._last_event = (reason, message)
            self._emit(type_, reason, message)

    def _set_condition(self, type_: str, status: bool, reason: str, message: str) -> None:
        new = _condition(type_, status, reason, message)
        old = self._conditions.get(type_)
        if old and old.get("status") == new["status"] and old.get("lastTransitionTime"):
            new["lastTransitionTime"] = old["lastTransitionTime"]
        else:
            new["lastTransitionTime"] = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        self._conditions[type_] = new

    async def _not_ready(self, reason: str, message: str, executor_id: str = "") -> None:
        log.warning("%s/%s not ready: %s: %s", self.namespace, self.name, reason, message)
        self._event("Warning", reason, message)
        self._set_condition("Registered", False, reason, message)
        self._set_condition("Ready", False, reason, message)
        self._set_condition("Degraded", True, reason, message)
        status: dict[str, Any] = {"observedGeneration": self._generation(), "inFlight": 0,
                                  "conditions": list(self._conditions.values())}
        if executor_id:
            status["executorId"] = executor_id
        await self._patch(status)

    async def _publish(self, runtime: ExecutorRuntime, config: cfg.ExecutorConfig, generation: int) -> None:
        health = runtime.health
        if health.registered:
            self._set_condition("Registered", True, "Registered", f"executor {config.executor_name}, id {runtime.executor_id}")
            self._set_condition("Ready", *_readiness(runtime, config, self._draining))
            self._set_condition("Degraded", not health.colonies_ok, "ColoniesUnreachable" if not health.colonies_ok
                                else "AsExpected", health.problem or "no problems")
            if not health.colonies_ok:
                self._event("Warning", "ColoniesUnreachable", health.problem)
        status: dict[str, Any] = {
            "executorId": runtime.executor_id, "executorName": config.executor_name,
            "observedGeneration": generation,
            "inFlight": runtime.stats.in_flight,
            "queued": runtime.capacity.queued,
            "succeeded": self._base["succeeded"] + runtime.stats.succeeded,
            "failed": self._base["failed"] + runtime.stats.failed,
            "conditions": list(self._conditions.values()),
        }
        waiting = runtime.demand.waiting  # None (the poll is off, or not answered yet): a merge patch deletes
        status["waiting"] = waiting.count if waiting else None  # "at least" when capped: the server lists 100 at most
        status["waitingCapped"] = waiting.capped if waiting else None
        if health.last_assign_time:
            status["lastAssignTime"] = datetime.fromtimestamp(health.last_assign_time, timezone.utc).strftime(
                "%Y-%m-%dT%H:%M:%SZ")
        await self._patch(status)

    async def _patch(self, status: dict[str, Any]) -> None:
        comparable = {k: v for k, v in status.items() if k != "lastAssignTime"}
        if comparable == self._published:
            return
        try:
            await self.shared.kube.patch_executor_status(self.namespace, self.name, status)
            self._published = comparable
        except (KubeError, *UNREACHABLE) as exc:  # the next round tries again; what runs runs on
            log.info("status of %s/%s not updated: %s", self.namespace, self.name, exc or type(exc).__name__)


def _identity(config: cfg.ExecutorConfig) -> tuple[Any, ...]:
    return (config.server, config.colony_name, config.executor_name, config.executor_type,
            config.colony_key, config.executor_key, config.location_name)


def _readiness(runtime: ExecutorRuntime, config: cfg.ExecutorConfig, draining: str) -> tuple[bool, str, str]:
    """(Ready, reason, message): Ready only while the assign loop runs and can take work."""
    health = runtime.health
    if draining:
        return False, "Draining", draining.format(n=runtime.stats.in_flight)
    if not health.assigning:
        return False, "Starting", "registered; listing Jobs and taking back those of an earlier run"
    if health.paused:
        return False, "Paused", "spec.paused is true: not assigning new processes"
    if config.paused:
        return False, "Pausing", "waiting for the assign poll in flight to return"
    if not health.colonies_ok:
        return False, "ColoniesUnreachable", health.problem
    if health.colony_paused:
        return False, "ColonyPaused", ("the colony's assignments are paused on the Colonies server; processes "
                                       "wait in the queue until its owner resumes them")
    return True, "Assigning", "registered and assigning processes"


def _registration_problem(exc: BaseException) -> tuple[str, str]:
    if isinstance(exc, NameConflict):
        return "NameConflict", str(exc)
    if isinstance(exc, errors.ColoniesUnreachable):
        return "ColoniesUnreachable", str(exc)
    if isinstance(exc, errors.Forbidden):
        return "RegistrationRefused", (f"Colonies refused the registration ({exc.message}); is the colony key "
                                       "the owner of this colony, and does the colony exist?")
    if isinstance(exc, errors.ColoniesError):
        return "RegistrationFailed", str(exc)
    return "InternalError", f"{type(exc).__name__}: {exc}"

"""Async Colonies RPC client.

One `Connection` per server holds one `httpx.AsyncClient` (keep-alive connection pool) and
the retry policy; `Connection.client(key)` gives a cheap `ColoniesClient` view that signs
every call with that key, so many executors share one pool.

Every RPC is `POST /api` with `{"payloadtype", "payload": base64(json), "signature"}`; the
signature covers the base64 text. Errors come back with real HTTP statuses and are raised
as the types in `errors`.

Retries are bounded in count and time, and only where a retry cannot do harm: connection
failures before the request was sent and 5xx answers are retried for every call; a request
that may have reached the server but got no answer (read error, read timeout) is retried
only for idempotent calls, because retrying `addlogmsg` or a submit would duplicate it.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import functools
import json
import random
import ssl
import time
from collections import Counter
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import httpx

from colonies_operator.colonies import errors
from colonies_operator.colonies.crypto import Key
from colonies_operator.colonies.models import (
    Executor, FunctionSpec, LogEntry, Process, ProcessGraph, ProcessState,
)

MAX_LOG_COUNT = 500  # the server refuses getlogs counts above this
MAX_IDLE_CONNECTIONS = 16


@dataclass(frozen=True)
class ServerAddress:
    host: str
    port: int
    tls: bool = False
    verify: bool | str = True  # True, False, or a CA bundle path (https only)
    # A CA bundle (PEM text) that alone verifies the server, e.g. from a ColonyExecutor's
    # spec.server.caSecretRef. Held in memory, not written to a file: a Secret's data never
    # touches the disk (the image's root filesystem is read-only anyway), and the address, as
    # the key of its connection pool, changes with the CA.
    ca_pem: str = dataclasses.field(default="", repr=False)

    def with_ca(self, pem: str) -> ServerAddress:
        """This address verifying the server against `pem` only; ValueError when `pem` holds
        no certificate (the message never repeats it)."""
        address = dataclasses.replace(self, ca_pem=pem)
        try:
            context = address.ssl_context
        except ssl.SSLError:
            context = None
        if not isinstance(context, ssl.SSLContext) or not any(context.cert_store_stats().values()):
            raise ValueError("not a PEM certificate bundle")
        return address

    @functools.cached_property
    def ssl_context(self) -> ssl.SSLContext | bool:
        """How https:// and wss:// verify the server, for httpx and aiohttp alike: a context
        that trusts the CA bundle (`ca_pem` or the file `verify` names) and nothing else; else
        True (the default trust store) or False (no verification)."""
        if self.ca_pem:
            return ssl.create_default_context(cadata=self.ca_pem)
        if isinstance(self.verify, str):
            return ssl.create_default_context(cafile=self.verify)
        return self.verify

    @property
    def base_url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"{'wss' if self.tls else 'ws'}://{self.host}:{self.port}/pubsub"


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 5          # total tries, the first included
    first_delay: float = 0.2   # seconds; doubles per try, with jitter
    max_delay: float = 5.0
    deadline: float = 30.0     # no new try starts after this many seconds

    def delay(self, attempt: int) -> float:
        base = min(self.max_delay, self.first_delay * (2 ** (attempt - 1)))
        return base * random.uniform(0.5, 1.0)


NO_RETRY = RetryPolicy(attempts=1)

_SENT_NOTHING = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
_NO_ANSWER = (httpx.TransportError,)


def envelope(msgtype: str, fields: Mapping[str, Any], key: Key) -> bytes:
    """The signed request body for one RPC. A NaN or infinite number raises ValueError
    rather than go out as `NaN`/`Infinity`, which are not JSON (the server would refuse them)."""
    message = {"msgtype": msgtype, **fields}
    payload = base64.b64encode(json.dumps(message, separators=(",", ":"), allow_nan=False).encode()).decode()
    return json.dumps(
        {"payloadtype": msgtype, "payload": payload, "signature": key.sign(payload)},
        separators=(",", ":"),
    ).encode()


def decode_reply(msgtype: str, status: int, body: bytes) -> Any:
    """The decoded reply payload, or the typed error for an error reply."""
    try:
        reply = json.loads(body)
        payload = json.loads(base64.b64decode(reply.get("payload") or "") or b"null")
    except (ValueError, AttributeError):
        if status >= 400:
            raise errors.error_for(status, body[:200].decode(errors="replace"), msgtype) from None
        raise errors.ColoniesServerError(status, f"unparseable reply: {body[:200]!r}", msgtype) from None
    if status >= 400 or reply.get("error"):
        message = payload.get("message", "") if isinstance(payload, dict) else str(payload)
        code = payload.get("status", status) if isinstance(payload, dict) else status
        raise errors.error_for(int(code) if status < 400 else status, str(message), msgtype)
    return payload


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()


class Connection:
    """One Colonies server: the HTTP pool, timeouts and retry policy shared by all callers."""

    def __init__(
        self, address: ServerAddress, *, retry: RetryPolicy = RetryPolicy(),
        timeout: float = 30.0, max_connections: int = 100, transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.address = address
        self.retry = retry
        self.timeout = timeout
        self._http = httpx.AsyncClient(
            base_url=address.base_url,
            verify=address.ssl_context if address.tls else True,
            timeout=httpx.Timeout(timeout, connect=5.0),
            # Few idle connections: httpcore checks every pooled connection (a getpeername
            # syscall each) on every request, so a large idle pool costs on every call.
            limits=httpx.Limits(max_connections=max_connections,
                                max_keepalive_connections=min(max_connections, MAX_IDLE_CONNECTIONS)),
            transport=transport,
        )
        self.requests = 0  # RPCs sent, retries included: tests and metrics read this
        self.calls: Counter[tuple[str, str]] = Counter()  # (msgtype, outcome) per call, retries folded in

    def client(self, key: Key | str) -> ColoniesClient:
        return ColoniesClient(self, key if isinstance(key, Key) else Key(key))

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> Connection:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def health(self) -> bool:
        try:
            return (await self._http.get("/health", timeout=5.0)).status_code == 200
        except httpx.TransportError:
            return False

    async def call(
        self, msgtype: str, fields: Mapping[str, Any], key: Key, *,
        idempotent: bool = True, read_timeout: float | None = None, retry: RetryPolicy | None = None,
    ) -> Any:
        try:
            result = await self._call(msgtype, fields, key, idempotent, read_timeout, retry)
        except errors.ColoniesError as exc:
            self.calls[(msgtype, _OUTCOMES.get(type(exc), "error"))] += 1
            raise
        self.calls[(msgtype, "ok")] += 1
        return result

    async def _call(
        self, msgtype: str, fields: Mapping[str, Any], key: Key, idempotent: bool,
        read_timeout: float | None, retry: RetryPolicy | None,
    ) -> Any:
        body = envelope(msgtype, fields, key)
        policy = retry or self.retry
        timeout = httpx.Timeout(read_timeout or self.timeout, connect=5.0) if read_timeout else None
        started = time.monotonic()
        attempt = 0
        while True:
            attempt += 1
            self.requests += 1
            try:
                kwargs: dict[str, Any] = {"content": body}
                if timeout is not None:
                    kwargs["timeout"] = timeout
                response = await self._http.post("/api", **kwargs)
            except _NO_ANSWER as exc:
                retriable = isinstance(exc, _SENT_NOTHING) or idempotent
                failure: BaseException = exc
            else:
                try:
                    return decode_reply(msgtype, response.status_code, response.content)
                except errors.ColoniesServerError as exc:
                    retriable, failure = True, exc
            elapsed = time.monotonic() - started
            pause = policy.delay(attempt)
            if not retriable or attempt >= policy.attempts or elapsed + pause > policy.deadline:
                if isinstance(failure, errors.ColoniesError):
                    raise failure
                raise errors.ColoniesUnreachable(self.address.base_url, attempt, elapsed, failure,
                                                 maybe_delivered=not isinstance(failure, _SENT_NOTHING)) from failure
            await asyncio.sleep(pause)

    async def server_info(self) -> dict[str, Any]:
        """Unsigned `getserverinfomsg`: build version and backends. Good for a reachability check."""
        result = await self.call("getserverinfomsg", {}, _ANONYMOUS)
        return result if isinstance(result, dict) else {}

    async def subscribe(
        self, msgtype: str, fields: Mapping[str, Any], key: Key, *, timeout: int,
    ) -> AsyncIterator[Process]:
        """Process events from the `/pubsub` WebSocket until the server closes it after `timeout` s."""
        import aiohttp  # kopf and kubernetes_asyncio already bring it; httpx speaks no WebSocket

        body = envelope(msgtype, {**fields, "timeout": timeout}, key).decode()
        verify = self.address.ssl_context if self.address.tls else True
        try:
            async with aiohttp.ClientSession() as session:
                async with session.ws_connect(self.address.ws_url, ssl=verify, heartbeat=30) as ws:
                    await ws.send_str(body)
                    async for frame in ws:
                        if frame.type != aiohttp.WSMsgType.TEXT:
                            break
                        data = frame.data.encode()
                        is_error = json.loads(data).get("error")
                        payload = decode_reply(msgtype, 400 if is_error else 200, data)
                        if isinstance(payload, dict):
                            yield Process.from_json(payload)
        except aiohttp.ClientError as exc:
            raise errors.ColoniesUnreachable(self.address.ws_url, 1, 0.0, exc) from exc


_ANONYMOUS = Key("01" * 32)  # signs the two payload types the server does not check
_OUTCOMES = {errors.NotFound: "not_found", errors.Forbidden: "forbidden", errors.BadRequest: "bad_request",
             errors.AssignmentsPaused: "paused",
             errors.ColoniesServerError: "server_error", errors.ColoniesUnreachable: "unreachable"}


class ColoniesClient:
    """The Colonies API as seen by one identity (user, executor, colony owner or server owner)."""

    def __init__(self, connection: Connection, key: Key) -> None:
        self.connection = connection
        self.key = key

    @property
    def id(self) -> str:
        return self.key.id

    async def _call(self, msgtype: str, idempotent: bool = True, **fields: Any) -> Any:
        return await self.connection.call(msgtype, fields, self.key, idempotent=idempotent)

    # --- colonies and users (server owner / colony owner) -----------------------------------

    async def add_colony(self, colony_id: str, name: str) -> dict[str, Any]:
        return await self._call("addcolonymsg", False, colony={"colonyid": colony_id, "name": name})

    async def add_user(self, colony: str, user_id: str, name: str, email: str = "", phone: str = "") -> dict[str, Any]:
        user = {"colonyname": colony, "userid": user_id, "name": name, "email": email, "phone": phone}
        return await self._call("addusermsg", False, user=user)

    # --- executors -----------------------------------------------------------------------------

    async def add_executor(
        self, colony: str, executor_id: str, name: str, executor_type: str, *, location: str = "",
        hardware: Sequence[Mapping[str, Any]] = (), software: Sequence[Mapping[str, Any]] = (),
    ) -> Executor:
        """Register an executor (signed by the colony owner); it is PENDING until approved."""
        executor: dict[str, Any] = {
            "executorid": executor_id, "executorname": name, "executortype": executor_type,
            "colonyname": colony, "state": 0, "requirefuncreg": False,
            "commissiontime": _now(), "lastheardfromtime": _now(),
            "capabilities": {"hardware": list(hardware), "software": list(software)},
            "allocations": {"projects": {}},
        }
        if location:
            executor["locationname"] = location
        return Executor.from_json(await self._call("addexecutormsg", False, executor=executor))

    async def approve_executor(self, colony: str, name: str) -> None:
        await self._call("approveexecutormsg", colonyname=colony, executorname=name)

    async def remove_executor(self, colony: str, name: str) -> None:
        await self._call("removeexecutormsg", colonyname=colony, executorname=name)

    async def get_executor(self, colony: str, name: str) -> Executor:
        return Executor.from_json(await self._call("getexecutormsg", colonyname=colony, executorname=name))

    async def get_executors(self, colony: str) -> list[Executor]:
        return [Executor.from_json(e) for e in await self._call("getexecutorsmsg", colonyname=colony) or []]

    async def update_executor(self, colony: str, name: str, *, hardware: Sequence[Mapping[str, Any]] = (),
                              software: Sequence[Mapping[str, Any]] = ()) -> None:
        """Replace the executor's capabilities (signed by the executor itself)."""
        await self._call("updateexecutormsg", colonyname=colony, executorname=name,
                         capabilities={"hardware": list(hardware), "software": list(software)})

    async def pause_assignments(self, colony: str) -> None:
        """Pause every assign in the colony (colony owner); assigns answer 408/503 until resumed."""
        await self._call("pauseassignmentsmsg", colonyname=colony)

    async def resume_assignments(self, colony: str) -> None:
        await self._call("resumeassignmentsmsg", colonyname=colony)

    async def add_function(self, colony: str, executor_name: str, funcname: str, executor_type: str = "") -> dict[str, Any]:
        fun = {"executorname": executor_name, "colonyname": colony, "funcname": funcname, "executortype": executor_type}
        return await self._call("addfunctionmsg", False, fun=fun)

    async def get_functions(self, colony: str, executor_name: str = "") -> list[dict[str, Any]]:
        return list(await self._call("getfunctionsmsg", colonyname=colony, executorname=executor_name) or [])

    # --- the executor's loop -------------------------------------------------------------------

    async def assign(
        self, colony: str, timeout: int, *, available_cpu: str | None = None, available_mem: str | None = None,
    ) -> Process | None:
        """Long-poll for a process that fits; None when none came within `timeout` s (HTTP 404).

        `timeout` < 0 asks once and answers at once; 0 is refused by the server. Only
        "<n>m" cpu strings count for the server; anything else reads as zero millicores.
        """
        if timeout == 0:
            raise ValueError("assign timeout must not be 0: use a positive long-poll or -1 for one try")
        fields: dict[str, Any] = {"colonyname": colony, "timeout": timeout}
        if available_cpu is not None:
            fields["availablecpu"] = available_cpu
        if available_mem is not None:
            fields["availablemem"] = available_mem
        try:
            reply = await self.connection.call(
                "assignprocessmsg", fields, self.key, idempotent=False,
                read_timeout=max(timeout, 0) + self.connection.timeout,
            )
        except errors.NotFound:
            return None
        return Process.from_json(reply)

    async def close_successful(self, process_id: str, output: Sequence[Any] | None = None) -> None:
        fields: dict[str, Any] = {"processid": process_id}
        if output is not None:
            fields["out"] = list(output)
        await self._call("closesuccessfulmsg", **fields)

    async def close_failed(self, process_id: str, errors_: Sequence[str]) -> None:
        await self._call("closefailedmsg", processid=process_id, errors=[str(e) for e in errors_])

    async def set_output(self, process_id: str, output: Sequence[Any]) -> None:
        await self._call("setoutputmsg", processid=process_id, out=list(output))

    async def add_log(self, process_id: str, message: str) -> None:
        await self._call("addlogmsg", False, processid=process_id, message=message)

    # --- reading ------------------------------------------------------------------------------

    async def get_process(self, process_id: str) -> Process:
        return Process.from_json(await self._call("getprocessmsg", processid=process_id))

    async def get_processes(
        self, colony: str, state: ProcessState | int, *, count: int = 100,
        executor_type: str = "", label: str = "", initiator: str = "",
    ) -> list[Process]:
        reply = await self._call("getprocessesmsg", colonyname=colony, state=int(state), count=count,
                                 executortype=executor_type, label=label, initiator=initiator)
        return [Process.from_json(p) for p in reply or []]

    async def get_logs(
        self, colony: str, process_id: str, *, count: int = MAX_LOG_COUNT, since: int = 0, latest: bool = False,
    ) -> list[LogEntry]:
        reply = await self._call("getlogsmsg", colonyname=colony, processid=process_id, executorname="",
                                 count=min(count, MAX_LOG_COUNT), since=since, latest=latest)
        return [LogEntry.from_json(e) for e in reply or []]

    async def get_all_logs(self, colony: str, process_id: str) -> list[LogEntry]:
        """Every log entry of a process, in order, paging with `since` (server time, ns)."""
        entries: list[LogEntry] = []
        since = 0
        while True:
            page = await self.get_logs(colony, process_id, since=since)
            entries += page
            if len(page) < MAX_LOG_COUNT:
                return entries
            since = page[-1].timestamp

    # --- submitting ---------------------------------------------------------------------------

    async def submit(self, spec: FunctionSpec | Mapping[str, Any]) -> Process:
        body = spec.to_json() if isinstance(spec, FunctionSpec) else dict(spec)
        return Process.from_json(await self._call("submitfuncspecmsg", False, spec=body))

    async def submit_workflow(self, colony: str, specs: Sequence[FunctionSpec | Mapping[str, Any]]) -> ProcessGraph:
        bodies = [s.to_json() if isinstance(s, FunctionSpec) else dict(s) for s in specs]
        reply = await self._call("submitworkflowspecmsg", False, spec={"colonyname": colony, "functionspecs": bodies})
        return ProcessGraph.from_json(reply)

    async def cancel(self, process_id: str) -> None:
        await self._call("cancelprocessmsg", processid=process_id)

    # --- subscriptions ------------------------------------------------------------------------

    def subscribe_process(
        self, colony: str, process_id: str, state: ProcessState | int, *, timeout: int, executor_type: str = "",
    ) -> AsyncIterator[Process]:
        """Events when `process_id` is in `state`; one at once if it already is."""
        return self.connection.subscribe(
            "subscribeprocessmsg",
            {"colonyname": colony, "processid": process_id, "executortype": executor_type, "state": int(state)},
            self.key, timeout=timeout,
        )

    def subscribe_processes(
        self, colony: str, executor_type: str, state: ProcessState | int, *, timeout: int,
    ) -> AsyncIterator[Process]:
        """Events for every process of `executor_type` entering `state` (executors only)."""
        return self.connection.subscribe(
            "subscribeprocessesmsg",
            {"colonyname": colony, "executortype": executor_type, "state": int(state)},
            self.key, timeout=timeout,
        )

"""The few Kubernetes calls the runtime makes, on kubernetes_asyncio, with plain dicts.

Responses are read raw (`_preload_content=False`) and parsed as JSON: the generated model
classes cost far more CPU than the data is worth at thousands of Jobs. Every request goes
through one counter (verb, resource, code), so tests can assert how many calls a process
costs and metrics can export them.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from asyncio import sslproto
from collections import Counter
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.api_client import ApiClient

import colonies_operator

# Sent with every request, so the apiserver's audit log tells the operator's requests from
# other clients' (kopf's own client sends "kopf/<version>").
USER_AGENT = f"colonies-operator/{colonies_operator.__version__}"


# asyncio's TLS transport gives every connection a 256 KiB read buffer (SSLProtocol.max_size,
# Python 3.11+). A log follow stream per running container makes that ~300 KiB of RSS per
# process in flight; 8 KiB reads just as well and cuts it to ~50 KiB.
SSL_READ_BUFFER = 8 * 1024
if getattr(sslproto.SSLProtocol, "max_size", 0) > SSL_READ_BUFFER:
    sslproto.SSLProtocol.max_size = SSL_READ_BUFFER


# The apiserver could not be reached at all (restarting, network): no answer, so no KubeError.
UNREACHABLE: tuple[type[BaseException], ...] = (aiohttp.ClientError, OSError, asyncio.TimeoutError)


class KubeError(Exception):
    """The apiserver refused a request; `status` is the HTTP code, `reason` its Status reason."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        self.status, self.reason, self.message = status, reason, message
        super().__init__(f"HTTP {status} {reason}: {message}")

    @classmethod
    def from_body(cls, status: int, body: bytes) -> KubeError:
        try:
            data = json.loads(body)
            return cls(status, str(data.get("reason") or ""), str(data.get("message") or "")[:1000])
        except ValueError:
            return cls(status, "", body[:500].decode(errors="replace"))


class Conflict(KubeError):
    pass


class NotFound(KubeError):
    pass


class Gone(KubeError):
    """410: the resourceVersion a watch asked for is too old; list again."""


def _proxy_in_env() -> bool:
    return any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy",
                                            "ALL_PROXY", "all_proxy"))


def _paging(limit: int | None, continue_: str | None) -> dict[str, Any]:
    out: dict[str, Any] = {"limit": limit} if limit else {}
    return out | ({"_continue": continue_} if continue_ else {})


def _error(status: int, body: bytes) -> KubeError:
    err = KubeError.from_body(status, body)
    kind = {404: NotFound, 409: Conflict, 410: Gone}.get(status, KubeError)
    return kind(err.status, err.reason, err.message)


_RESOURCE = re.compile(r"/(?:api/v1|apis/[^/]+/[^/]+)(?:/namespaces/[^/]+)?/([a-z]+)(?:/[^/?]+)?(?:/([a-z]+))?")


@dataclass
class RequestCounter:
    """Counts requests by (verb, resource, code); `watch` and `log` streams are their own verbs."""

    counts: Counter[tuple[str, str, int]] = field(default_factory=Counter)

    def record(self, method: str, url: str, status: int) -> None:
        path = url.split("://", 1)[-1]
        path = path[path.find("/"):]
        m = _RESOURCE.search(path)
        resource = (m.group(1) + (f"/{m.group(2)}" if m.group(2) else "")) if m else "other"
        verb = method.lower()
        if "watch=true" in url.lower():
            verb = "watch"
        elif resource.endswith("/log"):
            verb = "log"
        self.counts[(verb, resource, status)] += 1

    def total(self, *, exclude_verbs: tuple[str, ...] = ("watch", "log")) -> int:
        return sum(n for (verb, _, _), n in self.counts.items() if verb not in exclude_verbs)

    def snapshot(self) -> Counter[tuple[str, str, int]]:
        return Counter(self.counts)


class LineSplitter:
    """Bytes in chunks → lines without their newline; a line over `max_line` bytes comes
    out in pieces cut at UTF-8 character boundaries, so memory per stream stays bounded."""

    def __init__(self, max_line: int) -> None:
        self.max_line = max_line
        self._buffer = bytearray()

    def feed(self, chunk: bytes) -> list[bytes]:
        self._buffer += chunk
        lines = []
        while True:
            newline = self._buffer.find(b"\n")
            if 0 <= newline <= self.max_line:
                lines.append(bytes(self._buffer[:newline]))
                del self._buffer[:newline + 1]
            elif len(self._buffer) > self.max_line:
                cut = self.max_line
                while cut > self.max_line - 3 and (self._buffer[cut] & 0xC0) == 0x80:
                    cut -= 1  # do not split a multi-byte character
                lines.append(bytes(self._buffer[:cut]))
                del self._buffer[:cut]
            else:
                return lines

    def finish(self) -> list[bytes]:
        rest, self._buffer = bytes(self._buffer), bytearray()
        return [rest] if rest else []


class KubeApi:
    """Jobs, Pods, logs and Events in the namespaces the operator serves.

    Two connection pools: `api_client` for requests that answer at once (bounded), and
    `stream_client` for watches and log follows, which hold a connection for as long as a
    pod runs (unbounded). One shared bounded pool would be starved by the streams: past a
    few hundred running pods no Job could be created any more.
    """

    REQUEST_POOL = 100  # concurrent short requests (creates, patches, deletes, lists)
    # Log follow streams open at once, operator-wide. Each holds a TLS connection (~50 KiB of
    # memory here, a connection in the apiserver and one to the kubelet). Past this many
    # running containers, the next ones' logs are followed as streams close, and a finished
    # container's log is always read to its end: later, never lost.
    FOLLOW_STREAMS = 1000

    def __init__(self, api_client: ApiClient, stream_client: ApiClient | None = None) -> None:
        self.api_client = api_client
        self.stream_client = stream_client or api_client
        self.batch = client.BatchV1Api(api_client)
        self.core = client.CoreV1Api(api_client)
        self.stream_batch = client.BatchV1Api(self.stream_client)
        self.stream_core = client.CoreV1Api(self.stream_client)
        self.counter = RequestCounter()
        self.follow_slots = asyncio.Semaphore(self.FOLLOW_STREAMS)
        for api in {id(c): c for c in (api_client, self.stream_client)}.values():
            self._instrument(api)

    def _instrument(self, api: ApiClient) -> None:
        api.user_agent = USER_AGENT
        rest = api.rest_client
        original = rest.request
        counter = self.counter

        async def counted(method: str, url: str, *args: Any, **kwargs: Any) -> Any:
            response = await original(method, url, *args, **kwargs)
            counter.record(method, url if not kwargs.get("query_params") else url + "?" + "&".join(
                f"{k}={v}" for k, v in kwargs["query_params"]), getattr(response, "status", 0))
            return response

        rest.request = counted
        session = getattr(rest, "pool_manager", None)
        if session is not None and hasattr(session, "_trust_env") and not _proxy_in_env():
            # kubernetes_asyncio asks aiohttp to trust the environment, which then reads
            # ~/.netrc and the proxy variables in a worker thread on EVERY request (two thread
            # hops each). With no proxy variable set there is nothing to find.
            session._trust_env = False

    @classmethod
    async def connect(cls, kubeconfig: str | None = None) -> KubeApi:
        """In-cluster credentials when running in a pod, else the kubeconfig (KUBECONFIG)."""
        configuration = client.Configuration()
        if kubeconfig is None:
            try:
                config.load_incluster_config(client_configuration=configuration)
            except config.ConfigException:
                await config.load_kube_config(client_configuration=configuration)
        else:
            await config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
        configuration.connection_pool_maxsize = cls.REQUEST_POOL
        requests = ApiClient(configuration)
        configuration.connection_pool_maxsize = 0  # aiohttp: no limit; one connection per stream
        streams = ApiClient(configuration)
        configuration.connection_pool_maxsize = cls.REQUEST_POOL
        return cls(requests, streams)

    async def close(self) -> None:
        await self.api_client.close()
        if self.stream_client is not self.api_client:
            await self.stream_client.close()

    async def _json(self, call: Any) -> dict[str, Any]:
        response = await call
        try:
            body = await response.read()
        finally:
            response.release()
        if not 200 <= response.status < 300:
            raise _error(response.status, body)
        return json.loads(body) if body else {}

    # --- Jobs ------------------------------------------------------------------------------

    async def create_job(self, namespace: str, job: Mapping[str, Any], *, dry_run: bool = False) -> dict[str, Any]:
        """Create a Job; with `dry_run`, only ask whether the apiserver would (nothing is stored)."""
        extra = {"dry_run": "All"} if dry_run else {}
        return await self._json(self.batch.create_namespaced_job(namespace, job, _preload_content=False, **extra))

    async def delete_job(self, namespace: str, name: str, *, propagation: str = "Foreground") -> bool:
        """Delete a Job and (foreground) its pods first; False when it was already gone."""
        body = {"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": propagation}
        try:
            await self._json(self.batch.delete_namespaced_job(name, namespace, body=body, _preload_content=False))
            return True
        except NotFound:
            return False

    async def patch_job(self, namespace: str, name: str, patch: Mapping[str, Any]) -> dict[str, Any]:
        """A JSON merge patch of a Job (annotations, spec.ttlSecondsAfterFinished)."""
        return await self._json(self.batch.patch_namespaced_job(
            name, namespace, dict(patch), _preload_content=False, _content_type="application/merge-patch+json"))

    async def list_jobs(self, namespace: str, selector: str, *, field_selector: str | None = None,
                        limit: int | None = None, continue_: str | None = None) -> dict[str, Any]:
        """Jobs matching the selectors; with `limit`, one page of them (`metadata.continue`
        names the next)."""
        kwargs = _paging(limit, continue_) | ({"field_selector": field_selector} if field_selector else {})
        return await self._json(self.batch.list_namespaced_job(namespace, label_selector=selector,
                                                               _preload_content=False, **kwargs))

    async def list_pods(self, namespace: str, selector: str, *, limit: int | None = None,
                        continue_: str | None = None) -> dict[str, Any]:
        return await self._json(self.core.list_namespaced_pod(namespace, label_selector=selector,
                                                              _preload_content=False, **_paging(limit, continue_)))

    async def list_events(self, namespace: str, field_selector: str) -> dict[str, Any]:
        """Events (core/v1) matching `field_selector`, e.g. a Job's FailedCreate events."""
        return await self._json(self.core.list_namespaced_event(namespace, field_selector=field_selector,
                                                                _preload_content=False))

    # --- streams ---------------------------------------------------------------------------

    async def watch(
        self, kind: str, namespace: str, selector: str, resource_version: str, *, timeout_seconds: int = 300,
    ) -> AsyncIterator[dict[str, Any]]:
        """Raw watch events ({"type", "object"}) of Jobs or Pods until the server ends the stream.

        Raises Gone when `resource_version` is too old: the caller must list again.
        """
        method = self.stream_batch.list_namespaced_job if kind == "Job" else self.stream_core.list_namespaced_pod
        response = await method(
            namespace, label_selector=selector, watch=True, resource_version=resource_version,
            allow_watch_bookmarks=True, timeout_seconds=timeout_seconds, _preload_content=False,
            _request_timeout=aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=timeout_seconds + 30),
        )
        try:
            if not 200 <= response.status < 300:
                raise _error(response.status, await response.read())
            async for line in response.content:
                if not line.strip():
                    continue
                event = json.loads(line)
                if event.get("type") == "ERROR":
                    status = event.get("object", {})
                    raise _error(int(status.get("code") or 500), json.dumps(status).encode())
                yield event
        finally:
            response.release()

    async def pod_log(
        self, namespace: str, pod: str, container: str, *, follow: bool, since_time: str | None = None,
        read_timeout: float = 300, max_line: int = 64 * 1024,
    ) -> AsyncIterator[bytes]:
        """Log lines (with RFC 3339 timestamps, without newline) of one container.

        A line longer than `max_line` bytes comes out in pieces (cut at UTF-8 boundaries);
        only the first piece carries the timestamp. Follow streams may never end by themselves.
        """
        # The generated client lacks `sinceTime`, which exact resumption needs; call the path directly.
        query: list[tuple[str, Any]] = [("container", container), ("follow", str(follow).lower()), ("timestamps", "true")]
        if since_time:
            query.append(("sinceTime", since_time))
        response = await self.stream_client.call_api(
            "/api/v1/namespaces/{namespace}/pods/{name}/log", "GET", {"namespace": namespace, "name": pod}, query,
            {"Accept": "*/*"}, auth_settings=["BearerToken"], _preload_content=False,
            _request_timeout=aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=read_timeout),
        )
        try:
            if not 200 <= response.status < 300:
                raise _error(response.status, await response.read())
            splitter = LineSplitter(max_line)
            async for chunk in response.content.iter_any():
                for line in splitter.feed(chunk):
                    yield line
            for line in splitter.finish():
                yield line
        finally:
            response.release()

    # --- Events ----------------------------------------------------------------------------

    async def post_event(self, namespace: str, event: Mapping[str, Any]) -> None:
        await self._json(self.core.create_namespaced_event(namespace, event, _preload_content=False))

    # --- Secrets and our own resource --------------------------------------------------------

    async def read_secret(self, namespace: str, name: str) -> dict[str, str] | None:
        """A Secret's data, base64-decoded; None when it does not exist."""
        import base64

        try:
            secret = await self._json(self.core.read_namespaced_secret(name, namespace, _preload_content=False))
        except NotFound:
            return None
        return {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}

    async def create_configmap(self, namespace: str, configmap: Mapping[str, Any]) -> dict[str, Any]:
        return await self._json(self.core.create_namespaced_config_map(namespace, configmap, _preload_content=False))

    async def create_secret(self, namespace: str, secret: Mapping[str, Any]) -> dict[str, Any]:
        return await self._json(self.core.create_namespaced_secret(namespace, secret, _preload_content=False))

    async def patch_executor_status(self, namespace: str, name: str, status: Mapping[str, Any]) -> None:
        api = client.CustomObjectsApi(self.api_client)
        await self._json(api.patch_namespaced_custom_object_status(
            "colonyos.io", "v1alpha1", namespace, "colonyexecutors", name, {"status": dict(status)},
            _preload_content=False, _content_type="application/merge-patch+json"))

    # --- the leader election Lease (leadership.py) ---------------------------------------------

    async def read_lease(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return await self._json(client.CoordinationV1Api(self.api_client).read_namespaced_lease(
                name, namespace, _preload_content=False))
        except NotFound:
            return None

    async def create_lease(self, namespace: str, lease: Mapping[str, Any]) -> dict[str, Any]:
        return await self._json(client.CoordinationV1Api(self.api_client).create_namespaced_lease(
            namespace, dict(lease), _preload_content=False))

    async def replace_lease(self, namespace: str, name: str, lease: Mapping[str, Any]) -> dict[str, Any]:
        """A PUT carrying the resourceVersion read: 409 Conflict when the Lease changed since."""
        return await self._json(client.CoordinationV1Api(self.api_client).replace_namespaced_lease(
            name, namespace, dict(lease), _preload_content=False))

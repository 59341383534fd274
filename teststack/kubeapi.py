"""A minimal synchronous Kubernetes REST client (httpx + the admin client certificate).

The stack needs a handful of calls (create nodes and CRDs, watch pods, create kwok Logs) and
must not depend on the client libraries the operator and its tests use, so this is plain REST.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import Iterator
from dataclasses import dataclass

import httpx


class ApiError(RuntimeError):
    def __init__(self, status: int, body: str, what: str):
        super().__init__(f"{what}: HTTP {status}: {body[:500]}")
        self.status = status
        self.body = body


@dataclass(frozen=True)
class KubeAPI:
    url: str  # https://127.0.0.1:<port>
    ca: str
    cert: str
    key: str

    def client(self, timeout: float | None = 30.0) -> httpx.Client:
        ctx = ssl.create_default_context(cafile=self.ca)
        ctx.load_cert_chain(self.cert, self.key)
        return httpx.Client(base_url=self.url, verify=ctx, timeout=timeout, trust_env=False)


def _check(r: httpx.Response, what: str, ok_statuses: tuple[int, ...] = ()) -> dict:
    if r.status_code >= 400 and r.status_code not in ok_statuses:
        raise ApiError(r.status_code, r.text, what)
    try:
        return r.json()
    except ValueError:
        return {}


def get(c: httpx.Client, path: str, **params) -> dict:
    return _check(c.get(path, params=params), f"GET {path}")


def create(c: httpx.Client, path: str, obj: dict, exist_ok: bool = False) -> dict:
    r = c.post(path, json=obj)
    if exist_ok and r.status_code == 409:
        return {}
    return _check(r, f"POST {path}")


def merge_patch(c: httpx.Client, path: str, patch: dict) -> dict:
    r = c.patch(path, content=json.dumps(patch), headers={"Content-Type": "application/merge-patch+json"})
    return _check(r, f"PATCH {path}")


def watch(c: httpx.Client, path: str, resource_version: str, timeout_seconds: int = 300) -> Iterator[dict]:
    """Yield watch events (dicts with type and object) until the server ends the stream."""
    params = {"watch": "1", "resourceVersion": resource_version, "allowWatchBookmarks": "true",
              "timeoutSeconds": str(timeout_seconds)}
    with c.stream("GET", path, params=params, timeout=httpx.Timeout(30.0, read=timeout_seconds + 30)) as r:
        if r.status_code >= 400:
            r.read()
            raise ApiError(r.status_code, r.text, f"WATCH {path}")
        # Split on "\n" only: httpx's iter_lines() splits like str.splitlines(), also on
        # U+0085, U+2028, \x1c..., which JSON may hold unescaped inside a string.
        buffer = b""
        for chunk in r.iter_bytes():
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                if line.strip():
                    yield json.loads(line)

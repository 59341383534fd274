"""A small S3 client: the few calls CFS needs, signed with AWS Signature Version 4.

Path-style addressing (`http://endpoint/bucket/object`), as the Go tools' minio client uses
with a custom endpoint, so it works with SeaweedFS, MinIO, Ceph RGW and AWS alike. Bodies
stream from and to files; an upload's payload hash is the file's SHA-256, which CFS computes
anyway for the catalogue, so every byte is signed. One PUT per object: S3 takes up to 5 GiB
that way.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import os
import re
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import httpx

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
DEFAULT_REGION = "us-east-1"  # what S3 servers assume when a client names none
CHUNK = 1 << 20
MAX_PUT_BYTES = 5 * 2**30


class S3Error(Exception):
    """An S3 call that failed: `code` is S3's error code ("NoSuchKey") or the transport's
    error type; the message says which call, on what, and what came back."""

    def __init__(self, action: str, target: str, code: str, detail: str = "") -> None:
        self.action, self.target, self.code = action, target, code
        super().__init__(f"S3 {action} {target}: {code}" + (f" ({detail})" if detail else ""))


@dataclass(frozen=True)
class S3Config:
    """An S3 endpoint and bucket, named as the Go tools' AWS_S3_* variables name them."""

    endpoint: str  # host[:port]
    bucket: str
    access_key: str = field(repr=False)
    secret_key: str = field(repr=False)
    region: str = ""
    tls: bool = False
    verify: bool | str = True  # TLS: True, False (AWS_S3_SKIPVERIFY), or a CA bundle path

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> S3Config:
        missing = [k for k in ("AWS_S3_ENDPOINT", "AWS_S3_BUCKET", "AWS_S3_ACCESSKEY", "AWS_S3_SECRETKEY")
                   if not env.get(k)]
        if missing:
            raise ValueError(f"S3 is not configured: {', '.join(missing)} not set")
        truthy = {"1", "true", "yes"}
        return cls(endpoint=env["AWS_S3_ENDPOINT"], bucket=env["AWS_S3_BUCKET"], access_key=env["AWS_S3_ACCESSKEY"],
                   secret_key=env["AWS_S3_SECRETKEY"], region=env.get("AWS_S3_REGION", ""),
                   tls=env.get("AWS_S3_TLS", "").lower() in truthy,
                   verify=env.get("AWS_S3_SKIPVERIFY", "").lower() not in truthy)

    @property
    def base_url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.endpoint}"


def _signing_key(secret: str, date: str, region: str) -> bytes:
    key = ("AWS4" + secret).encode()
    for part in (date, region, "s3", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def canonical_path(path: str) -> str:
    """S3's canonical URI: every byte but unreserved characters and "/" percent-encoded, once."""
    return quote(path, safe="/-_.~")


def sign(method: str, host: str, path: str, query: Mapping[str, str], headers: Mapping[str, str],
         payload_sha256: str, access_key: str, secret_key: str, region: str, when: dt.datetime) -> dict[str, str]:
    """The headers that sign one request (Authorization, x-amz-date, x-amz-content-sha256).

    `headers` are extra headers to sign besides host and those two (names any case)."""
    amz_date = when.strftime("%Y%m%dT%H%M%SZ")
    date = amz_date[:8]
    signed = {"host": host, "x-amz-content-sha256": payload_sha256, "x-amz-date": amz_date,
              **{k.lower(): " ".join(str(v).split()) for k, v in headers.items()}}
    names = sorted(signed)
    canonical_query = "&".join(f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in sorted(query.items()))
    canonical = "\n".join([
        method, canonical_path(path), canonical_query,
        "".join(f"{n}:{signed[n]}\n" for n in names), ";".join(names), payload_sha256,
    ])
    scope = f"{date}/{region}/s3/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    signature = hmac.new(_signing_key(secret_key, date, region), to_sign.encode(), hashlib.sha256).hexdigest()
    return {
        "x-amz-date": amz_date, "x-amz-content-sha256": payload_sha256,
        "authorization": f"AWS4-HMAC-SHA256 Credential={access_key}/{scope}, SignedHeaders={';'.join(names)}, "
                         f"Signature={signature}",
    }


_CODE = re.compile(rb"<Code>([^<]*)</Code>")
_MESSAGE = re.compile(rb"<Message>([^<]*)</Message>")


def _error(action: str, target: str, response: httpx.Response, body: bytes) -> S3Error:
    code = _CODE.search(body)
    message = _MESSAGE.search(body)
    return S3Error(action, target, code.group(1).decode(errors="replace") if code else f"HTTP {response.status_code}",
                   message.group(1).decode(errors="replace")[:200] if message else "")


async def _file_chunks(path: Path) -> AsyncIterator[bytes]:
    with os.fdopen(os.open(path, os.O_RDONLY | os.O_NOFOLLOW), "rb") as f:  # never through a link
        while chunk := f.read(CHUNK):
            yield chunk


class S3Client:
    def __init__(self, config: S3Config, *, timeout: float = 60.0, transport: httpx.AsyncBaseTransport | None = None):
        self.config = config
        self.region = config.region or DEFAULT_REGION
        self._http = httpx.AsyncClient(base_url=config.base_url, verify=config.verify if config.tls else True,
                                       timeout=httpx.Timeout(timeout, connect=10.0), transport=transport)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> S3Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def _path(self, key: str = "") -> str:
        return f"/{self.config.bucket}" + (f"/{key}" if key else "/")

    def _headers(self, method: str, path: str, payload_sha256: str = EMPTY_SHA256,
                 extra: Mapping[str, str] | None = None) -> dict[str, str]:
        host = httpx.URL(self.config.base_url).netloc.decode()
        return {**(extra or {}), **sign(method, host, path, {}, extra or {}, payload_sha256, self.config.access_key,
                                        self.config.secret_key, self.region, dt.datetime.now(dt.timezone.utc))}

    async def _send(self, action: str, target: str, method: str, path: str, **kwargs) -> httpx.Response:
        try:
            return await self._http.request(method, canonical_path(path), **kwargs)
        except httpx.TransportError as exc:
            raise S3Error(action, target, type(exc).__name__, f"{self.config.base_url}: {exc}") from exc

    async def bucket_exists(self) -> bool:
        path = self._path()
        response = await self._send("HEAD bucket", self.config.bucket, "HEAD", path, headers=self._headers("HEAD", path))
        if response.status_code == 404:
            return False
        if response.status_code >= 300:
            raise _error("HEAD bucket", self.config.bucket, response, b"")
        return True

    async def create_bucket(self) -> None:
        path = self._path()
        response = await self._send("create bucket", self.config.bucket, "PUT", path,
                                     headers=self._headers("PUT", path))
        if response.status_code >= 300:
            raise _error("create bucket", self.config.bucket, response, response.content)

    async def put_file(self, key: str, source: Path, size: int, sha256: str) -> None:
        """Upload `source` (`size` bytes whose SHA-256 is `sha256`) as object `key`."""
        if size > MAX_PUT_BYTES:
            raise S3Error("PUT", key, "EntityTooLarge", f"{size} bytes is over the 5 GiB of one PUT")
        path = self._path(key)
        extra = {"content-length": str(size), "content-type": "application/octet-stream"}
        response = await self._send("PUT", key, "PUT", path, headers=self._headers("PUT", path, sha256, extra),
                                    content=_file_chunks(source))
        if response.status_code >= 300:
            raise _error("PUT", key, response, response.content)

    async def get_file(self, key: str, dest: Path) -> int:
        """Download object `key` into `dest` (overwritten); the number of bytes written."""
        path = self._path(key)
        written = 0
        try:
            async with self._http.stream("GET", canonical_path(path), headers=self._headers("GET", path)) as response:
                if response.status_code >= 300:
                    raise _error("GET", key, response, await response.aread())
                with dest.open("wb") as f:
                    async for chunk in response.aiter_bytes(CHUNK):
                        f.write(chunk)
                        written += len(chunk)
        except httpx.TransportError as exc:
            raise S3Error("GET", key, type(exc).__name__, f"{self.config.base_url}: {exc}") from exc
        return written

    async def delete(self, key: str) -> None:
        path = self._path(key)
        response = await self._send("DELETE", key, "DELETE", path, headers=self._headers("DELETE", path))
        if response.status_code >= 300 and response.status_code != 404:
            raise _error("DELETE", key, response, response.content)

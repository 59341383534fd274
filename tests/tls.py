"""TLS in front of a plain server, for tests: a private CA with a server certificate for
127.0.0.1 and localhost (openssl from Debian, as teststack's own PKI), and a TLS-terminating
TCP proxy on a free loopback port that forwards every connection's bytes to the target.

The Colonies server v1.9.12 speaks plain HTTP only (TLS is terminated in front of it), so
this is how a test puts https:// and wss:// between the operator and the stack's server.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class ServerPki:
    ca_pem: str  # the CA's certificate: what a client trusts
    cert: Path   # the server's certificate, signed by the CA
    key: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert, self.key)
        return context


def _openssl(*args: str) -> None:
    result = subprocess.run(["openssl", *args], capture_output=True, text=True, timeout=30)
    if result.returncode != 0:
        raise RuntimeError(f"openssl {args[0]} failed: {result.stderr}")


def make_server_pki(directory: Path, name: str = "colonies-test") -> ServerPki:
    """A new CA (EC P-256: fast to make) and a certificate for 127.0.0.1 and localhost signed by it."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca_crt, key, csr, crt, ext = (directory / f"{name}-{n}" for n in
                                          ("ca.key", "ca.crt", "server.key", "server.csr", "server.crt", "ext"))
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2",
             "-subj", f"/CN={name}-ca", "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", "-keyout", str(ca_key), "-out", str(ca_crt))
    _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", f"/CN={name}",
             "-keyout", str(key), "-out", str(csr))
    ext.write_text("basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n"
                   "subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca_crt), "-CAkey", str(ca_key), "-CAcreateserial",
             "-days", "2", "-sha256", "-extfile", str(ext), "-out", str(crt))
    return ServerPki(ca_crt.read_text(), crt, key)


@dataclass
class TlsProxy:
    port: int
    # The first line each connection carried each way, decrypted, e.g. "GET /pubsub HTTP/1.1"
    # then "HTTP/1.1 101 Switching Protocols": what went through a verified TLS session.
    requests: list[str] = field(default_factory=list)
    responses: list[str] = field(default_factory=list)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, first_lines: list[str]) -> None:
    try:
        if data := await reader.read(65536):
            first_lines.append(data.split(b"\r\n", 1)[0].decode(errors="replace"))
            writer.write(data)
            await writer.drain()
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, ssl.SSLError):
        pass
    finally:
        writer.close()


@contextlib.asynccontextmanager
async def tls_proxy(pki: ServerPki, target_host: str, target_port: int) -> AsyncIterator[TlsProxy]:
    """Serve TLS on 127.0.0.1:<free port> in this event loop, forwarding to the target in
    plain TCP; on exit, stop listening and close every connection it holds."""
    connections: set[asyncio.Task[None]] = set()

    async def forward(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        connections.add(task)
        try:
            server_reader, server_writer = await asyncio.open_connection(target_host, target_port)
        except OSError:
            client_writer.close()
            connections.discard(task)
            return
        try:
            await asyncio.gather(_pipe(client_reader, server_writer, proxy.requests),
                                 _pipe(server_reader, client_writer, proxy.responses))
        finally:
            connections.discard(task)

    server = await asyncio.start_server(forward, "127.0.0.1", 0, ssl=pki.server_context())
    proxy = TlsProxy(server.sockets[0].getsockname()[1])
    try:
        yield proxy
    finally:
        server.close()
        for task in list(connections):
            task.cancel()
        await asyncio.gather(*connections, return_exceptions=True)
        await server.wait_closed()

"""A Colonies server behind TLS with a private CA, on the real stack. The v1.9.12 server
speaks plain HTTP only and production servers sit behind TLS termination: here a
TLS-terminating proxy (tests/tls.py), started by each test in its own event loop on a free
loopback port and stopped with it, stands in front of the stack's Colonies server. Its
certificate (for 127.0.0.1) is signed by a CA made here, which no trust store knows."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from kubernetes_asyncio import client

from colonies_operator.colonies.models import ProcessState
from tests.fixtures.operator import Executor, start_executor
from tests.helpers import wait_for
from tests.tls import TlsProxy, tls_proxy

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
CA_SECRET = "colonies-ca"


@pytest_asyncio.fixture
async def proxy(stack, pki) -> AsyncIterator[TlsProxy]:
    async with tls_proxy(pki, stack.colonies.host, stack.colonies.port) as running:
        yield running


def behind(proxy: TlsProxy, **server: Any) -> dict[str, Any]:
    return {"host": "127.0.0.1", "port": proxy.port, "tls": True, **server}


async def create_ca_secret(api, namespace: str, pem: str) -> None:
    secret = client.V1Secret(metadata=client.V1ObjectMeta(name=CA_SECRET), string_data={"ca.crt": pem})
    await client.CoreV1Api(api).create_namespaced_secret(namespace, secret)


async def not_ready(ex: Executor) -> dict[str, str]:
    async def condition() -> dict[str, str] | None:
        cond = await ex.condition("Ready")
        return cond if cond and cond["status"] == "False" else None
    return await wait_for(condition, 60, f"{ex.name} to be Ready=False")


async def test_an_executor_with_a_private_ca_waits_for_its_ca_secret_then_runs_hello_world_over_https_and_wss(
        api, colonies, namespace, stack, operator, pki, proxy):
    ex = await start_executor(api, colonies, namespace, stack, wait_ready=False,
                              server=behind(proxy, caSecretRef={"name": CA_SECRET}))
    cond = await not_ready(ex)
    assert cond["reason"] == "CASecretMissing" and f"{namespace}/{CA_SECRET} does not exist" in cond["message"]

    async def warning():
        return [e for e in await ex.events() if e.type == "Warning" and e.reason == "CASecretMissing"]
    await wait_for(warning, 30, "a Warning Event about the missing CA Secret")

    await create_ca_secret(api, namespace, pki.ca_pem)

    async def ready():
        cond = await ex.condition("Ready")
        return cond and cond["status"] == "True"
    await wait_for(ready, 60, "Ready=True once the CA Secret exists")
    process = await ex.submit()
    done = await ex.final(process.processid)
    assert done.state is ProcessState.SUCCESS, done.errors
    assert await ex.log_lines(process.processid) == ["hello"]
    # Registration, assign and close went through the proxy's verified TLS, and so did the
    # /pubsub subscriptions the operator keeps open for fencing.
    assert any(line.startswith("POST /api ") for line in proxy.requests), proxy.requests
    assert any(line.startswith("GET /pubsub ") for line in proxy.requests), proxy.requests
    assert "HTTP/1.1 101 Switching Protocols" in proxy.responses, proxy.responses


@pytest.mark.parametrize("ca", ["no CA", "another CA"])
async def test_without_the_servers_ca_an_executor_is_not_ready_and_says_the_certificate_was_not_verified(
        api, colonies, namespace, stack, operator, other_pki, proxy, ca):
    server = behind(proxy)
    if ca == "another CA":
        await create_ca_secret(api, namespace, other_pki.ca_pem)
        server["caSecretRef"] = {"name": CA_SECRET}
    ex = await start_executor(api, colonies, namespace, stack, wait_ready=False, server=server)
    cond = await not_ready(ex)
    assert cond["reason"] == "ColoniesUnreachable", cond
    assert "certificate verify failed" in cond["message"], cond["message"]
    assert "the server's TLS certificate was not verified" in cond["message"], cond["message"]


async def test_colonies_operator_check_verifies_the_default_server_against_ssl_cert_file(stack, pki, proxy, tmp_path):
    ca_file = tmp_path / "ca.crt"
    ca_file.write_text(pki.ca_pem)
    trusted = {k: v for k, v in os.environ.items() if k not in ("SSL_CERT_FILE", "SSL_CERT_DIR")}
    env = trusted | stack.env() | {"PYTHONPATH": str(ROOT / "operator"), "COLONIES_SERVER_HOST": "127.0.0.1",
                                      "COLONIES_SERVER_PORT": str(proxy.port), "COLONIES_TLS": "true"}

    async def check(**extra: str) -> str:
        # A subprocess that does not block this loop: the proxy serves from it.
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "colonies_operator.cli", "check", "--namespace", "default",
            env=env | extra, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        out, _ = await asyncio.wait_for(proc.communicate(), 60)
        return next(line for line in out.decode().splitlines() if line.split()[1:2] == ["colonies:"])

    assert (await check(SSL_CERT_FILE=str(ca_file))).startswith(
        f"OK    colonies: the Colonies server https://127.0.0.1:{proxy.port} answers")
    refused = await check()
    assert refused.startswith("FAIL  colonies:") and "certificate was not verified" in refused, refused

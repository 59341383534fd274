"""The Colonies client verifies an https:// and wss:// server against the CA bundle a
ColonyExecutor names (spec.server.caSecretRef), held in memory, for the HTTP API and for the
/pubsub WebSocket alike; without that CA the same server is refused as unverified.

The server is a plain aiohttp app behind tests.tls's TLS-terminating proxy on loopback, as
the real Colonies server sits behind TLS termination."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from aiohttp import web

from colonies_operator.colonies import crypto, errors
from colonies_operator.colonies.client import Connection, RetryPolicy, ServerAddress
from tests.tls import tls_proxy

KEY = crypto.Key("d6eb959e9aec2e6fdc44b5862b269e987b8a4d6f2baca542d8acaa97ee5e74f6")
ONCE = RetryPolicy(attempts=1)


def _reply(payload: object) -> str:
    return json.dumps({"payloadtype": "subscribeprocessmsg", "error": False,
                       "payload": base64.b64encode(json.dumps(payload).encode()).decode()})


@pytest_asyncio.fixture
async def https_port(pki) -> AsyncIterator[int]:
    """A plain server with /health, /api (getserverinfomsg) and /pubsub (one event), behind TLS."""
    async def health(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def api(_: web.Request) -> web.Response:
        return web.Response(text=_reply({"buildversion": "test"}))

    async def pubsub(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.receive()  # the signed subscription
        await ws.send_str(_reply({"processid": "p1", "state": 2}))
        await ws.close()
        return ws

    app = web.Application()
    app.add_routes([web.get("/health", health), web.post("/api", api), web.get("/pubsub", pubsub)])
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    plain_port = runner.addresses[0][1]
    try:
        async with tls_proxy(pki, "127.0.0.1", plain_port) as proxy:
            yield proxy.port
    finally:
        await runner.cleanup()


async def events(connection: Connection) -> list[str]:
    stream = connection.subscribe("subscribeprocessmsg", {"processid": "p1", "state": 2}, KEY, timeout=5)
    return [process.processid async for process in stream]


def test_a_ca_bundle_that_is_not_pem_is_refused_without_repeating_it():
    with pytest.raises(ValueError) as refused:
        ServerAddress("colonies.example", 443, True).with_ca("colonyPrvKey=abc123")
    assert "abc123" not in str(refused.value)


def test_an_address_with_a_ca_is_another_address_so_it_gets_its_own_connection_pool(pki, other_pki):
    plain = ServerAddress("colonies.example", 443, True)
    assert plain.with_ca(pki.ca_pem) == plain.with_ca(pki.ca_pem)
    assert plain.with_ca(pki.ca_pem) != plain and plain.with_ca(pki.ca_pem) != plain.with_ca(other_pki.ca_pem)


async def test_https_and_wss_are_verified_against_the_named_ca_bundle(https_port, pki):
    address = ServerAddress("127.0.0.1", https_port, tls=True).with_ca(pki.ca_pem)
    async with Connection(address, retry=ONCE, timeout=5) as connection:
        assert await connection.health()
        assert (await connection.server_info())["buildversion"] == "test"
        assert await events(connection) == ["p1"]


@pytest.mark.parametrize("ca", ["none", "another CA"])
async def test_without_the_servers_ca_https_and_wss_are_refused_as_unverified(https_port, other_pki, ca):
    address = ServerAddress("127.0.0.1", https_port, tls=True)
    if ca == "another CA":
        address = address.with_ca(other_pki.ca_pem)
    async with Connection(address, retry=ONCE, timeout=5) as connection:
        assert not await connection.health()
        with pytest.raises(errors.ColoniesUnreachable, match="certificate verify failed") as https:
            await connection.server_info()
        with pytest.raises(errors.ColoniesUnreachable, match="certificate verify failed") as wss:
            await events(connection)
    for refused in (https, wss):
        assert "the server's TLS certificate was not verified" in str(refused.value)
        assert "spec.server.caSecretRef" in str(refused.value)

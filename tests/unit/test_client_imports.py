"""A request to Colonies never searches the disk for a module.

httpcore asks `import sniffio` at every pool operation (four per request) and falls back to
asyncio when it is missing. anyio 4 no longer brings sniffio along, and a failed import is
not remembered: each one stats every directory on sys.path again. That was ~8% of the
operator's CPU at 20 submissions/s (bench/profiles/p1-steps-first-miss.txt, before the fix);
sniffio is a dependency of ours for that reason alone."""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator

import pytest_asyncio
from aiohttp import web

from colonies_operator.colonies.client import Connection, RetryPolicy, ServerAddress


class ImportSearches:
    """A meta path finder first in line: it finds nothing and counts every module searched for."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def find_spec(self, name, path=None, target=None):  # noqa: ANN001 (importlib's protocol)
        self.names.append(name)
        return None


@pytest_asyncio.fixture
async def port() -> AsyncIterator[int]:
    async def api(_: web.Request) -> web.Response:
        return web.Response(text=json.dumps({"payloadtype": "getserverinfomsg", "error": False,
                                             "payload": "eyJidWlsZHZlcnNpb24iOiAidGVzdCJ9"}))

    app = web.Application()
    app.add_routes([web.post("/api", api)])
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield runner.addresses[0][1]
    finally:
        await runner.cleanup()


async def test_requests_to_colonies_import_nothing(port):
    async with Connection(ServerAddress("127.0.0.1", port), retry=RetryPolicy(attempts=1), timeout=5) as connection:
        assert (await connection.server_info())["buildversion"] == "test"  # everything imported once
        searches = ImportSearches()
        sys.meta_path.insert(0, searches)
        try:
            for _ in range(20):
                await connection.server_info()
        finally:
            sys.meta_path.remove(searches)
    assert searches.names == []

"""The real `ColoniesClient`, wired to a `FakeColoniesServer` instead of HTTP.

`FakeConnection` stands where `client.Connection` stands: `call()` sends the JSON message
the real connection would put in the envelope (Python's `json.dumps`, which writes NaN as
the real one does and the Go server then refuses) and returns the server's decoded reply,
or raises the same error types. Subscriptions yield `models.Process` like the real
WebSocket reader. The identity of a call is the id of the key that signs it, as the real
server recovers it from the signature. No retries: the fake raises at once what the real
connection would raise after its retries.

`FakeColoniesClient` is `ColoniesClient` itself (every method, signature and parser is the
production one) plus the calls the runtime is getting next.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any

from colonies_operator.colonies import errors
from colonies_operator.colonies.client import _OUTCOMES, ColoniesClient, Connection, RetryPolicy, ServerAddress
from colonies_operator.colonies.crypto import Key
from colonies_operator.colonies.models import Process

if TYPE_CHECKING:
    from tests.fakes.colonies import FakeColoniesServer

ADDRESS = ServerAddress("colonies.fake", 50080)


class FakeConnection(Connection):
    """A `Connection` to a fake server: same `call`/`subscribe`/`calls`/`requests` surface.
    Connection.__init__ is not called: there is no HTTP pool to open or close."""

    def __init__(self, server: FakeColoniesServer, *, timeout: float = 30.0) -> None:
        self.server = server
        self.address = ADDRESS
        self.retry = RetryPolicy(attempts=1)
        self.timeout = timeout  # the real client adds it to an assign's read timeout
        self.requests = 0
        self.calls: Counter[tuple[str, str]] = Counter()  # (msgtype, outcome), as Connection.calls
        self.closed = False

    def client(self, key: Key | str) -> FakeColoniesClient:
        return FakeColoniesClient(self, key if isinstance(key, Key) else Key(key))

    async def aclose(self) -> None:
        self.closed = True

    async def __aenter__(self) -> FakeConnection:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def health(self) -> bool:
        return True

    async def call(
        self, msgtype: str, fields: Mapping[str, Any], key: Key, *,
        idempotent: bool = True, read_timeout: float | None = None, retry: RetryPolicy | None = None,
    ) -> Any:
        self.requests += 1
        try:
            result = await self.server.rpc(msgtype, json.dumps({"msgtype": msgtype, **fields}), key.id)
        except errors.ColoniesError as exc:
            self.calls[(msgtype, _OUTCOMES.get(type(exc), "error"))] += 1
            raise
        self.calls[(msgtype, "ok")] += 1
        return result

    async def server_info(self) -> dict[str, Any]:
        result = await self.call("getserverinfomsg", {}, Key("01" * 32))
        return result if isinstance(result, dict) else {}

    async def subscribe(
        self, msgtype: str, fields: Mapping[str, Any], key: Key, *, timeout: int,
    ) -> AsyncIterator[Process]:
        self.requests += 1
        message = json.loads(json.dumps({"msgtype": msgtype, **fields, "timeout": timeout}))
        async for payload in self.server.subscribe(msgtype, message, key.id):
            yield Process.from_json(json.loads(json.dumps(payload)))


class FakeColoniesClient(ColoniesClient):
    """The production client over a `FakeConnection`, plus the calls the runtime gets next."""

    def __init__(self, connection: FakeConnection, key: Key) -> None:
        super().__init__(connection, key)

    async def update_executor(self, colony: str, name: str, capabilities: Mapping[str, Any]) -> None:
        """Replace the executor's capabilities ({"hardware": [...], "software": [...]}); itself only."""
        await self._call("updateexecutormsg", colonyname=colony, executorname=name, capabilities=dict(capabilities))

    async def pause_assignments(self, colony: str) -> None:
        """Colony owner: assigns answer 408 (long poll) / 503 (one try) until resumed."""
        await self._call("pauseassignmentsmsg", colonyname=colony)

    async def resume_assignments(self, colony: str) -> None:
        await self._call("resumeassignmentsmsg", colonyname=colony)

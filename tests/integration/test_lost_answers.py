"""Log batches whose answer never came from the real Colonies server.

`addlogmsg` is not idempotent: a batch whose answer never came must be read back from
Colonies, not sent again blindly, and sent again only if Colonies does not hold it. The
executor here reaches Colonies through a relay (tests/fixtures/relay.py) that drops the
answer to the first `addlogmsg` (the server stored it), or that request itself (it did not).
"""

from __future__ import annotations

import pytest
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from colonies_operator.colonies.models import ProcessState
from tests.fixtures.operator import GROUP, PLURAL, VERSION, Executor, start_executor
from tests.fixtures.relay import LosingRelay
from tests.helpers import wait_for

pytestmark = pytest.mark.integration


async def remove(ex: Executor) -> None:
    """Delete the ColonyExecutor and wait for its finalizer, while Colonies is still reachable."""
    objects = client.CustomObjectsApi(ex.api)
    await objects.delete_namespaced_custom_object(GROUP, VERSION, ex.namespace, PLURAL, ex.name)

    async def gone() -> bool:
        try:
            await objects.get_namespaced_custom_object(GROUP, VERSION, ex.namespace, PLURAL, ex.name)
        except ApiException as e:
            return e.status == 404
        return False

    await wait_for(gone, 60, f"ColonyExecutor {ex.name} to be removed")


LINES = [f"line {i}" for i in range(1, 101)]


async def run_through(relay: LosingRelay, api, colonies, namespace, stack) -> list[str]:
    """One process of 100 log lines on an executor that reaches Colonies through `relay`:
    it succeeds; the lines Colonies holds of it."""
    ex = await start_executor(api, colonies, namespace, stack, server={"host": "127.0.0.1", "port": relay.port})
    try:
        process = await ex.submit(env={"KWOK_LOG_LINES": str(len(LINES))})
        done = await ex.final(process.processid, timeout=90)
        assert done.state is ProcessState.SUCCESS, done.errors
        return await ex.log_lines(process.processid)
    finally:
        await remove(ex)


async def test_a_log_batch_whose_answer_was_lost_after_colonies_stored_it_is_there_once(
        api, colonies, namespace, stack, operator):
    async with LosingRelay(stack.colonies.host, stack.colonies.port) as relay:
        relay.lose("addlogmsg")
        lines = await run_through(relay, api, colonies, namespace, stack)
    assert relay.lost == ["addlogmsg"], "no addlogmsg answer was lost: the test proved nothing"
    assert lines == LINES


async def test_a_log_batch_that_never_reached_colonies_is_read_back_and_sent_again(
        api, colonies, namespace, stack, operator):
    async with LosingRelay(stack.colonies.host, stack.colonies.port) as relay:
        relay.drop("addlogmsg")
        lines = await run_through(relay, api, colonies, namespace, stack)
    assert relay.dropped == ["addlogmsg"], "no addlogmsg was dropped: the test proved nothing"
    assert lines == LINES
    # the log request after the drop asked Colonies what it holds; the next one sent the batch
    assert [k for k in relay.kinds if k in ("addlogmsg", "getlogsmsg")][:2] == ["getlogsmsg", "addlogmsg"], relay.kinds

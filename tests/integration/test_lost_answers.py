"""Answers lost on the way back from the real Colonies server, which did act on the request.

`addlogmsg` is not idempotent: a batch whose answer never came must be read back from
Colonies, not sent again blindly. The executor here reaches Colonies through a relay
(tests/fixtures/relay.py) that drops the answer to the first `addlogmsg`.
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


async def test_a_log_batch_whose_answer_was_lost_after_colonies_stored_it_is_there_once(
        api, colonies, namespace, stack, operator):
    lines = 100
    async with LosingRelay(stack.colonies.host, stack.colonies.port) as relay:
        ex = await start_executor(api, colonies, namespace, stack, server={"host": "127.0.0.1", "port": relay.port})
        try:
            relay.lose("addlogmsg")
            process = await ex.submit(env={"KWOK_LOG_LINES": str(lines)})
            done = await ex.final(process.processid, timeout=90)
            assert relay.lost == ["addlogmsg"], "no addlogmsg answer was lost: the test proved nothing"
            assert done.state is ProcessState.SUCCESS, done.errors
            assert await ex.log_lines(process.processid) == [f"line {i}" for i in range(1, lines + 1)]
        finally:
            await remove(ex)

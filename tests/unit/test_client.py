"""The client's envelope, error mapping and retry rules, against an in-memory transport."""

import base64
import json
import socket

import httpx
import pytest

from colonies_operator.colonies import crypto, errors
from colonies_operator.colonies.client import Connection, RetryPolicy, ServerAddress, envelope
from colonies_operator.colonies.models import ProcessState

KEY = crypto.Key("d6eb959e9aec2e6fdc44b5862b269e987b8a4d6f2baca542d8acaa97ee5e74f6")
FAST = RetryPolicy(attempts=4, first_delay=0.001, max_delay=0.002, deadline=5)


def reply(payload, status=200, msgtype="x"):
    body = {"payloadtype": msgtype if status < 400 else "error",
            "payload": base64.b64encode(json.dumps(payload).encode()).decode(), "error": status >= 400}
    return httpx.Response(status, text=json.dumps(body))


def decoded(request: httpx.Request) -> dict:
    env = json.loads(request.content)
    message = json.loads(base64.b64decode(env["payload"]))
    assert crypto.recover_id(env["payload"], env["signature"]) == KEY.id
    assert env["payloadtype"] == message["msgtype"]
    return message


def connection(handler, retry=FAST) -> Connection:
    return Connection(ServerAddress("colonies.test", 80), retry=retry, transport=httpx.MockTransport(handler))


@pytest.mark.parametrize("number", [float("inf"), float("-inf"), float("nan")])
def test_a_non_finite_number_never_reaches_the_wire(number):
    with pytest.raises(ValueError, match="Out of range float values are not JSON compliant"):
        envelope("closesuccessfulmsg", {"processid": "p", "out": [1, {"loss": number}]}, KEY)


def test_envelope_signs_the_base64_payload_and_repeats_the_msgtype():
    env = json.loads(envelope("getprocessmsg", {"processid": "p"}, KEY))
    assert json.loads(base64.b64decode(env["payload"])) == {"msgtype": "getprocessmsg", "processid": "p"}
    assert crypto.recover_id(env["payload"], env["signature"]) == KEY.id


async def test_assign_sends_capacity_and_returns_the_process():
    seen = []

    def handler(request):
        seen.append(decoded(request))
        return reply({"processid": "p1", "state": 1, "spec": {"funcname": "execute", "conditions": {"cpu": "500m", "mem": "1024Mi"}}})

    async with connection(handler) as conn:
        process = await conn.client(KEY).assign("dev", 10, available_cpu="2000m", available_mem="4096Mi")
    assert seen == [{"msgtype": "assignprocessmsg", "colonyname": "dev", "timeout": 10,
                     "availablecpu": "2000m", "availablemem": "4096Mi"}]
    assert process.processid == "p1" and process.state is ProcessState.RUNNING
    assert process.spec.conditions.cpu_millis == 500 and process.spec.conditions.mem_bytes == 1024 * 1024**2


async def test_assign_returns_none_when_nothing_is_available():
    async with connection(lambda r: reply({"status": 404, "message": "No process available for assignment"}, 404)) as conn:
        assert await conn.client(KEY).assign("dev", -1) is None


async def test_assign_refuses_timeout_zero_before_sending():
    async with connection(lambda r: pytest.fail("must not send")) as conn:
        with pytest.raises(ValueError, match="timeout"):
            await conn.client(KEY).assign("dev", 0)


@pytest.mark.parametrize("status, kind", [(400, errors.BadRequest), (403, errors.Forbidden), (404, errors.NotFound)])
async def test_4xx_answers_become_typed_rejections_with_the_server_message_and_are_not_retried(status, kind):
    calls = []

    def handler(request):
        calls.append(1)
        return reply({"status": status, "message": "Failed to add log, process is not running"}, status)

    async with connection(handler) as conn:
        with pytest.raises(kind, match="process is not running") as info:
            await conn.client(KEY).add_log("p", "line")
    assert info.value.status == status and len(calls) == 1


async def test_5xx_answers_are_retried_then_raised_as_server_errors():
    calls = []

    def handler(request):
        calls.append(1)
        return reply({"status": 500, "message": "db down"}, 500)

    async with connection(handler) as conn:
        with pytest.raises(errors.ColoniesServerError, match="db down"):
            await conn.client(KEY).get_process("p")
    assert len(calls) == FAST.attempts


async def test_a_5xx_followed_by_success_succeeds():
    answers = iter([reply({"status": 503, "message": "busy"}, 503), reply({})])
    async with connection(lambda r: next(answers)) as conn:
        await conn.client(KEY).close_successful("p", ["done"])


async def test_a_log_line_is_not_resent_when_the_answer_was_lost():
    calls = []

    def handler(request):
        calls.append(1)
        raise httpx.ReadError("connection reset after sending", request=request)

    async with connection(handler) as conn:
        with pytest.raises(errors.ColoniesUnreachable):
            await conn.client(KEY).add_log("p", "line")
    assert len(calls) == 1  # a retry could store the line twice


async def test_an_idempotent_call_is_retried_when_the_answer_was_lost():
    calls = []

    def handler(request):
        calls.append(1)
        if len(calls) < 3:
            raise httpx.ReadError("reset", request=request)
        return reply({})

    async with connection(handler) as conn:
        await conn.client(KEY).close_failed("p", ["ExitCode(3)"])
    assert len(calls) == 3


async def test_an_unreachable_server_gives_the_typed_error_after_bounded_retries():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    policy = RetryPolicy(attempts=3, first_delay=0.01, max_delay=0.02, deadline=5)
    async with Connection(ServerAddress("127.0.0.1", port), retry=policy) as conn:
        with pytest.raises(errors.ColoniesUnreachable, match="unreachable after 3 attempt") as info:
            await conn.client(KEY).get_process("p")
    assert info.value.attempts == 3 and conn.requests == 3


async def test_submit_and_close_send_the_fields_the_server_expects():
    seen = []

    def handler(request):
        seen.append(decoded(request))
        return reply({"processid": "p", "state": 0, "spec": seen[-1].get("spec", {})} if "spec" in seen[-1] else {})

    async with connection(handler) as conn:
        client = conn.client(KEY)
        await client.submit({"funcname": "execute", "conditions": {"colonyname": "dev"}, "maxexectime": -1})
        await client.close_successful("p", [{"answer": 42}])
        await client.close_failed("p", ["ExitCode(3)"])
    assert seen[0]["spec"]["funcname"] == "execute"
    assert seen[1] == {"msgtype": "closesuccessfulmsg", "processid": "p", "out": [{"answer": 42}]}
    assert seen[2] == {"msgtype": "closefailedmsg", "processid": "p", "errors": ["ExitCode(3)"]}


async def test_the_servers_500_is_nil_for_an_unknown_object_is_not_found_and_not_retried():
    calls = []

    def handler(request):
        calls.append(1)
        return reply({"status": 500, "message": "Failed to get executor, executor is nil"}, 500)

    async with connection(handler) as conn:
        with pytest.raises(errors.NotFound, match="executor is nil"):
            await conn.client(KEY).get_executor("dev", "nobody")
    assert len(calls) == 1


@pytest.mark.parametrize(("failure", "maybe_delivered"), [
    (httpx.ReadTimeout, True), (httpx.ReadError, True), (httpx.RemoteProtocolError, True),
    (httpx.ConnectError, False), (httpx.ConnectTimeout, False),
])
async def test_an_unanswered_log_batch_says_whether_it_may_have_reached_the_server(failure, maybe_delivered):
    """addlogmsg is not retried blindly: once the request went out, the shipper reads the log
    back before sending again (runtime/logs.py)."""
    def handler(request):
        raise failure("no answer", request=request)

    async with connection(handler, retry=RetryPolicy(attempts=1)) as conn:
        with pytest.raises(errors.ColoniesUnreachable) as info:
            await conn.client(KEY).add_log("p", "a\n")
    assert info.value.maybe_delivered is maybe_delivered

"""Workflow input and file output on the real node: a three-step workflow submitted with the
Go `colonies` CLI passes JSON from each parent's /colonies/out.json to its child's
/colonies/in.json, a 512 KiB output arrives whole, an output over the bound fails with both
sizes named, and without out.json the termination message still counts."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess

import pytest
import pytest_asyncio
from colonies_operator.colonies.models import ProcessState

from tests.fixtures.operator import Executor, operator_image, real_node_template, start_executor  # noqa: F401
from tests.helpers import wait_for
from teststack import colonies_server, versions

pytestmark = pytest.mark.integration

TIMEOUT = 180


@pytest_asyncio.fixture
async def ex(api, colonies, namespace, stack, operator, operator_image) -> Executor:
    return await start_executor(api, colonies, namespace, stack, jobTemplate=real_node_template(stack),
                                helperImage=operator_image.name, output={"file": True})


def shell(script: str) -> dict:
    return {"docker-image": "busybox:1.36", "cmd": script}


def step(ex: Executor, name: str, script: str, after: list[str]) -> dict:
    body = ex.spec(kwargs=shell(script), nodename=name)
    body["conditions"]["dependencies"] = after
    return body


async def test_a_workflow_submitted_with_the_go_cli_passes_json_from_out_json_to_in_json(ex: Executor, stack, tmp_path):
    steps = [
        step(ex, "produce", "echo '[1, 2]' > /colonies/out.json", []),
        step(ex, "add", 'echo "add got $(cat /colonies/in.json) and env $COLONIES_PROCESS_INPUT"; '
                        'echo "[\\"sum\\", 3]" > /colonies/out.json', ["produce"]),
        step(ex, "report", 'echo "report got $(cat /colonies/in.json)"; cp /colonies/in.json /colonies/out.json',
             ["add"]),
    ]
    spec_file = tmp_path / "workflow.json"
    spec_file.write_text(json.dumps(steps))
    subprocess.run([str(versions.binary("colonies")), "workflow", "submit", "--spec", str(spec_file), "--insecure"],
                   env=dict(os.environ) | colonies_server.client_env(stack.colonies), check=True,
                   capture_output=True, timeout=60)

    async def all_done():
        done = await ex.colonies.user.get_processes(ex.colonies.colony, ProcessState.SUCCESS,
                                                    executor_type=ex.executor_type)
        failed = await ex.colonies.user.get_processes(ex.colonies.colony, ProcessState.FAILED,
                                                      executor_type=ex.executor_type)
        assert not failed, [p.errors for p in failed]
        return {p.spec.nodename: p for p in done} if len(done) == 3 else None
    by_name = await wait_for(all_done, TIMEOUT, "the three steps to succeed", interval=1.0)

    assert by_name["produce"].output == (1, 2)
    assert by_name["add"].input == (1, 2)
    assert "add got [1, 2] and env [1, 2]" in await ex.log_lines(by_name["add"].processid)
    assert by_name["add"].output == ("sum", 3)
    assert 'report got ["sum", 3]' in await ex.log_lines(by_name["report"].processid)
    assert by_name["report"].output == ("sum", 3)


async def test_a_512_kib_output_arrives_whole(ex: Executor):
    script = ("head -c 393216 /dev/urandom | base64 -w0 > /tmp/blob; "
              "printf '[\"%s\"]' \"$(cat /tmp/blob)\" > /colonies/out.json; sha256sum /tmp/blob")
    process = await ex.submit(kwargs=shell(script))
    done = await ex.final(process.processid, timeout=TIMEOUT)
    assert done.state is ProcessState.SUCCESS, done.errors
    [blob] = done.output
    assert len(blob) == 512 * 1024
    assert f"{hashlib.sha256(blob.encode()).hexdigest()}  /tmp/blob" in await ex.log_lines(process.processid)


async def test_an_output_over_the_bound_fails_naming_both_sizes_and_nothing_is_cut(ex: Executor):
    process = await ex.submit(kwargs=shell("head -c 1572864 /dev/zero | tr '\\0' 1 > /colonies/out.json"))
    done = await ex.final(process.processid, timeout=TIMEOUT)
    assert done.state is ProcessState.FAILED and done.output == ()
    assert done.errors[0].startswith("OutputFailed(/colonies/out.json is 1572864 bytes, over this executor's limit "
                                     "of 1048576 bytes (spec.output.maxBytes)"), done.errors


async def test_without_out_json_the_termination_message_is_the_output(ex: Executor):
    process = await ex.submit(kwargs=shell("echo '[\"from the termination message\"]' > /dev/termination-log"))
    done = await ex.final(process.processid, timeout=TIMEOUT)
    assert done.state is ProcessState.SUCCESS and done.output == ("from the termination message",)

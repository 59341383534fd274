"""Secrets a funcspec may name (README "Secrets"), with real containers on the stack's real node:
the kubelet reads an allowed Secret into the program's environment and its value reaches
neither Colonies nor the operator; a Secret the executor does not allow is refused before any
Job exists; an allowed Secret (or key) that does not exist fails the process with the kubelet's
words after `pendingGraceSeconds` (3 s here) instead of leaving it pending.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from pathlib import Path

import pytest
import pytest_asyncio
from colonies_operator.colonies.models import ProcessState
from colonies_operator.jobs import builder
from kubernetes_asyncio import client
from kubernetes_asyncio.client.api_client import ApiClient

from tests.fixtures.operator import Executor, real_node_template, start_executor
from tests.helpers import OPERATOR_AGENTS, colonies_cli, wait_for
from teststack import audit

pytestmark = pytest.mark.integration

TIMEOUT = 120  # the first pod on a fresh node also creates its sandbox
SMALL = {"cpu": "50m", "mem": "32Mi"}
ALLOWED = "app-token"
NEVER_CREATED = "not-created"  # allowed, but no such Secret in the namespace


async def create_secret(api: ApiClient, namespace: str, name: str, data: dict[str, str]) -> None:
    secret = client.V1Secret(metadata=client.V1ObjectMeta(name=name), string_data=data)
    await client.CoreV1Api(api).create_namespaced_secret(namespace, secret)


@pytest_asyncio.fixture
async def secret_executor(api, colonies, namespace, stack, operator) -> Executor:
    """A ColonyExecutor on the real node whose funcspecs may name two Secrets, one never created."""
    return await start_executor(api, colonies, namespace, stack, jobTemplate=real_node_template(stack),
                                secrets={"allowed": [ALLOWED, NEVER_CREATED]})


def with_secret(command: str, name: str, key: str, env: str = "TOKEN") -> dict:
    return {"docker-image": "busybox:1.36", "cmd": command, "secrets": [{"name": name, "key": key, "env": env}]}


async def test_an_allowed_secret_reaches_every_container_and_its_value_never_reaches_colonies_or_the_operator(
        secret_executor, stack, operator):
    ex = secret_executor
    value = f"s3cr3t-{uuid.uuid4().hex}"
    await create_secret(ex.api, ex.namespace, ALLOWED, {"token": value})
    # The program proves it sees the value without printing it (its log goes to Colonies), and
    # the funcspec holds only the value's hash.
    digest = hashlib.sha256(value.encode()).hexdigest()
    check = f'[ "$(printf %s "$TOKEN" | sha256sum | cut -d" " -f1)" = "{digest}" ] && echo token-ok'
    process = await ex.submit(kwargs=with_secret(check, ALLOWED, "token"),
                              conditions={**SMALL, "processespernode": 2})
    done = await ex.final(process.processid, timeout=TIMEOUT)
    assert done.state is ProcessState.SUCCESS, done.errors
    # one line per container, each prefixed with its node and container
    assert sorted(await ex.log_lines(process.processid)) == ["[0/main-0] token-ok", "[0/main-1] token-ok"]

    [job] = await ex.jobs()
    containers = job.spec.template.spec.containers
    assert [c.name for c in containers] == ["main-0", "main-1"]
    for container in containers:
        [token] = [e for e in container.env if e.name == "TOKEN"]
        assert token.value is None
        assert (token.value_from.secret_key_ref.name, token.value_from.secret_key_ref.key) == (ALLOWED, "token")
    assert value not in json.dumps(ex.api.sanitize_for_serialization(job))

    # The process as Colonies holds it (spec, env, errors, output), read by the Go CLI, and its log.
    held = colonies_cli(stack, "process", "get", "-p", process.processid, "--json")
    assert '"secrets"' in held and ALLOWED in held and digest in held  # the CLI printed the whole spec
    assert value not in held
    logs = "".join(e.message for e in await ex.colonies.user.get_all_logs(ex.colonies.colony, process.processid))
    assert value not in logs
    assert value not in Path(operator.proc.log).read_text(errors="replace")


async def test_a_secret_the_executor_does_not_allow_fails_the_process_naming_the_field_and_no_job_is_created(
        secret_executor, stack):
    ex = secret_executor
    # The colony key's Secret is right there in the namespace: naming it must not reach it.
    refused = await ex.submit(kwargs=with_secret("echo never", "colony-key", "colonyPrvKey"), conditions=SMALL)
    done = await ex.final(refused.processid, timeout=TIMEOUT)
    assert done.state is ProcessState.FAILED
    assert done.errors[0] == (f"invalid funcspec: kwargs.secrets[0].name 'colony-key' is not allowed by this "
                              f"executor (allowed: {ALLOWED}, {NEVER_CREATED})"), done.errors
    # Had a Job been created for the refused process, it would exist by the time a later one
    # (assigned after the refusal) has run to its end.
    later = await ex.submit(kwargs={"docker-image": "busybox:1.36", "cmd": "echo after"}, conditions=SMALL)
    ran = await ex.final(later.processid, timeout=TIMEOUT)
    assert ran.state is ProcessState.SUCCESS, ran.errors
    jobs = await ex.jobs()
    assert [j.metadata.labels[builder.PROCESS_LABEL] for j in jobs] == [builder.short_id(later.processid)]
    # nor one created and deleted since: the apiserver logged one Job create in this namespace
    creates = [r for r in audit.requests(stack.kube.audit_dir, OPERATOR_AGENTS)
               if r.rbac == ("create", "batch", "jobs", "") and r.namespace == ex.namespace]
    assert len(creates) == 1, creates
    assert await ex.log_lines(refused.processid) == []


async def test_an_allowed_secret_or_key_that_does_not_exist_fails_the_process_with_the_kubelets_words(
        secret_executor):
    ex = secret_executor
    await create_secret(ex.api, ex.namespace, ALLOWED, {"token": "present"})
    no_secret = await ex.submit(kwargs=with_secret("echo never", NEVER_CREATED, "token"), conditions=SMALL)
    no_key = await ex.submit(kwargs=with_secret("echo never", ALLOWED, "nokey"), conditions=SMALL)
    for process, words in [(no_secret, f'secret "{NEVER_CREATED}" not found'),
                           (no_key, f"couldn't find key nokey in Secret {ex.namespace}/{ALLOWED}")]:
        # far below TIMEOUT: the grace period is 3 s, and the supervisor wakes when it ends
        done = await ex.final(process.processid, timeout=60)
        assert done.state is ProcessState.FAILED, done.errors
        summary = f"ContainerCannotRun({words}): container main could not be started"
        assert done.errors[0].startswith(summary), done.errors
        assert "hint: " in done.errors[0] and "kwargs.secrets" in done.errors[0], done.errors
        print(f"\nfailed {(done.endtime - done.starttime).total_seconds():.1f}s after its assignment: {done.errors[0]}")

    async def jobs_gone() -> bool:  # a pending pod is never left behind
        return not await ex.jobs()
    await wait_for(jobs_gone, 60, "the failed processes' Jobs to be deleted")

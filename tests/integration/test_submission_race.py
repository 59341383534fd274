"""The real server can hand a process over before its env is stored; it still runs with its env.

Colonies v1.9.12 stores a submission in two statements, the process row and then its env as
attributes. In full CI runs an assign landed between the two about once in a thousand
processes, and that pod ran without its env. Here the gap is held open on purpose: a
PostgreSQL session locks the attributes table (reads go on, inserts wait), so the process row
is there, assignable, and its env is not, until the test lets the insert through.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import uuid
from collections.abc import Iterator

import pytest

from colonies_operator.colonies.models import ProcessState
from teststack import postgres
from tests.fixtures.kube import temporary_namespace
from tests.fixtures.operator import running_operator, start_executor
from tests.helpers import wait_for

pytestmark = pytest.mark.integration

SETTLE = "5"  # seconds: ample for this test to let the env in after it sees the process assigned


@contextlib.contextmanager
def attributes_locked(stack) -> Iterator[None]:
    """Inserts into Colonies' attributes table wait while the block runs; reads do not."""
    pg = stack.postgres
    psql = subprocess.Popen(
        [str(postgres.pg_bin_dir() / "psql"), "-h", "127.0.0.1", "-p", str(pg.port), "-U", pg.user, "-d", "postgres",
         "-At", "-v", "ON_ERROR_STOP=1"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env=os.environ | {"PGPASSWORD": pg.password})
    try:
        psql.stdin.write("BEGIN; LOCK TABLE prod_attributes IN EXCLUSIVE MODE; SELECT 'locked';\n")
        psql.stdin.flush()
        said = [psql.stdout.readline().strip() for _ in range(3)]  # BEGIN, LOCK TABLE, then our word
        assert said[-1] == "locked", said
        yield
        psql.stdin.write("COMMIT;\n")
        psql.stdin.close()
        assert psql.wait(timeout=30) == 0, psql.stdout.read()
    finally:
        if psql.poll() is None:
            psql.kill()
            psql.wait()


async def test_a_process_assigned_before_its_env_is_stored_runs_with_its_env(api, colonies, stack, crd):
    async with temporary_namespace(api, "sr") as namespace:
        with running_operator(stack, "--namespace", "sr-*", name=f"operator-{uuid.uuid4().hex[:6]}",
                              env={"COLONIES_OPERATOR_ENV_SETTLE_SECONDS": SETTLE}):
            ex = await start_executor(api, colonies, namespace, stack)
            with attributes_locked(stack):
                late = asyncio.create_task(ex.submit(env={"KWOK_LOG": "the env arrived"}))  # waits on its env insert

                async def stored(state: ProcessState) -> list:
                    return await colonies.user.get_processes(colonies.colony, state, executor_type=ex.executor_type)

                [row] = await wait_for(lambda: stored(ProcessState.WAITING), 30, "the process row to be stored")

                # A process without env is stored at once, and its submission wakes the executor's
                # waiting assign, which takes the oldest first: the one whose env is not stored. The
                # server marks it RUNNING, then waits on the lock too (it updates its attributes'
                # state) and answers once the env is in, with the process as it read it before.
                woken = await ex.submit(kwargs={"docker-image": "busybox:1.36", "cmd": "echo", "args": ["no env"]})

                async def late_one_assigned():
                    return next((p for p in await stored(ProcessState.RUNNING) if p.processid == row.processid), None)

                assigned = await wait_for(late_one_assigned, 60, "the process to be assigned without its env")
                assert not assigned.spec.env and not late.done()
            submitted = await asyncio.wait_for(late, 30)
            assert submitted.processid == assigned.processid
            done = await ex.final(submitted.processid, timeout=120)
            assert done.state is ProcessState.SUCCESS, done.errors
            assert await ex.log_lines(submitted.processid) == ["the env arrived"]
            [job] = [j for j in await ex.jobs() if j.metadata.annotations.get("colonyos.io/process-id") == submitted.processid]
            env = {e.name: e.value for e in job.spec.template.spec.containers[0].env}
            assert env["KWOK_LOG"] == "the env arrived"
            assert await ex.log_lines(woken.processid) == ["no env"]

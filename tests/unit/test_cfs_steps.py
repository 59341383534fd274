"""The CFS steps' settings and the push's rule that only the attempt still holding the process
pushes (a cancelled process, or one Colonies gave to another attempt, pushes nothing)."""

from __future__ import annotations

import pytest
from colonies_operator.cfs import steps
from colonies_operator.cfs.mounts import Filesystem, SyncDir
from colonies_operator.colonies.crypto import Key

from tests.fakes.colonies import FakeColoniesServer, FakeConnection

FS = Filesystem("/cfs", (), (SyncDir("/out", "/out", False, True),))


def env(**changes: str) -> dict[str, str]:
    base = {"COLONIES_SERVER_HOST": "10.0.0.1", "COLONIES_SERVER_PORT": "8080", "COLONIES_COLONY_NAME": "dev",
            "COLONIES_PRVKEY": Key.generate().private_hex, "COLONIES_PROCESS_ID": "ab" * 32,
            "COLONIES_ATTEMPT": "2", "COLONIES_CFS": FS.to_json(), "COLONIES_CFS_ROOT": "/cfs-volume",
            "AWS_S3_ENDPOINT": "s3:8333", "AWS_S3_BUCKET": "b", "AWS_S3_ACCESSKEY": "a", "AWS_S3_SECRETKEY": "s"}
    return {**base, **changes}


def test_settings_come_from_the_environment_the_job_builder_gives():
    s = steps.StepSettings.from_env(env())
    assert (s.server.host, s.server.port, s.colony, s.attempt, s.fs, str(s.root)) == (
        "10.0.0.1", 8080, "dev", 2, FS, "/cfs-volume")
    assert s.key not in repr(s), "the key never shows in a repr (nor so in a log)"


def test_missing_settings_are_named():
    with pytest.raises(ValueError, match="not set: COLONIES_PRVKEY, COLONIES_CFS"):
        steps.StepSettings.from_env(env(COLONIES_PRVKEY="", COLONIES_CFS=""))


async def test_only_the_attempt_still_holding_the_process_pushes():
    server = FakeColoniesServer(allow_reregister=True, timeout_scale=0.05)
    owner, user, executor = Key.generate(), Key.generate(), Key.generate()
    server.add_colony("dev", owner)
    server.add_user("dev", user, "alice")
    conn = FakeConnection(server)
    await conn.client(owner).add_executor("dev", executor.id, "ex", "t")
    await conn.client(owner).approve_executor("dev", "ex")
    body = {"funcname": "execute", "maxexectime": -1, "maxretries": 3, "maxwaittime": -1,
            "conditions": {"colonyname": "dev", "executortype": "t"}}
    process = await conn.client(user).submit(body)
    assigned = await conn.client(executor).assign("dev", -1)
    assert assigned is not None

    def settings(attempt: int) -> steps.StepSettings:
        return steps.StepSettings.from_env(env(COLONIES_PRVKEY=executor.private_hex,
                                               COLONIES_PROCESS_ID=process.processid, COLONIES_ATTEMPT=str(attempt)))
    assert await steps.still_current(conn, settings(0)) == ""
    assert await steps.still_current(conn, settings(1)) == "the process has moved to another attempt"
    await conn.client(user).cancel(process.processid)
    assert await steps.still_current(conn, settings(0)) == "the process is CANCELLED"

"""Best-effort Job calls while the apiserver restarts: a question it cannot answer is asked
again later, never taken as an answer and never an operator failure."""

from __future__ import annotations

import aiohttp

from colonies_operator.runtime import jobops
from tests.fakes.kube import FakeKube

AWAY = aiohttp.ClientConnectionError("Cannot connect to host apiserver:6443")


async def test_the_controllers_refusal_unread_while_the_apiserver_is_away_is_no_refusal_yet():
    kube = FakeKube()
    kube.fail_next("list_events", AWAY)
    assert await jobops.failed_create_message(kube, "jobs", "colony-abc-0") is None


async def test_whether_a_job_exists_is_unknown_while_the_apiserver_is_away_and_known_after():
    kube = FakeKube()
    kube.fail_next("list_jobs", AWAY)
    assert await jobops.exists(kube, "jobs", "app=x", "colony-abc-0") is None
    assert await jobops.exists(kube, "jobs", "app=x", "colony-abc-0") is False


async def test_a_best_effort_call_gives_up_after_its_patience_and_says_so(monkeypatch, caplog):
    monkeypatch.setattr(jobops, "KUBE_PATIENCE", 0.6)
    kube = FakeKube()
    kube.fail_next("delete_job", AWAY, times=100)
    await jobops.delete(kube, "jobs", "colony-abc-0")
    assert kube.calls["delete_job"] == 2  # at once, then 0.5 s later; the next try would pass the patience
    assert "could not be reached for 1s" in caplog.text

"""Leader election over a Lease (leadership.py), against the in-memory apiserver: a candidate takes a
free or expired Lease, never a fresh one held by another; the leader renews, loses on a
conflicting holder or a missed renew deadline, and releases on stop; `lead` serves only while
leading."""

import asyncio

import pytest

from colonies_operator import cli
from colonies_operator.leadership import Elector, LeadershipLost, LeaseSettings, lead
from colonies_operator.runtime.kube import Conflict, KubeError

from tests.fakes import ManualClock
from tests.fakes.kube import FakeKube

NS, NAME = "ops", "colonies-operator-leader"


def settings(identity, **overrides):
    # Real sleeps in the loops are this short; expiry and deadlines move only with the manual clock.
    values = {"lease_seconds": 10, "renew_deadline_seconds": 7, "retry_seconds": 0.01} | overrides
    return LeaseSettings(NS, NAME, identity, **values)


@pytest.fixture
def clock():
    return ManualClock(1_000_000.0)


@pytest.fixture
def kube(clock):
    return FakeKube(clock=clock)


def elector(kube, clock, identity, **overrides):
    return Elector(kube, settings(identity, **overrides), clock=clock, wall=clock)


def spec(kube):
    return kube.get("Lease", NS, NAME)["spec"]


async def test_a_candidate_takes_a_lease_that_does_not_exist(kube, clock):
    a = elector(kube, clock, "a")
    assert await a.try_acquire_or_renew() is True
    assert a.leading
    lease = spec(kube)
    assert lease["holderIdentity"] == "a" and lease["leaseDurationSeconds"] == 10
    assert lease["leaseTransitions"] == 0 and lease["acquireTime"] == lease["renewTime"]


async def test_a_candidate_does_not_take_a_fresh_lease_another_holds(kube, clock):
    a, b = elector(kube, clock, "a"), elector(kube, clock, "b")
    assert await a.try_acquire_or_renew()
    clock.advance(9)  # b first saw a's record now: b's own clock decides when it runs out
    assert await b.try_acquire_or_renew() is False
    clock.advance(9.9)
    assert await b.try_acquire_or_renew() is False
    assert not b.leading and b.holder == "a" and spec(kube)["holderIdentity"] == "a"


async def test_a_candidate_takes_a_lease_that_ran_out_on_its_own_clock(kube, clock):
    a, b = elector(kube, clock, "a"), elector(kube, clock, "b")
    assert await a.try_acquire_or_renew()
    assert not await b.try_acquire_or_renew()
    clock.advance(10)  # a said nothing for a whole lease, as b measures it
    assert await b.try_acquire_or_renew() is True
    lease = spec(kube)
    assert lease["holderIdentity"] == "b" and lease["leaseTransitions"] == 1


async def test_a_renewal_seen_by_a_standby_restarts_its_wait(kube, clock):
    a, b = elector(kube, clock, "a"), elector(kube, clock, "b")
    assert await a.try_acquire_or_renew()
    assert not await b.try_acquire_or_renew()
    clock.advance(6)
    assert await a.try_acquire_or_renew()  # renewed
    assert not await b.try_acquire_or_renew()  # b sees a new record: its wait starts again
    clock.advance(6)
    assert not await b.try_acquire_or_renew()
    assert spec(kube)["holderIdentity"] == "a"


async def test_the_leader_renews_keeping_acquire_time_and_transitions_with_one_write(kube, clock):
    a = elector(kube, clock, "a")
    assert await a.try_acquire_or_renew()
    before = dict(spec(kube))
    clock.advance(2)
    calls = dict(kube.calls)
    assert await a.try_acquire_or_renew()
    after = spec(kube)
    assert after["renewTime"] > before["renewTime"]
    assert after["acquireTime"] == before["acquireTime"] and after["leaseTransitions"] == 0
    assert {k: n - calls.get(k, 0) for k, n in kube.calls.items() if n != calls.get(k, 0)} == {"replace_lease": 1}


async def test_of_two_candidates_writing_at_once_one_wins(kube, clock):
    a, b = elector(kube, clock, "a"), elector(kube, clock, "b")
    results = await asyncio.gather(a.try_acquire_or_renew(), b.try_acquire_or_renew())
    assert sorted(results) == [False, True]
    assert spec(kube)["holderIdentity"] == ("a" if results[0] else "b")


async def test_the_leader_loses_when_another_holds_the_lease_after_a_conflict(kube, clock):
    a, b = elector(kube, clock, "a"), elector(kube, clock, "b")
    assert await a.try_acquire_or_renew()
    assert not await b.try_acquire_or_renew()
    clock.advance(11)  # a stalled past its lease: b takes it
    assert await b.try_acquire_or_renew()
    with pytest.raises(LeadershipLost, match="held by b"):
        await asyncio.wait_for(a.hold(), 5)
    assert not a.leading
    assert spec(kube)["holderIdentity"] == "b"


async def test_a_conflict_from_a_write_that_left_the_leader_holding_is_not_a_loss(kube, clock):
    a = elector(kube, clock, "a")
    assert await a.try_acquire_or_renew()
    kube.fail_next("replace_lease", Conflict(409, "Conflict", "the object has been modified"))
    assert await a.try_acquire_or_renew()  # read again: still a's, renewed over the new version
    assert a.leading and spec(kube)["holderIdentity"] == "a"


async def test_the_leader_loses_when_it_cannot_renew_for_the_renew_deadline(kube, clock):
    a = elector(kube, clock, "a")
    assert await a.try_acquire_or_renew()
    kube.down()
    holding = asyncio.create_task(a.hold())
    await asyncio.sleep(0.1)  # tries fail; the deadline has not passed on the manual clock
    assert not holding.done()
    clock.advance(7)
    with pytest.raises(LeadershipLost, match="could not renew"):
        await asyncio.wait_for(holding, 5)
    assert not a.leading


async def test_the_leader_keeps_the_lease_while_renewals_succeed(kube, clock):
    a = elector(kube, clock, "a")
    assert await a.try_acquire_or_renew()
    holding = asyncio.create_task(a.hold())
    for _ in range(5):
        clock.advance(3)  # less than the deadline between renewals
        writes = kube.calls["replace_lease"]
        while kube.calls["replace_lease"] == writes:
            await asyncio.sleep(0.01)
    assert not holding.done() and a.leading
    holding.cancel()


async def test_release_leaves_a_lease_without_holder_that_a_standby_takes_at_once(kube, clock):
    a, b = elector(kube, clock, "a"), elector(kube, clock, "b")
    assert await a.try_acquire_or_renew()
    assert not await b.try_acquire_or_renew()
    await a.release()
    lease = spec(kube)
    assert "holderIdentity" not in lease and lease["leaseDurationSeconds"] == 1
    assert await b.try_acquire_or_renew()  # no clock advance: no waiting for the lease to run out
    assert spec(kube)["leaseTransitions"] == 1


async def test_a_standby_does_not_release_what_it_does_not_hold(kube, clock):
    a, b = elector(kube, clock, "a"), elector(kube, clock, "b")
    assert await a.try_acquire_or_renew()
    assert not await b.try_acquire_or_renew()
    await b.release()
    assert spec(kube)["holderIdentity"] == "a"


async def test_lead_serves_only_once_leading_and_releases_when_the_service_ends(kube, clock):
    a, b = elector(kube, clock, "a"), elector(kube, clock, "b")
    assert await a.try_acquire_or_renew()
    served, stop = asyncio.Event(), asyncio.Event()

    async def serve():
        served.set()
        await stop.wait()

    leading = asyncio.create_task(lead(b, serve, lost=pytest.fail))
    await asyncio.sleep(0.2)  # b tried many times: a's lease is fresh
    assert not served.is_set()
    await a.release()
    await asyncio.wait_for(served.wait(), 5)
    assert spec(kube)["holderIdentity"] == "b"
    stop.set()
    await asyncio.wait_for(leading, 5)
    assert "holderIdentity" not in spec(kube)


async def test_lead_calls_lost_and_stops_serving_when_leadership_is_lost(kube, clock):
    a = elector(kube, clock, "a")
    served, cancelled, losses = asyncio.Event(), asyncio.Event(), []

    async def serve():
        served.set()
        try:
            await asyncio.Event().wait()
        finally:
            cancelled.set()

    leading = asyncio.create_task(lead(a, serve, lost=losses.append))
    await asyncio.wait_for(served.wait(), 5)
    kube.down()
    clock.advance(7)
    with pytest.raises(LeadershipLost):
        await asyncio.wait_for(leading, 5)
    assert [type(e) for e in losses] == [LeadershipLost] and cancelled.is_set()
    kube.up()
    assert spec(kube)["holderIdentity"] == "a"  # not released: it could not have been sure it still held it


@pytest.mark.parametrize("overrides, field", [
    ({"renew_deadline_seconds": 10}, "COLONIES_OPERATOR_LEASE_RENEW_DEADLINE_SECONDS=10"),
    ({"retry_seconds": 7}, "COLONIES_OPERATOR_LEASE_RETRY_SECONDS=7"),
    ({"retry_seconds": 0}, "COLONIES_OPERATOR_LEASE_RETRY_SECONDS=0"),
])
def test_settings_where_a_leader_could_outlive_its_lease_are_refused_naming_them(overrides, field):
    with pytest.raises(ValueError, match=field):
        settings("a", **overrides)


def test_a_lease_without_namespace_is_refused_naming_the_setting():
    with pytest.raises(ValueError, match="COLONIES_OPERATOR_LEASE_NAMESPACE"):
        LeaseSettings("")


async def test_a_standby_is_healthy_while_it_reads_the_lease_and_unhealthy_once_it_cannot_for_long(kube, clock):
    a, b = elector(kube, clock, "a"), elector(kube, clock, "b")
    assert await a.try_acquire_or_renew()
    standing_by = asyncio.create_task(b.acquire())
    await asyncio.sleep(0.05)
    clock.advance(9)  # under a's fresh renewals b stands by, healthy
    assert await a.try_acquire_or_renew()
    await asyncio.sleep(0.05)
    assert b.standby_health() == (True, {"leading": False, "identity": "b", "holder": "a"})
    kube.fail_next("read_lease", KubeError(403, "Forbidden", 'leases "colonies-operator-leader" is forbidden'),
                   times=10**6)
    await asyncio.sleep(0.05)
    clock.advance(59)
    assert b.standby_health()[0] is True  # a while without answer is not yet a problem
    clock.advance(2)
    await asyncio.sleep(0.05)
    healthy, body = b.standby_health()
    assert not healthy and "HTTP 403 Forbidden" in body["error"] and not standing_by.done()
    standing_by.cancel()


def test_run_refuses_lease_settings_a_leader_could_outlive_naming_them(monkeypatch, capsys):
    monkeypatch.delenv("POD_NAMESPACE", raising=False)
    assert cli.main(["run", "--namespace", "ops", "--leader-election"]) == 2
    assert "COLONIES_OPERATOR_LEASE_NAMESPACE: no namespace for the Lease" in capsys.readouterr().err
    monkeypatch.setenv("COLONIES_OPERATOR_LEASE_NAMESPACE", "ops")
    monkeypatch.setenv("COLONIES_OPERATOR_LEASE_RENEW_DEADLINE_SECONDS", "12")
    assert cli.main(["run", "--namespace", "ops", "--leader-election"]) == 2
    assert "COLONIES_OPERATOR_LEASE_RENEW_DEADLINE_SECONDS=12" in capsys.readouterr().err

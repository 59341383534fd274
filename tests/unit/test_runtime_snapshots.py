"""A process's snapshots are removed once it has ended for good: after its final attempt, never
after one that Colonies hands back to the queue (the Go executors remove them after every
attempt, so a retry runs without its inputs). Against the in-memory peers."""

from __future__ import annotations

from colonies_operator.colonies.models import ProcessState

from tests.unit.runtime_harness import COLONY, eventually, for_a_while, running

STORAGE = {"storage": {"endpoint": "s3.test:8333", "bucket": "cfs", "credentialsSecretRef": {"name": "s3-keys"}},
           "helperImage": "colonies-operator:test",
           "executorKeySecretRef": {"name": "executor-key"}}


def with_snapshots(h, keep: bool = False, **overrides):
    """A spec whose fs mounts two snapshots: one to remove (unless `keep`), one kept."""
    removable = h.server.files.add(COLONY, "/inputs", "run-inputs")
    kept = h.server.files.add(COLONY, "/shared", "shared-model")
    fs = {"mount": "/cfs", "snapshots": [
        {"snapshotid": removable, "label": "/inputs", "dir": "/in", "keepsnapshot": keep},
        {"snapshotid": kept, "label": "/shared", "dir": "/model", "keepsnapshot": True}]}
    return removable, kept, h.submit_spec(fs=fs, **overrides)


async def test_a_succeeded_process_has_its_snapshot_removed_and_the_kept_one_stays():
    async with running(**STORAGE) as h:
        removable, kept, spec = with_snapshots(h)
        process = await h.user.submit(spec)
        job = await h.job_of(process.processid)
        h.kube.start(job)
        h.kube.succeed(job)
        assert (await h.ended(process.processid)).state is ProcessState.SUCCESS
        await eventually(lambda: removable not in h.server.files.snapshots, "the snapshot to be removed")
        assert kept in h.server.files.snapshots


async def test_a_failed_process_has_its_snapshot_removed():
    async with running(**STORAGE) as h:
        removable, _, spec = with_snapshots(h)
        process = await h.user.submit(spec)
        job = await h.job_of(process.processid)
        h.kube.start(job)
        h.kube.fail(job, exit_code=3)
        assert (await h.ended(process.processid)).state is ProcessState.FAILED
        await eventually(lambda: removable not in h.server.files.snapshots, "the snapshot to be removed")


async def test_an_attempt_handed_back_to_the_queue_keeps_the_snapshot_for_the_next():
    async with running(**STORAGE) as h:
        removable, _, spec = with_snapshots(h, maxretries=1, maxexectime=60)
        process = await h.user.submit(spec)
        first = await h.job_of(process.processid)
        h.kube.start(first)
        h.server.unassign(process.processid)  # maxexectime passed: WAITING, retries 1
        second = await eventually(lambda: (name := h.job_name(process.processid)) != first and name,
                                  "the second attempt's Job")
        assert removable in h.server.files.snapshots, "the retry needs its inputs"
        h.kube.start(second)
        h.kube.succeed(second)
        assert (await h.ended(process.processid)).state is ProcessState.SUCCESS
        await eventually(lambda: removable not in h.server.files.snapshots, "the snapshot to be removed at last")


async def test_a_cancelled_process_has_its_snapshot_removed():
    async with running(**STORAGE) as h:
        removable, _, spec = with_snapshots(h)
        process = await h.user.submit(spec)
        h.kube.start(await h.job_of(process.processid))
        await h.user.cancel(process.processid)
        await eventually(lambda: removable not in h.server.files.snapshots, "the snapshot to be removed")


async def test_keepsnapshot_keeps_it_after_the_end():
    async with running(**STORAGE) as h:
        kept_too, kept, spec = with_snapshots(h, keep=True)
        process = await h.user.submit(spec)
        job = await h.job_of(process.processid)
        h.kube.start(job)
        h.kube.succeed(job)
        await h.ended(process.processid)
        await for_a_while(0.5)  # the removal follows the close at once when there is one
        assert {kept_too, kept} <= set(h.server.files.snapshots)

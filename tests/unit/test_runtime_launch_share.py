"""The operator's own share of a launch (assigned → the Job's create sent) is measured per
process, beside assigned → created, which also holds the apiserver's time."""

from tests.unit.runtime_harness import running


def count_and_sum(metrics, name: str) -> tuple[float, float]:
    samples = {s.name: s.value for family in metrics.registry.collect() for s in family.samples}
    return samples[f"{name}_count"], samples[f"{name}_sum"]


async def test_each_created_job_adds_its_own_share_which_is_at_most_the_whole_launch():
    async with running() as h:
        for _ in range(3):
            await h.job_of((await h.submit()).processid)
        sent, sent_sum = count_and_sum(h.runtime.metrics, "colonies_operator_assigned_to_job_create_sent_seconds")
        created, created_sum = count_and_sum(h.runtime.metrics, "colonies_operator_assigned_to_job_created_seconds")
        assert sent == created == 3
        assert 0 < sent_sum <= created_sum

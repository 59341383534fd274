"""The executor's budget: what is free, when to assign, and waiting for room in line."""

import asyncio

from colonies_operator.runtime.assigning import has_room
from colonies_operator.jobs.resources import Resources
from colonies_operator.runtime.capacity import BACKFILL_SECONDS, Capacity

GIB = 2**30


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_free_is_budget_minus_reservations():
    capacity = Capacity(Resources(4000, 8 * GIB, 0, 10))
    assert capacity.try_reserve(Resources(1000, GIB, 0, 1))
    assert capacity.free == Resources(3000, 7 * GIB, 0, 9)


def test_no_assigning_without_cpu_memory_or_a_job_slot():
    budget = Resources(1000, GIB, 0, 1)
    assert not has_room(Resources(0, GIB, 0, 1), budget)
    assert not has_room(Resources(1000, 0, 0, 1), budget)
    assert not has_room(Resources(1000, GIB, 0, 0), budget)
    assert has_room(Resources(1000, GIB, 0, 1), budget)


def test_a_gpu_executor_assigns_only_while_a_gpu_is_free():
    budget = Resources(8000, 8 * GIB, 1, 10)
    capacity = Capacity(budget)
    assert has_room(capacity.free, budget)
    assert capacity.try_reserve(Resources(100, GIB, 1, 1))
    assert not has_room(capacity.free, budget)


def test_over_budget_names_each_dimension():
    assert Resources(4000, 2 * GIB, 1, 1).over(Resources(1000, GIB, 0, 10)) == [
        "cpu 4000m > capacity 1000m", "memory 2048Mi > capacity 1024Mi", "gpu 1 > capacity 0"]


async def test_a_reservation_waits_for_a_release():
    capacity = Capacity(Resources(1000, GIB, 0, 10))
    first = Resources(1000, GIB // 2, 0, 1)
    assert capacity.try_reserve(first)
    waiting = asyncio.create_task(capacity.reserve(Resources(500, GIB // 4, 0, 1)))
    await asyncio.sleep(0)
    assert not waiting.done() and capacity.waiting == 1
    capacity.release(first)
    await asyncio.wait_for(waiting, 1)
    assert capacity.used == Resources(500, GIB // 4, 0, 1)


async def test_a_bigger_budget_serves_waiters():
    capacity = Capacity(Resources(0, GIB, 0, 10))
    waiting = asyncio.create_task(capacity.reserve(Resources(500, GIB // 4, 0, 1)))
    await asyncio.sleep(0)
    capacity.set_budget(Resources(1000, GIB, 0, 10))
    await asyncio.wait_for(waiting, 1)


async def test_smaller_processes_start_around_a_waiting_one_until_it_has_waited_long():
    clock = Clock()
    capacity = Capacity(Resources(2000, 8 * GIB, 0, 10), clock=clock)
    assert capacity.try_reserve(Resources(750, GIB, 0, 1))
    wide = asyncio.create_task(capacity.reserve(Resources(1500, GIB, 0, 1)))
    await asyncio.sleep(0)
    assert capacity.try_reserve(Resources(100, GIB, 0, 1))  # backfill: it fits in what is free
    clock.now = BACKFILL_SECONDS
    assert capacity.offered().cpu_millis == 2000 - 850 - 1500  # the waiting one's room is held back now
    assert not capacity.try_reserve(Resources(100, GIB, 0, 1))
    assert not wide.done()


async def test_a_cancelled_waiter_leaves_the_line_and_holds_nothing():
    capacity = Capacity(Resources(1000, GIB, 0, 10))
    assert capacity.try_reserve(Resources(1000, GIB, 0, 1))
    waiting = asyncio.create_task(capacity.reserve(Resources(500, GIB, 0, 1)))
    await asyncio.sleep(0)
    waiting.cancel()
    await asyncio.gather(waiting, return_exceptions=True)
    assert capacity.waiting == 0
    capacity.release(Resources(1000, GIB, 0, 1))
    assert capacity.used == Resources()


async def test_listeners_hear_every_change_of_the_free_room():
    capacity = Capacity(Resources(1000, GIB, 0, 10))
    heard = capacity.listen()
    assert capacity.try_reserve(Resources(100, GIB // 2, 0, 1)) and heard.is_set()
    heard.clear()
    capacity.release(Resources(100, GIB // 2, 0, 1))
    assert heard.is_set()


def test_a_profile_pool_bounds_its_processes_inside_the_executor_budget():
    capacity = Capacity(Resources(8000, 8 * GIB, 4, 10), pools={"gpu": Resources(8000, 8 * GIB, 2, 10)})
    two_gpus = Resources(100, GIB, 2, 1)
    assert capacity.try_reserve(two_gpus, "gpu")
    assert not capacity.try_reserve(two_gpus, "gpu")  # the pool is full, the executor is not
    assert capacity.try_reserve(two_gpus)  # outside the pool the executor's room is there
    assert capacity.pool_free("gpu") == Resources(7900, 7 * GIB, 0, 9)
    assert capacity.pool_free("cpu") is None
    capacity.release(two_gpus, "gpu")
    assert capacity.free.gpus == 2 and capacity.pool_free("gpu").gpus == 2
    assert capacity.try_reserve(two_gpus, "gpu")
    assert capacity.free.gpus == 0 and capacity.pool_free("gpu").gpus == 0


async def test_a_process_waiting_for_its_pool_is_served_when_the_pool_frees_and_holds_nothing_back():
    clock = Clock()
    capacity = Capacity(Resources(4000, 8 * GIB, 0, 10), clock=clock, pools={"small": Resources(1000, 8 * GIB, 0, 10)})
    first = Resources(1000, GIB, 0, 1)
    assert capacity.try_reserve(first, "small")
    waiting = asyncio.create_task(capacity.reserve(first, "small"))
    await asyncio.sleep(0)
    clock.now += BACKFILL_SECONDS + 1
    # waiting long for its full pool does not keep the executor's free room from others
    assert capacity.offered() == Resources(3000, 7 * GIB, 0, 9)
    assert capacity.try_reserve(Resources(2000, GIB, 0, 1))
    assert not waiting.done()
    capacity.release(first, "small")
    await asyncio.wait_for(waiting, 1)
    assert capacity.pool_used["small"] == first

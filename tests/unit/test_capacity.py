"""The executor's budget: what is free, when to assign, and waiting for room."""

import asyncio

from colonies_operator.runtime.capacity import Capacity, Resources

GIB = 2**30


def test_free_is_budget_minus_reservations():
    capacity = Capacity(Resources(4000, 8 * GIB, 0, 10))
    assert capacity.try_reserve(Resources(1000, GIB, 0, 1))
    assert capacity.free == Resources(3000, 7 * GIB, 0, 9)


def test_no_assigning_without_cpu_memory_or_a_job_slot():
    assert not Capacity(Resources(0, GIB, 0, 1)).room_to_assign()
    assert not Capacity(Resources(1000, 0, 0, 1)).room_to_assign()
    assert not Capacity(Resources(1000, GIB, 0, 0)).room_to_assign()
    assert Capacity(Resources(1000, GIB, 0, 1)).room_to_assign()


def test_a_gpu_executor_assigns_only_while_a_gpu_is_free():
    capacity = Capacity(Resources(8000, 8 * GIB, 1, 10))
    assert capacity.room_to_assign()
    assert capacity.try_reserve(Resources(100, GIB, 1, 1))
    assert not capacity.room_to_assign()


def test_over_budget_names_each_dimension():
    assert Resources(4000, 2 * GIB, 1, 1).over(Resources(1000, GIB, 0, 10)) == [
        "cpu 4000m > capacity 1000m", "memory 2048Mi > capacity 1024Mi", "gpu 1 > capacity 0"]


async def test_a_reservation_waits_for_a_release():
    capacity = Capacity(Resources(1000, GIB, 0, 10))
    first = Resources(1000, GIB // 2, 0, 1)
    assert capacity.try_reserve(first)
    waiting = asyncio.create_task(capacity.reserve(Resources(500, GIB // 4, 0, 1)))
    await asyncio.sleep(0)
    assert not waiting.done()
    await capacity.release(first)
    await asyncio.wait_for(waiting, 1)
    assert capacity.used == Resources(500, GIB // 4, 0, 1)


async def test_a_bigger_budget_wakes_waiters():
    capacity = Capacity(Resources(0, GIB, 0, 10))
    waiting = asyncio.create_task(capacity.wait_for_room())
    await asyncio.sleep(0)
    await capacity.set_budget(Resources(1000, GIB, 0, 10))
    await asyncio.wait_for(waiting, 1)

"""Long-poll wake-ups: a pulse wakes every waiter, a function's queue one per input."""

import asyncio

from shoal.control.calls import FunctionQueue
from shoal.control.pulse import Pulse


async def test_notify_wakes_every_waiter_and_a_timeout_ends_a_wait():
    pulse = Pulse()
    waiters = [asyncio.create_task(pulse.wait(5)) for _ in range(3)]
    await asyncio.sleep(0)
    pulse.notify()
    done, _ = await asyncio.wait(waiters, timeout=1)
    assert len(done) == 3
    await asyncio.wait_for(pulse.wait(0.01), 1)  # nobody notifies: it returns at its timeout
    assert pulse._waiters == []


async def test_a_cancelled_waiter_leaves_the_others_waiting():
    pulse = Pulse()
    gone, staying = asyncio.create_task(pulse.wait(5)), asyncio.create_task(pulse.wait(5))
    await asyncio.sleep(0)
    gone.cancel()
    await asyncio.gather(gone, return_exceptions=True)
    assert not staying.done()
    pulse.notify()
    await asyncio.wait_for(staying, 1)


async def test_a_woken_queue_waiter_that_goes_away_passes_its_turn_on():
    q = FunctionQueue()
    first, second = asyncio.create_task(q.wait(5)), asyncio.create_task(q.wait(5))
    await asyncio.sleep(0)
    q.notify(1)  # wakes the first, which is cancelled before it runs
    first.cancel()
    await asyncio.gather(first, return_exceptions=True)
    await asyncio.wait_for(second, 1)


async def test_queue_waits_that_time_out_leave_nothing_behind():
    q = FunctionQueue()
    for _ in range(5):
        await asyncio.wait_for(q.wait(0.01), 1)
    assert len(q._waiters) == 0

"""A broadcast wake-up for long-polls: waiters sleep until the next notify or a timeout."""

import asyncio


class Pulse:
    def __init__(self) -> None:
        self._waiters: list[asyncio.Future] = []

    def notify(self) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            settle(waiter, True)

    async def wait(self, timeout: float) -> None:
        # A bare future and a timer: woken, it runs in the loop's next turn (asyncio.wait_for takes two or three).
        if timeout <= 0:
            return
        loop = asyncio.get_running_loop()
        waiter = loop.create_future()
        self._waiters.append(waiter)
        timer = loop.call_later(timeout, settle, waiter, False)
        try:
            await waiter
        finally:
            timer.cancel()
            if waiter in self._waiters:
                self._waiters.remove(waiter)


def settle(waiter: asyncio.Future, woken: bool) -> None:
    if not waiter.done():
        waiter.set_result(woken)

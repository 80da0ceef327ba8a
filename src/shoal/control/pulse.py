"""Wake-ups for long-polls waiting on something to change."""

import asyncio


class Pulse:
    """Wakes the long-polls waiting on it: all of them, or the first n, each given a turn
    (one whose caller went away before it ran passes its turn on)."""

    def __init__(self) -> None:
        self._waiters: list[asyncio.Future] = []

    def notify(self, n: int | None = None) -> None:
        if n is None:
            waiters, self._waiters = self._waiters, []
            for waiter in waiters:
                settle(waiter, False)
            return
        while self._waiters and n > 0:
            waiter = self._waiters.pop(0)
            if not waiter.done():
                waiter.set_result(True)
                n -= 1

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
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled() and waiter.result():
                self.notify(1)  # given a turn, but its caller went away: pass it on
            raise
        finally:
            timer.cancel()
            if waiter in self._waiters:
                self._waiters.remove(waiter)


def settle(waiter: asyncio.Future, turn: bool) -> None:
    if not waiter.done():
        waiter.set_result(turn)

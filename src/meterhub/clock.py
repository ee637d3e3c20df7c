"""One clock for limiters, retry sleeps and emulators.

Production uses `RealClock`. Tests use `VirtualClock`: time stands still while any task
can run, and jumps to the next wake-up when every task is asleep, so a year of
rate-limited backfill runs in seconds of real time with exact virtual timing.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from typing import Protocol


class Clock(Protocol):
    """Seconds since the epoch, and an awaitable sleep on the same time line.

    ``slack`` is added to every rate-limit window: on the real clock a request sent at the
    end of a window reaches the server a little later than it left, and vendors count from
    their own arrival times.
    """

    slack: float

    def now(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class RealClock:
    """The wall clock and asyncio's sleep."""

    slack = 0.25

    def now(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(seconds, 0.0))


class VirtualClock:
    """Virtual time for one event loop whose I/O is all in-process (e.g. ASGI transports).

    `sleep` parks the caller; when the loop has nothing else ready to run, the clock jumps
    to the earliest wake-up and releases every sleeper due by then.
    """

    slack = 0.0  # in-process transports: no time passes in transit

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._now = float(start)
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()
        self._scheduled = False

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        """Move time forward by hand (for synchronous tests of emulators)."""
        self._now += seconds

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        heapq.heappush(self._sleepers, (self._now + seconds, next(self._order), future))
        self._schedule(loop)
        await future

    def _schedule(self, loop: asyncio.AbstractEventLoop) -> None:
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._tick, loop, 0)

    def _tick(self, loop: asyncio.AbstractEventLoop, idle_rounds: int) -> None:
        # Jump only once the loop has had nothing else to run for a few rounds: a
        # response travelling through an in-process transport takes several callbacks.
        ready = len(getattr(loop, "_ready", ()))
        if ready or idle_rounds < 3:
            loop.call_soon(self._tick, loop, 0 if ready else idle_rounds + 1)
            return
        self._scheduled = False
        while self._sleepers and self._sleepers[0][2].done():
            heapq.heappop(self._sleepers)  # cancelled sleepers
        if not self._sleepers:
            return
        wake = self._sleepers[0][0]
        self._now = max(self._now, wake)
        while self._sleepers and self._sleepers[0][0] <= self._now:
            _, _, future = heapq.heappop(self._sleepers)
            if not future.done():
                future.set_result(None)
        if self._sleepers:
            self._schedule(loop)

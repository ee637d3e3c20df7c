"""Store reads of the API in a few threads, not the thread pool's forty.

A small answer is mostly Python and pyarrow calls, each of which lets go of the GIL and
must win it back: sixteen requests in sixteen threads spend their time queueing for it
(measured: 24 hourly buckets, wrk -c16, 2 cores: 368 requests/s in the pool, 541 in
three threads). Reads run in at most a core's worth of threads plus one (so one may wait
on the store while the others compute); the rest wait their turn on the event loop.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TypeVar

import anyio
import anyio.to_thread

T = TypeVar("T")

READ_THREADS = (os.cpu_count() or 1) + 1  #: store reads running at once


class ReadThreads:
    """Runs functions in at most ``size`` threads at once (created on first use: anyio's
    limiter belongs to the running event loop)."""

    def __init__(self, size: int = READ_THREADS) -> None:
        self.size = size
        self._limiter: anyio.CapacityLimiter | None = None

    async def run(self, func: Callable[[], T]) -> T:
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(self.size)
        return await anyio.to_thread.run_sync(func, limiter=self._limiter)

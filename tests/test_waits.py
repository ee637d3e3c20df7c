"""`woken`: an event or a time limit, and a cancellation is never lost."""

from __future__ import annotations

import asyncio
import time

import pytest

from meterhub.waits import woken


def test_woken_returns_when_the_event_is_set_or_the_time_is_up() -> None:
    async def run() -> tuple[float, float]:
        event = asyncio.Event()
        started = time.monotonic()
        await woken(event, 0.05)  # nobody sets it
        waited = time.monotonic() - started
        asyncio.get_running_loop().call_later(0.01, event.set)
        started = time.monotonic()
        await woken(event, 10)
        return waited, time.monotonic() - started

    timed_out, set_after = asyncio.run(run())
    assert 0.05 <= timed_out < 1
    assert set_after < 1


def test_a_cancellation_that_comes_as_the_event_is_set_stops_the_waiter() -> None:
    """asyncio.wait_for on Python 3.11 returned here instead (its inner wait was done
    when the cancellation came): a task that was told to stop went on."""
    async def run() -> None:
        event = asyncio.Event()
        waiter = asyncio.ensure_future(woken(event, 10))
        await asyncio.sleep(0)  # it waits
        event.set()
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter

    asyncio.run(run())

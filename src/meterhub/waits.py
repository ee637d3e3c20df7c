"""Waiting on an asyncio event for a while."""

from __future__ import annotations

import asyncio
import contextlib


async def woken(event: asyncio.Event, seconds: float) -> None:
    """Until ``event`` is set, ``seconds`` at most. Not `asyncio.wait_for`: on Python 3.11
    it swallows a cancellation that comes as the event is set, and the task would go on
    (an MQTT link that never stopped: seen in CI); it also makes a task per wait."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await event.wait()

"""The shared HTTP layer: rolling limits on virtual time, and the virtual clock itself."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from meterhub.clock import VirtualClock
from meterhub.http import Limit, RateLimiter

PER_MINUTE = Limit("device", 1, 60.0)
PER_ACCOUNT = Limit("account", 3, 60.0)


def test_rolling_limits_space_calls_exactly_and_scopes_combine() -> None:
    clock = VirtualClock(0.0)
    limiter = RateLimiter(clock)
    stamps: list[tuple[str, float]] = []

    async def caller(device: str, calls: int) -> None:
        for _ in range(calls):
            await limiter.acquire([(PER_ACCOUNT, "acct"), (PER_MINUTE, device)])
            stamps.append((device, clock.now()))

    async def main() -> None:
        await asyncio.gather(*(caller(d, 3) for d in ("a", "b", "c", "d")))

    asyncio.run(main())
    by_device: dict[str, list[float]] = {}
    for device, at in stamps:
        by_device.setdefault(device, []).append(at)
    for times in by_device.values():  # 1 per minute per device
        assert all(b - a >= 60 for a, b in itertools.pairwise(times))
    everything = sorted(at for _, at in stamps)
    for at in everything:  # never more than 3 in any 60 s
        assert sum(1 for other in everything if at <= other < at + 60) <= 3, everything
    # 12 calls at 3 per minute: the last starts at minute 3, no device left behind
    assert everything[-1] == pytest.approx(180.0)


def test_readings_budget_counts_units_not_calls() -> None:
    clock = VirtualClock(0.0)
    limiter = RateLimiter(clock)
    budget = Limit("readings", 160_000, 3600.0)

    async def main() -> list[float]:
        times = []
        for _ in range(3):
            await limiter.acquire([(budget, "logger")], cost=65_535)
            times.append(clock.now())
        return times

    assert asyncio.run(main()) == [0.0, 0.0, 3600.0]
    assert limiter.waited == pytest.approx(3600.0)


def test_virtual_sleep_orders_wakeups_and_costs_no_real_time() -> None:
    clock = VirtualClock(100.0)
    order: list[tuple[str, float]] = []

    async def sleeper(name: str, seconds: float) -> None:
        await clock.sleep(seconds)
        order.append((name, clock.now()))

    async def main() -> None:
        await asyncio.gather(sleeper("late", 86400 * 365), sleeper("soon", 5),
                             sleeper("mid", 3600))

    asyncio.run(main())
    assert order == [("soon", 105.0), ("mid", 3700.0), ("late", 100.0 + 86400 * 365)]

"""The group writer's timing rules: a lone write is committed at once, a group waits for a
write that is on its way (but not longer than its window), and a group as large as the
last one is written without waiting."""

from __future__ import annotations

import asyncio
import datetime as dt
import time

import pyarrow as pa

from meterhub.hub import Hub
from meterhub.ingest import GroupWriter

START = dt.datetime(2024, 6, 1, tzinfo=dt.UTC)


def rows(minute: int) -> pa.Table:
    return pa.table({"source": ["t"], "device": ["m"], "channel": ["energy"],
                     "ts": [START + dt.timedelta(minutes=minute)], "value": [float(minute)],
                     "unit": ["kWh"], "kind": ["counter"]})


async def timed(writer: GroupWriter, minute: int) -> float:
    started = time.monotonic()
    await writer.write(rows(minute))
    return time.monotonic() - started


def test_a_lone_write_is_committed_at_once(hub: Hub) -> None:
    writer = GroupWriter(hub, window=5.0)
    assert asyncio.run(timed(writer, 0)) < 2.5
    assert writer.commits == 1
    assert hub.count(device="m") == 1


def test_a_group_waits_for_a_write_on_its_way(hub: Hub) -> None:
    writer = GroupWriter(hub, window=5.0)

    async def parsed_then_written() -> None:
        with writer.arriving():
            await asyncio.sleep(0.3)  # its telegram is being parsed
        await writer.write(rows(1))

    async def run() -> float:
        waited, _ = await asyncio.gather(timed(writer, 0), parsed_then_written())
        return waited

    waited = asyncio.run(run())
    assert 0.3 <= waited < 2.5
    assert writer.commits == 1
    assert hub.count(device="m") == 2


def test_a_write_that_never_comes_does_not_hold_the_group(hub: Hub) -> None:
    writer = GroupWriter(hub, window=5.0)

    async def rejected() -> None:
        try:
            with writer.arriving():
                await asyncio.sleep(0.2)
                raise ValueError("a telegram that is rejected writes nothing")
        except ValueError:
            pass

    async def run() -> float:
        waited, _ = await asyncio.gather(timed(writer, 0), rejected())
        return waited

    waited = asyncio.run(run())
    assert 0.2 <= waited < 2.5
    assert writer.commits == 1


def test_a_group_waits_for_as_many_as_the_last_at_most_its_window(hub: Hub) -> None:
    writer = GroupWriter(hub, window=0.5)

    async def run() -> tuple[float, float, float]:
        group = await asyncio.gather(*(timed(writer, minute) for minute in range(5)))
        alone = await timed(writer, 10)  # the last group had five: it waits for them
        again = await timed(writer, 11)  # the last group had one: at once
        return max(group), alone, again

    group, alone, again = asyncio.run(run())
    assert writer.commits == 3
    assert group < 0.5
    assert 0.5 <= alone < 3.0
    assert again < 0.5
    assert hub.count(device="m") == 7

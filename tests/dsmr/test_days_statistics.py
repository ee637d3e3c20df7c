"""`days_statistics` (a month of days from one read, for the Energy page's months) answers
exactly what `day_statistics` answers day by day, whatever the read's chunk size: over the
conformance corpus' normal, 23-hour and 25-hour days, and over a week of telegrams every
13 minutes across the fall-back night of 27 October 2024, with gas outages, for minute and
reading grouping and DSMR 4's gas shift."""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

import meterhub
from meterhub.config import parse
from meterhub.dsmr import statistics
from meterhub.dsmr.p1 import replay_file
from meterhub.dsmr.prices import contracts
from meterhub.dsmr.settings import DsmrSettings
from meterhub.hub import Hub
from tests.dsmr.test_statistics_conformance import LONG, NORMAL, PRICES, SHORT, TZ, Reading


def week() -> list[Reading]:
    """Telegrams every 13 minutes from 24 to 31 October 2024 (UTC): rising registers, the
    tariff by hour, and gas on the hour but for two outages (the gas time stands still)."""
    rng = random.Random(17)
    at = dt.datetime(2024, 10, 24, 0, 3, 11, tzinfo=dt.UTC)
    t1, t2, r1, r2, gas = 100.0, 200.0, 5.0, 1.0, 300.0
    gas_at = at.replace(minute=0, second=0)
    out = []
    while at < dt.datetime(2024, 10, 31, tzinfo=dt.UTC):
        tariff = 1 if at.hour < 7 or at.hour >= 23 else 2
        if tariff == 1:
            t1 += rng.choice((0.0, 0.004, 0.131))
        else:
            t2 += rng.choice((0.0, 0.017, 0.25))
        r1 += rng.choice((0.0, 0.0, 0.011))
        r2 += rng.choice((0.0, 0.009))
        outage = dt.datetime(2024, 10, 26, 20, tzinfo=dt.UTC) <= at < dt.datetime(
            2024, 10, 27, 4, tzinfo=dt.UTC) or at.date() == dt.date(2024, 10, 29)
        if not outage and at.replace(minute=0, second=0) > gas_at:
            gas_at = at.replace(minute=0, second=0)
            gas += rng.choice((0.0, 0.05, 0.4))
        out.append(Reading(at.isoformat().replace("+00:00", "Z"), round(t1, 3),
                           round(t2, 3), round(r1, 3), round(r2, 3), tariff,
                           gas_at.isoformat().replace("+00:00", "Z"), round(gas, 3)))
        at += dt.timedelta(minutes=13)
    return out


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    """Every stream (they are months apart) replayed from a capture file, as `meterhub p1
    --file` stores one."""
    folder: Path = tmp_path_factory.mktemp("days")
    capture = folder / "capture.txt"
    capture.write_bytes("".join(item.telegram() for item in [*NORMAL, *SHORT, *LONG, *week()]
                                ).encode("ascii"))
    with meterhub.open(f"duckdb:///{folder / 'hub.duckdb'}") as opened:
        counts = replay_file(opened, capture, DsmrSettings(timezone=TZ))
        assert counts.rejected == 0
        assert counts.accepted == len(NORMAL) + len(SHORT) + len(LONG) + len(week())
        yield opened


@pytest.fixture(scope="module")
def priced(hub: Hub) -> list[Any]:
    """The corpus' contract for 2025 (2024 has none: its costs are 0)."""
    return contracts(hub, parse({"dsmr": {"timezone": TZ, "prices": [PRICES]}}).dsmr)


@pytest.mark.parametrize(("first", "last", "chunk"), [
    (dt.date(2025, 1, 13), dt.date(2025, 1, 17), 2),
    (dt.date(2025, 3, 28), dt.date(2025, 4, 1), 1),
    (dt.date(2025, 10, 24), dt.date(2025, 10, 28), 2),
    (dt.date(2024, 10, 23), dt.date(2024, 11, 1), 3),
    (dt.date(2024, 10, 23), dt.date(2024, 11, 1), 31),
], ids=["normal", "short", "long", "week-by-3", "week-at-once"])
@pytest.mark.parametrize("rules", [{}, {"by_minute": False}, {"gas_shift": True}],
                         ids=["minute", "reading", "dsmr4"])
def test_days_at_once_equal_each_day_alone(hub: Hub, priced: list[Any],
                                           monkeypatch: pytest.MonkeyPatch,
                                           first: dt.date, last: dt.date, chunk: int,
                                           rules: dict[str, bool]) -> None:
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    alone = []
    day = first
    while day <= last:
        stats = statistics.day_statistics(hub, "p1", TZ, day, priced, now=now, **rules)
        if stats is not None:
            alone.append(stats)
        day += dt.timedelta(days=1)
    assert len(alone) >= 2  # the range holds days with statistics
    monkeypatch.setattr(statistics, "DAYS_A_READ", chunk)
    hub.drop_answers()  # days kept by an earlier test would not be read in these chunks
    asked = statistics.each_day(first, last + dt.timedelta(days=1))
    assert statistics.days_statistics(hub, "p1", TZ, asked, priced, now=now,
                                      **rules) == alone


def test_today_so_far_at_once_equals_today_alone(hub: Hub, priced: list[Any]) -> None:
    """Mid-day, with the newest readings not yet grouped: the range's last day as alone."""
    now = dt.datetime(2024, 10, 30, 12, 5, 30, tzinfo=dt.UTC)
    today = dt.date(2024, 10, 30)
    alone = statistics.day_statistics(hub, "p1", TZ, today, priced, now=now)
    asked = statistics.each_day(today - dt.timedelta(days=3), today + dt.timedelta(days=1))
    together = statistics.days_statistics(hub, "p1", TZ, asked, priced, now=now)
    assert together[-1] == alone
    assert together[-1]["day"] == today


def test_a_dsmr_4_days_gas_waits_for_the_reading_of_the_next_hour_to_be_grouped(
        hub: Hub) -> None:
    """DSMR 4 stamps an hour's gas at its end, so gas stamped in the first hour of the 16th
    belongs to the 15th once moved back. Its row exists only when DSMR-reader has compacted
    the reading that carries it: that reading's minute over and a later reading in. By
    hand (the normal day, local times): the 15th's first gas row is g4 (01:20 -> 00:20,
    500.250) and its last g10 (23:55 -> 22:55, 502.300) until g11 (16th 00:00 -> 15th
    23:00, 502.310), carried by the reading of 16th 00:00:15, is compacted: not at
    00:00:50 (its minute is not over), at 00:01:30 (over, and 00:01:10's reading is in)."""
    day = dt.date(2025, 1, 15)
    spans = {}
    for now in ("2025-01-15T23:00:50Z", "2025-01-15T23:01:30Z"):
        moment = dt.datetime.fromisoformat(now)
        stats = statistics.day_statistics(hub, "p1", TZ, day, [], gas_shift=True, now=moment)
        assert stats is not None
        together = statistics.days_statistics(hub, "p1", TZ, [day], [], gas_shift=True,
                                              now=moment)
        assert together == [stats]
        spans[now] = stats["gas_span"]
    assert spans == {"2025-01-15T23:00:50Z": Decimal("2.050"),
                     "2025-01-15T23:01:30Z": Decimal("2.060")}


def test_days_asked_far_apart_are_read_around_each_and_answer_as_alone(
        hub: Hub, priced: list[Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """Days nine months apart, asked in any order with a repeat: each run of days is read
    alone (the reads are counted), and the answers are each day's own, oldest first."""
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    days = [dt.date(2025, 10, 26), dt.date(2025, 1, 15), dt.date(2025, 1, 16),
            dt.date(2025, 10, 26)]
    reads: list[tuple[dt.datetime, dt.datetime]] = []
    read = statistics._Span.read

    def counted(*args: Any, **kwargs: Any) -> Any:
        reads.append((args[2], args[3]))  # hub, device, start, end
        return read(*args, **kwargs)

    monkeypatch.setattr(statistics._Span, "read", staticmethod(counted))
    hub.drop_answers()  # days kept by an earlier test would not be read
    together = statistics.days_statistics(hub, "p1", TZ, days, priced, now=now)
    # two runs: 15-16 January and 26 October (local midnights, in UTC)
    assert [(a.isoformat(), b.isoformat()) for a, b in reads] == [
        ("2025-01-14T23:00:00+00:00", "2025-01-16T23:00:00+00:00"),
        ("2025-10-25T22:00:00+00:00", "2025-10-26T23:00:00+00:00")]
    monkeypatch.undo()
    alone = [statistics.day_statistics(hub, "p1", TZ, day, priced, now=now)
             for day in sorted(set(days))]
    assert together == [stats for stats in alone if stats is not None]
    # the 16th too: its rows of 00:00 and 00:01 (the readings of 15th 23:59:45 and 00:00:15)
    assert [stats["day"] for stats in together] == [
        dt.date(2025, 1, 15), dt.date(2025, 1, 16), dt.date(2025, 10, 26)]


def test_a_day_with_its_hours_from_one_read_equals_the_two_apart(hub: Hub,
                                                                 priced: list[Any]) -> None:
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    for day in (dt.date(2025, 3, 30), dt.date(2025, 10, 26)):
        stats, hours = statistics.day_with_hours(hub, "p1", TZ, day, priced, now=now)
        assert stats == statistics.day_statistics(hub, "p1", TZ, day, priced, now=now)
        assert hours == statistics.hour_statistics(hub, "p1", TZ, day, day, now=now)
        assert hours  # the corpus' days have hours

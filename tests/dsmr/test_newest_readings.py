"""The newest DSMR-reader readings (``ordering=-timestamp``) come from a count and the last
hours' times, not from all of a meter's times: every page of them is the page that all
times, newest first, give (``readings_page`` against its own ascending pages)."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from meterhub.api.dsmr_reader.readings import readings_page
from meterhub.dsmr.settings import DsmrSettings
from tests.api.conftest import Api

NOW = pd.Timestamp.now(tz="UTC").floor("min")


def meter(api: Api) -> list[dt.datetime]:
    """Five days of a meter reading every 10 minutes, then a day's gap, then 30 readings a
    minute apart up to now: the windows of an hour and of two days each hold some."""
    old = pd.date_range(NOW - pd.Timedelta(days=6), periods=720, freq="10min")
    recent = pd.date_range(NOW - pd.Timedelta(minutes=29), periods=30, freq="1min")
    ts = old.append(recent)
    api.hub.write(pd.DataFrame({
        "device": "p1", "channel": "electricity_delivered_1", "ts": ts,
        "value": [1000 + i / 1000 for i in range(len(ts))], "unit": "kWh",
        "kind": "counter", "quantity": "energy"}), source="dsmr")
    return [t.to_pydatetime() for t in ts]


@pytest.mark.parametrize("limit", [1, 25])
def test_every_newest_page_is_the_page_of_all_times_reversed(api: Api, limit: int) -> None:
    stamps = meter(api)
    settings = DsmrSettings()
    bounds = [(None, None), (stamps[700], None), (None, stamps[740]),
              (stamps[10], stamps[745]), (stamps[745], stamps[749])]
    for start, end in bounds:
        within = [t for t in stamps if (start is None or t >= start)
                  and (end is None or t <= end)]
        newest_first = within[::-1]
        for offset in (0, 3, 29, 30, 31, 300, len(within) - 1, len(within), len(within) + 5):
            count, rows = readings_page(api.hub, settings, start=start, end=end,
                                        descending=True, offset=offset, limit=limit)
            assert count == len(within), (start, end, offset)
            assert [r["id"] for r in rows] == [
                int(t.timestamp()) for t in newest_first[offset:offset + limit]], (
                start, end, offset)


def test_the_newest_readings_of_the_first_day_kept(api: Api) -> None:
    """The windows back from a time near the earliest one meterhub keeps (1800) stop there."""
    stamps = [dt.datetime(1800, 1, 2, 1, tzinfo=dt.UTC), dt.datetime(1800, 1, 2, 22, tzinfo=dt.UTC)]
    api.hub.write(pd.DataFrame({
        "device": "p1", "channel": "electricity_delivered_1", "ts": stamps,
        "value": [1.0, 2.0], "unit": "kWh", "kind": "counter", "quantity": "energy"}),
        source="dsmr")
    count, rows = readings_page(api.hub, DsmrSettings(), start=None,
                                end=dt.datetime(1800, 1, 2, 23, tzinfo=dt.UTC),
                                descending=True, offset=0, limit=2)
    assert count == 2
    assert [r["id"] for r in rows] == [int(t.timestamp()) for t in stamps[::-1]]

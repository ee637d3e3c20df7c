"""Every backend gives the same answers to the same writes (hypothesis): DuckDB, a ClickHouse
server, a two-shard cluster and current ClickHouse (chdb) read back the same readings,
aggregates (every kind, size and zone, sensor errors, rewrites, resets), gaps, counts and
channel statistics. DuckDB's answers are the reference; each is also checked against
pandas in the store suite."""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Iterator

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import meterhub
from meterhub.hub import Hub
from tests.clickhouse_fixtures import STORE_BACKENDS, store_urls

# times around DST changes, the turn of a month and a year, and far from 1970 (where
# ClickHouse's DateTime cannot go: partitions and buckets there use integer arithmetic)
ANCHORS = [dt.datetime(2024, 3, 30, 22, tzinfo=dt.UTC), dt.datetime(2024, 10, 26, 22,
                                                                    tzinfo=dt.UTC),
           dt.datetime(2023, 12, 31, 20, tzinfo=dt.UTC), dt.datetime(1950, 2, 28, tzinfo=dt.UTC),
           dt.datetime(2150, 6, 1, tzinfo=dt.UTC)]
CHANNELS = {"t": ("°C", "instant"), "e": ("kWh", "counter"), "r": ("mm", "delta")}
ZONES = ["UTC", "Europe/Amsterdam", "America/New_York", "Australia/Lord_Howe"]

row = st.fixed_dictionaries({
    "device": st.sampled_from(["a", "b"]),
    "channel": st.sampled_from(sorted(CHANNELS)),
    "anchor": st.integers(0, len(ANCHORS) - 1),
    "minute": st.integers(0, 36 * 60).map(lambda m: m - m % 15),
    "value": st.one_of(st.none(), st.integers(0, 400).map(lambda v: v / 4)),
    "seq": st.one_of(st.none(), st.integers(1, 20)),
})


@pytest.fixture
def hubs(request: pytest.FixtureRequest) -> Iterator[dict[str, Hub]]:
    opened = {backend: meterhub.open(store_urls(backend, request)())
              for backend in STORE_BACKENDS}
    yield opened
    for hub in opened.values():
        hub.close()


@pytest.fixture
def new_prefix() -> Iterator[str]:
    """Device names of each example's own: the examples share the test's stores."""
    return (f"x{n}" for n in itertools.count())


def frame(rows: list[dict[str, object]], prefix: str) -> pd.DataFrame:
    records = []
    for item in rows:
        unit, kind = CHANNELS[str(item["channel"])]
        value = item["value"]
        records.append({
            "source": "s", "device": f"{prefix}{item['device']}", "channel": item["channel"],
            "ts": (ANCHORS[int(str(item["anchor"]))]
                   + dt.timedelta(minutes=int(str(item["minute"])))),
            "value": value, "unit": unit, "kind": kind, "seq": item["seq"],
            "quality": "sensor_error" if value is None else "ok"})
    return pd.DataFrame.from_records(records)


def same(frames: dict[str, pd.DataFrame], what: str) -> None:
    reference = frames["duckdb"].reset_index(drop=True)
    for backend, got in frames.items():
        pd.testing.assert_frame_equal(got.reset_index(drop=True), reference,
                                      check_dtype=False, rtol=1e-9, atol=1e-9,
                                      obj=f"{what} on {backend}")


# one test per bucket size, so that test workers share the examples (30 in all)
@pytest.mark.early
@pytest.mark.parametrize("every", ["15min", "1h", "1d", "1w", "1mo", "1y"])
@settings(max_examples=5, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(writes=st.lists(st.lists(row, min_size=1, max_size=25), min_size=1, max_size=4),
       tz=st.sampled_from(ZONES),
       window=st.one_of(st.none(), st.tuples(st.integers(0, len(ANCHORS) - 1),
                                             st.integers(-600, 600), st.integers(1, 3000))))
def test_the_same_writes_read_the_same_everywhere(
        hubs: dict[str, Hub], new_prefix: Iterator[str], writes: list[list[dict[str, object]]],
        tz: str, every: str, window: tuple[int, int, int] | None) -> None:
    prefix = next(new_prefix)
    for batch in writes:  # later writes rewrite some keys (a value, an error, a seq)
        results = {backend: hub.write(frame(batch, prefix)) for backend, hub in hubs.items()}
        counts = {backend: (r.rows, r.written, r.new, r.replaced, r.unchanged)
                  for backend, r in results.items()}
        assert len(set(counts.values())) == 1, counts
    devices = sorted({f"{prefix}{item['device']}" for batch in writes for item in batch})
    start = end = None
    if window is not None:
        start = ANCHORS[window[0]] + dt.timedelta(minutes=window[1])
        end = start + dt.timedelta(minutes=window[2])
    same({b: h.readings(device=devices) for b, h in hubs.items()},
         "readings")
    same({b: h.readings(device=devices, start=start, end=end) for b, h in hubs.items()},
         "readings in a window")
    for channel in sorted({str(item["channel"]) for batch in writes for item in batch}):
        kind = CHANNELS[channel][1]
        functions = {"instant": ["mean", "min", "max", "first", "last", "count", "errors"],
                     "counter": ["consumption", "count", "errors"],
                     "delta": ["sum", "count", "errors"]}[kind]
        same({b: h.aggregate(device=devices, channel=channel, every=every, tz=tz,
                             start=start, end=end, fn=functions) for b, h in hubs.items()},
             f"{kind} aggregates every {every} in {tz}")
        same({b: h.aggregate(device=devices, channel=channel, every=every, tz=tz)
              for b, h in hubs.items()}, f"{kind} default aggregates every {every} in {tz}")
    same({b: h.gaps(device=devices) for b, h in hubs.items()}, "gaps")
    assert len({h.count(device=devices, start=start, end=end) for h in hubs.values()}) == 1
    stats = {b: h.channels(device=devices)[["device", "channel", "kind", "unit", "readings",
                                            "first_ts", "last_ts"]]
             for b, h in hubs.items()}
    same(stats, "channel statistics")

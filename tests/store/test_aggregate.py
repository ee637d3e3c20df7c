"""Aggregation by kind against an independent pandas reference and hand-computed values."""

from __future__ import annotations

import itertools
import tracemalloc
from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import meterhub
from meterhub import timebase
from meterhub.hub import Hub
from meterhub.timebase import offset_transitions

ZONES = ["Europe/Amsterdam", "America/New_York", "UTC", "Asia/Kolkata"]
# windows that hold a DST change in Amsterdam and/or New York
WINDOW_STARTS = ["2024-03-28", "2024-10-24", "2024-03-07", "2024-10-31", "2023-12-29"]
PERIOD = {"day": "D", "week": "W-SUN", "month": "M", "year": "Y"}
FIXED = {"15min": "15min", "hour": "h"}
INSTANT_COLUMNS = ["mean", "min", "max", "first", "last", "count"]


@pytest.fixture
def memory_hub(hub: Hub) -> Hub:
    return hub


@pytest.fixture
def new_channel() -> Callable[[], str]:
    """A channel name of its own for each example of a property test: the examples share
    the test's store (a new ClickHouse database per example would cost more than the
    example)."""
    numbers = itertools.count()
    return lambda: f"x{next(numbers)}"


def write_series(hub: Hub, ts: pd.DatetimeIndex, values: np.ndarray, kind: str,
                 unit: str = "kWh", channel: str = "x") -> None:
    hub.write(pd.DataFrame({"source": "s", "device": "d", "channel": channel, "ts": ts,
                            "value": values, "unit": unit, "kind": kind}))


def grouped(s: pd.Series, every: str, tz: str) -> object:
    """pandas' own grouping: calendar periods of the local wall time, or resample bins."""
    if every in PERIOD:
        periods = s.index.tz_convert(tz).tz_localize(None).to_period(PERIOD[every])
        starts = periods.start_time.tz_localize(tz, ambiguous=True,
                                                nonexistent="shift_forward")
        return s.groupby(pd.Index(starts.tz_convert("UTC"), name="bucket"))
    # resample bins are absolute, aligned on the local midnight of the first day
    return s.tz_convert(tz).resample(FIXED[every])


def tidy(ref: pd.DataFrame) -> pd.DataFrame:
    ref = ref[ref["count"] > 0].copy()
    ref.index = pd.DatetimeIndex(ref.index).tz_convert("UTC")
    ref.index.name = "bucket"
    ref["count"] = ref["count"].astype("int64")
    return ref


def reference_instant(ts: pd.DatetimeIndex, values: np.ndarray, every: str,
                      tz: str) -> pd.DataFrame:
    g = grouped(pd.Series(values, index=ts).sort_index(), every, tz)
    return tidy(pd.DataFrame({"mean": g.mean(), "min": g.min(), "max": g.max(),  # type: ignore[attr-defined]
                              "first": g.first(), "last": g.last(), "count": g.count()}))  # type: ignore[attr-defined]


def reference_counter(ts: pd.DatetimeIndex, values: np.ndarray, every: str,
                      tz: str) -> pd.DataFrame:
    s = pd.Series(values, index=ts).sort_index()
    prev = s.shift()
    diff = s - prev
    rise = np.where(diff >= 0, diff, np.where((s >= 0) & (s <= prev - s), s, 0.0))
    # right-closed: a rise ending on a bucket edge belongs to the bucket before it
    rises = pd.Series(rise, index=s.index - pd.Timedelta(microseconds=1)).iloc[1:]
    g = grouped(rises, every, tz)
    return tidy(pd.DataFrame({"consumption": g.sum(), "count": g.count()}))  # type: ignore[attr-defined]


def ours(hub: Hub, every: str, tz: str, columns: list[str], channel: str = "x"
         ) -> pd.DataFrame:
    result = hub.aggregate(device="d", channel=channel, every=every, tz=tz)
    result["bucket"] = result["bucket"].dt.tz_convert("UTC")
    return result.set_index("bucket")[columns]


timestamps = st.lists(st.integers(min_value=0, max_value=6 * 24 * 60 - 1), min_size=1,
                      max_size=150, unique=True)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                        HealthCheck.function_scoped_fixture])
@given(minutes=timestamps, start=st.sampled_from(WINDOW_STARTS), tz=st.sampled_from(ZONES),
       every=st.sampled_from(["15min", "hour", "day", "week", "month", "year"]),
       data=st.data())
def test_instant_aggregates_equal_pandas(hub: Hub, new_channel: Callable[[], str],
                                         minutes: list[int], start: str, tz: str, every: str,
                                         data: st.DataObject) -> None:
    ts = pd.DatetimeIndex(pd.Timestamp(start, tz="UTC") + pd.to_timedelta(minutes, "min"))
    values = np.array(data.draw(st.lists(
        st.floats(-50, 50, allow_nan=False, allow_infinity=False),
        min_size=len(ts), max_size=len(ts))))
    channel = new_channel()
    write_series(hub, ts, values, "instant", unit="°C", channel=channel)
    got = ours(hub, every, tz, INSTANT_COLUMNS, channel)
    expected = reference_instant(ts, values, every, tz)
    pd.testing.assert_frame_equal(got, expected, check_dtype=False, check_freq=False,
                                  check_index_type=False, rtol=1e-9, atol=1e-9)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                        HealthCheck.function_scoped_fixture])
@given(minutes=timestamps, start=st.sampled_from(WINDOW_STARTS), tz=st.sampled_from(ZONES),
       every=st.sampled_from(["15min", "hour", "day", "week", "month"]), data=st.data())
def test_counter_consumption_equals_pandas(hub: Hub, new_channel: Callable[[], str],
                                           minutes: list[int], start: str, tz: str,
                                           every: str, data: st.DataObject) -> None:
    """Random rises with resets (to near zero) and glitches (small falls) and gaps."""
    ts = pd.DatetimeIndex(pd.Timestamp(start, tz="UTC")
                          + pd.to_timedelta(sorted(minutes), "min"))
    steps = data.draw(st.lists(st.one_of(
        st.floats(0, 5, allow_nan=False),  # normal use
        st.just(-1e9),  # a reset: the register restarts at a small value
        st.floats(-0.5, 0, allow_nan=False)),  # a glitch: a small fall
        min_size=len(ts), max_size=len(ts)))
    values, level = [], 1000.0
    for step in steps:
        level = float(np.round(step / 10 if step == -1e9 else level + step, 6)) \
            if step != -1e9 else 0.25
        values.append(level)
    array = np.array(values)
    channel = new_channel()
    write_series(hub, ts, array, "counter", channel=channel)
    got = ours(hub, every, tz, ["consumption", "count"], channel)
    expected = reference_counter(ts, array, every, tz)
    assert (got["consumption"] >= 0).all()
    pd.testing.assert_frame_equal(got, expected, check_dtype=False, check_freq=False,
                                  check_index_type=False, rtol=1e-9, atol=1e-9)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                        HealthCheck.function_scoped_fixture])
@given(minutes=st.lists(st.integers(0, 299 * 365 * 24 * 60), min_size=2, max_size=40,
                        unique=True),
       # zones whose offsets since 1900 are whole quarter hours, as bucketing assumes (the
       # local mean times of the 19th century are not)
       tz=st.sampled_from(["UTC", "America/New_York", "Australia/Adelaide"]),
       every=st.sampled_from(["hour", "day", "month", "year"]),
       rises=st.lists(st.floats(0, 5, allow_nan=False), min_size=40, max_size=40))
def test_a_counter_spanning_centuries_equals_pandas(hub: Hub, new_channel: Callable[[], str],
                                                    minutes: list[int], tz: str, every: str,
                                                    rises: list[float]) -> None:
    """A few readings from 1900 to 2199: buckets are found per reading (a grid of edges
    over three centuries would take 10 M cells and most of a gigabyte)."""
    ts = pd.DatetimeIndex(pd.Timestamp("1900-01-02", tz="UTC")
                          + pd.to_timedelta(sorted(minutes), "min"))
    array = 1000.0 + np.cumsum(np.round(rises[:len(ts)], 6))
    channel = new_channel()
    write_series(hub, ts, array, "counter", channel=channel)
    got = ours(hub, every, tz, ["consumption", "count"], channel)
    expected = reference_counter(ts, array, every, tz)
    pd.testing.assert_frame_equal(got, expected, check_dtype=False, check_freq=False,
                                  check_index_type=False, rtol=1e-9, atol=1e-9)


def test_two_readings_four_centuries_apart_cost_no_grid(memory_hub: Hub) -> None:
    ts = pd.DatetimeIndex(["1800-01-02T00:00Z", "2199-12-01T00:00Z"])
    write_series(memory_hub, ts, np.array([1.0, 3.5]), "counter")
    tracemalloc.start()
    try:
        got = ours(memory_hub, "15min", "UTC", ["consumption", "count"])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert got.to_dict("records") == [{"consumption": 2.5, "count": 1}]
    assert got.index[0] == pd.Timestamp("2199-11-30T23:45Z")
    assert peak < 20_000_000, peak  # a 15-minute grid over the span: 14 M cells, ~750 MB


@pytest.mark.parametrize(
    ("tz", "first_day", "expected"),
    [
        ("Europe/Amsterdam", "2024-10-26", [24.0, 25.0, 24.0]),
        ("Europe/Amsterdam", "2024-03-30", [24.0, 23.0, 24.0]),
        ("America/New_York", "2024-11-02", [24.0, 25.0, 24.0]),
        ("America/New_York", "2024-03-09", [24.0, 23.0, 24.0]),
    ],
)
def test_delta_sums_over_dst_days(memory_hub: Hub, tz: str, first_day: str,
                                  expected: list[float]) -> None:
    start = pd.Timestamp(first_day, tz=tz)
    end = start + pd.DateOffset(days=3)
    ts = pd.date_range(start.tz_convert("UTC"), end.tz_convert("UTC"), freq="h",
                       inclusive="left")
    write_series(memory_hub, ts, np.ones(len(ts)), "delta", unit="kWh")
    result = memory_hub.aggregate(every="1d", tz=tz)
    assert result["sum"].tolist() == expected
    assert [b.isoformat()[:10] for b in result["bucket"]] == [
        str((start + pd.DateOffset(days=i)).date()) for i in range(3)]
    hours = (result["bucket_end"] - result["bucket"]).dt.total_seconds() / 3600
    assert hours.tolist() == expected


def test_hourly_buckets_on_the_25_hour_day_stay_distinct(memory_hub: Hub) -> None:
    ts = pd.date_range("2024-10-26 22:00", "2024-10-27 23:00", freq="15min", tz="UTC",
                       inclusive="left")
    write_series(memory_hub, ts, np.arange(len(ts), dtype=float), "instant", unit="°C")
    result = memory_hub.aggregate(every="hour", tz="Europe/Amsterdam")
    assert len(result) == 25
    assert (result["count"] == 4).all()
    local_hours = [b.strftime("%H%z") for b in result["bucket"]]
    assert local_hours[2:4] == ["02+0200", "02+0100"]  # 02:00 twice, an hour apart


def test_zone_offsets_change_on_the_very_second(memory_hub: Hub) -> None:
    # Lord Howe moves from +10:30 to +11:00 at 2023-09-30 15:30:00 UTC. Readings with
    # fractions of a second once put the change up to a second late, so a reading a quarter
    # second after it was bucketed with the old offset (local 02:00 instead of 02:30).
    change = 1696087800 * 1_000_000
    transitions = offset_transitions("Australia/Lord_Howe", change - 3 * 86_400_000_000 + 500_000,
                                     change + 86_400_000_000)
    assert [at for at, _ in transitions[1:]] == [change]
    assert [offset // 60_000_000 for _, offset in transitions] == [630, 660]
    ts = pd.DatetimeIndex(["2023-09-30 15:29:59.5", "2023-09-30 15:30:00.25"], tz="UTC")
    write_series(memory_hub, ts, np.array([1.0, 2.0]), "instant", unit="°C")
    result = memory_hub.aggregate(every="1h", tz="Australia/Lord_Howe")
    # local 01:59:59.5 (+10:30) is in the hour from 14:30 UTC; local 02:30:00.25 (+11) in
    # the hour from 15:00 UTC (local 02:00, which the clocks skipped, begins it)
    assert [b.isoformat() for b in result["bucket"].dt.tz_convert("UTC")] == [
        "2023-09-30T14:30:00+00:00", "2023-09-30T15:00:00+00:00"]
    assert result["mean"].tolist() == [1.0, 2.0]


def test_counter_reset_never_counts_negative(memory_hub: Hub) -> None:
    ts = pd.date_range("2024-01-01 01:00", periods=5, freq="h", tz="UTC")
    write_series(memory_hub, ts, np.array([10.0, 12.0, 15.0, 1.0, 3.0]), "counter")
    result = memory_hub.aggregate(every="1d")
    # 2 + 3, then the register restarted at 0: + 1, then + 2
    assert result["consumption"].tolist() == [8.0]


def test_counter_replacement_with_high_start_is_not_a_spike(memory_hub: Hub) -> None:
    ts = pd.date_range("2024-01-01 01:00", periods=4, freq="h", tz="UTC")
    write_series(memory_hub, ts, np.array([1000.0, 1005.0, 600.0, 610.0]), "counter")
    # 1005 -> 600 is a fall but not a restart near zero: it adds nothing
    assert memory_hub.aggregate(every="1d")["consumption"].tolist() == [15.0]


def test_counter_with_a_gap_and_bucket_edges(memory_hub: Hub) -> None:
    ts = pd.DatetimeIndex(["2024-01-01 00:00", "2024-01-01 12:00", "2024-01-03 00:00",
                           "2024-01-03 06:00"], tz="UTC")
    write_series(memory_hub, ts, np.array([100.0, 110.0, 130.0, 131.0]), "counter")
    result = memory_hub.aggregate(every="1d")
    # the rise ending exactly at 3 January 00:00 closes 2 January
    assert result["consumption"].tolist() == [10.0, 20.0, 1.0]
    assert [b.day for b in result["bucket"]] == [1, 2, 3]
    from_noon = memory_hub.aggregate(every="1d", start="2024-01-01 12:00")
    # the reading at the start is the base of the first rise
    assert from_noon["consumption"].tolist() == [20.0, 1.0]


def test_unit_conversion_of_aggregates(memory_hub: Hub) -> None:
    ts = pd.date_range("2024-01-01", periods=4, freq="h", tz="UTC")
    write_series(memory_hub, ts, np.array([0.0, 1.0, 2.0, 4.0]), "counter")
    result = memory_hub.aggregate(every="1d", unit="MJ")
    assert result["consumption"].tolist() == pytest.approx([14.4])
    assert result["unit"].tolist() == ["MJ"]


def test_functions_must_fit_the_kind(memory_hub: Hub) -> None:
    ts = pd.date_range("2024-01-01", periods=4, freq="h", tz="UTC")
    write_series(memory_hub, ts, np.arange(4.0), "counter")
    with pytest.raises(meterhub.InputError, match="does not apply to counter"):
        memory_hub.aggregate(every="1d", fn="mean")
    with pytest.raises(meterhub.InputError, match="unknown bucket size"):
        memory_hub.aggregate(every="fortnight")
    with pytest.raises(meterhub.InputError, match="unknown time zone"):
        memory_hub.aggregate(every="1d", tz="Mars/Olympus")
    with pytest.raises(meterhub.UnitError):
        memory_hub.aggregate(every="1d", unit="degC")


def test_errors_count_sensor_errors_per_bucket_and_only_when_asked(memory_hub: Hub) -> None:
    """By hand: hourly temperature readings at :00, :20, :40 on 1 Jan 2024, with sensor
    errors at 00:30 (beside good readings), 02:10 and 02:50 (all of hour 2: its good
    readings are left out) and none in hour 1; a counter with an error at 01:00, an edge,
    which closes hour 0 as a rise there would."""
    day = pd.Timestamp("2024-01-01", tz="UTC")
    good = [day + pd.Timedelta(minutes=m) for m in (0, 20, 40, 60, 80, 100)]
    errors = [day + pd.Timedelta(minutes=m) for m in (30, 130, 170)]
    memory_hub.write(pd.DataFrame(
        {"source": "s", "device": "d", "channel": "t", "ts": good + errors,
         "value": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0] + [None] * 3, "unit": "degC",
         "kind": "instant", "quality": ["ok"] * 6 + ["sensor_error"] * 3}))
    meter = [day + pd.Timedelta(minutes=m) for m in (0, 30, 90, 60)]
    memory_hub.write(pd.DataFrame(
        {"source": "s", "device": "m", "channel": "e", "ts": meter,
         "value": [10.0, 11.0, 13.0, None], "unit": "kWh", "kind": "counter",
         "quality": ["ok"] * 3 + ["sensor_error"]}))
    temp = memory_hub.aggregate(device="d", every="1h", fn=["mean", "count", "errors"],
                                unit="degF")
    assert temp["bucket"].dt.hour.tolist() == [0, 1, 2]
    assert temp["errors"].tolist() == [1, 0, 2]  # a count: never converted
    assert temp["count"].tolist() == [3, 3, 0]
    assert temp["mean"].tolist()[:2] == pytest.approx([2.0 * 1.8 + 32, 5.0 * 1.8 + 32])
    assert pd.isna(temp["mean"].iloc[2])
    # without errors asked: the answer as before, hour 2 not there at all
    plain = memory_hub.aggregate(device="d", every="1h")
    assert "errors" not in plain.columns
    assert plain["count"].tolist() == [3, 3]
    counter = memory_hub.aggregate(device="m", every="1h",
                                   fn=["consumption", "count", "errors"])
    assert counter["consumption"].tolist() == [1.0, 2.0]
    assert counter["errors"].tolist() == [1, 0]
    # the kind's own functions still fit it; errors fits every kind
    assert memory_hub.aggregate(every="1h", fn="errors")["errors"].sum() == 4


def test_a_counters_errors_come_from_the_readings_its_consumption_does(
        memory_hub: Hub) -> None:
    """Consumption counts the readings in (start, end] (a bucket closes on its end): errors
    at exactly ``start`` and at exactly ``end`` count as those readings would, the first in
    no bucket of the range, the second in the range's last bucket. By hand: a register
    every 30 minutes on 1 Jan 2024, errors at 00:00 and 02:00, asked for 00:00 to 02:00."""
    day = pd.Timestamp("2024-01-01", tz="UTC")
    times = [day + pd.Timedelta(minutes=m) for m in (0, 30, 60, 90, 120, 150)]
    memory_hub.write(pd.DataFrame(
        {"source": "s", "device": "m", "channel": "e", "ts": times,
         "value": [None, 1.0, 2.0, 4.0, None, 7.0], "unit": "kWh", "kind": "counter",
         "quality": ["sensor_error", "ok", "ok", "ok", "sensor_error", "ok"]}))
    got = memory_hub.aggregate(device="m", every="1h", start=day,
                               end=day + pd.Timedelta(hours=2),
                               fn=["consumption", "errors"])
    assert got["bucket"].dt.hour.tolist() == [0, 1]  # nothing before the range
    assert got["errors"].tolist() == [0, 1]  # 02:00 closes hour 1
    assert got["consumption"].tolist() == [1.0, 2.0]  # 00:30->01:00, 01:00->01:30


def test_a_zones_changes_asked_again_come_from_memory_unchanged_by_callers() -> None:
    """The changes of a range are kept: asked again, the same answer, from memory
    (centuries cost 80 ms to find), and a caller that alters its list alters no later
    answer."""
    start, end = -5_364_662_400_000_000, 7_258_118_399_999_999  # 1800 to 2200
    first = offset_transitions("Europe/Amsterdam", start, end)
    assert len(first) > 300
    assert first[0] == (start, 1_172_000_000)  # +0:19:32, Amsterdam's mean time
    first.append((end, 0))
    hits = timebase._offset_transitions.cache_info().hits
    again = offset_transitions("Europe/Amsterdam", start, end)
    assert timebase._offset_transitions.cache_info().hits == hits + 1
    assert again == first[:-1]

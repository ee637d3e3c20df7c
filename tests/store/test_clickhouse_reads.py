"""How the ClickHouse store reads aggregates fast and still exactly: FINAL only on
partitions held in several parts (looked up in system.parts, checked again after the
query), and counter consumption from the heads of runs of stored order that the server
finds. On each ClickHouse backend: one 18.16 server, two 18.16 shards, and current
ClickHouse (chdb)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import meterhub
from meterhub.errors import StoreError
from meterhub.hub import Hub
from meterhub.store import clickhouse as clickhouse_store
from meterhub.store.clickhouse_http import ClickHouseClient
from meterhub.store.clickhouse_parts import (
    AVERAGE_MONTH_US,
    PARTITION_KEY,
    RETRIES,
    PartsWatch,
    partition_of,
    partition_span,
)
from meterhub.store.reads import MAX_US, MIN_US
from tests.store.test_aggregate import reference_counter, reference_instant, write_series

CLICKHOUSE_BACKENDS = ("clickhouse", "clickhouse-2shards", "chdb")


@pytest.fixture(params=CLICKHOUSE_BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def fallbacks(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counter aggregates that fell back from the runs to all rows in NumPy."""
    calls: list[int] = []
    original = clickhouse_store.counter_sums

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(clickhouse_store, "counter_sums", counted)
    return calls


def client_of(hub: Hub) -> ClickHouseClient:
    return hub.store._client  # type: ignore[attr-defined,no-any-return]


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(times=st.lists(st.integers(MIN_US, MAX_US - 1), min_size=1, max_size=40)
       | st.lists(st.sampled_from([-1, 0, 1, 4_102_444_799_999_999, 4_102_444_800_000_000,
                                   -2_629_746_000_000, -2_629_746_000_001,
                                   -2_629_745_999_999]), min_size=1, max_size=8))
def test_partitions_are_what_the_server_makes_them(hub: Hub, times: list[int]) -> None:
    answered = client_of(hub).query_rows(
        f"SELECT ts, {PARTITION_KEY} FROM (SELECT arrayJoin(["
        f"{', '.join(f'toInt64({t})' for t in times)}]) AS ts)")
    for ts, partition in answered:
        assert partition_of(int(ts)) == int(partition)
        start, end = partition_span(int(partition))
        assert start <= int(ts) < end
        assert partition_of(start) == partition_of(end - 1) == int(partition)
        assert partition_of(start - 1) != int(partition) != partition_of(end)


def counters(hub: Hub, channel: str) -> tuple[pd.DatetimeIndex, np.ndarray]:
    """Three weeks of a 15-minute counter with a reset and a meter swap, over a DST change
    and a month's end, written in two halves."""
    ts = pd.date_range("2024-03-20", "2024-04-10", freq="15min", tz="UTC", inclusive="left")
    values = 1000.0 + np.cumsum(np.random.default_rng(3).gamma(1.0, 0.2, len(ts)))
    values[500:] -= values[500] - 0.5  # a reset to near zero
    values[1200:] += 5000.0  # a new meter, starting high
    half = len(ts) // 2
    write_series(hub, ts[:half], values[:half], "counter", channel=channel)
    write_series(hub, ts[half:], values[half:], "counter", channel=channel)
    return ts, values


def ours(hub: Hub, channel: str, every: str, tz: str, **window: Any) -> pd.DataFrame:
    got = hub.aggregate(device="d", channel=channel, every=every, tz=tz,
                        fn=["consumption", "count"], **window)
    got["bucket"] = got["bucket"].dt.tz_convert("UTC")
    return got.set_index("bucket")[["consumption", "count"]]


@pytest.mark.parametrize("block_rows", [None, 7])
def test_counters_are_summed_along_stored_runs(hub: Hub, fallbacks: list[int],
                                               block_rows: int | None) -> None:
    ts, values = counters(hub, "c")
    other = values[::-1].copy()  # a second series: runs change series inside blocks
    write_series(hub, ts, other, "counter", channel="c2")
    hub.store.compact()
    if block_rows:  # blocks of 7 rows: a run breaks every few rows and must join again
        hub.store._run_settings["max_block_size"] = block_rows  # type: ignore[attr-defined]
    for every, tz in (("day", "Europe/Amsterdam"), ("hour", "Asia/Kolkata"),
                      ("month", "America/New_York")):
        want = reference_counter(ts, values, every, tz)
        got = ours(hub, "c", every, tz)
        pd.testing.assert_frame_equal(got, want[["consumption", "count"]], rtol=1e-9,
                                      check_names=False, check_freq=False)
        both = hub.aggregate(device="d", channel=["c", "c2"], every=every, tz=tz,
                             fn=["consumption", "count"])
        second = both[both["channel"] == "c2"].set_index("bucket")[["consumption", "count"]]
        second.index = second.index.tz_convert("UTC")
        pd.testing.assert_frame_equal(second, reference_counter(ts, other, every, tz)[
            ["consumption", "count"]], rtol=1e-9, check_names=False, check_freq=False)
    # with a start: the first rise comes from the reading before it
    start = pd.Timestamp("2024-03-29 06:07", tz="UTC")
    later = ts > start
    base = ts[~later][-1:]
    want = reference_counter(base.append(ts[later]), np.r_[values[~later][-1], values[later]],
                             "day", "UTC")
    got = ours(hub, "c", "day", "UTC", start=start)
    pd.testing.assert_frame_equal(got, want[["consumption", "count"]], rtol=1e-9,
                                  check_names=False, check_freq=False)
    assert fallbacks == []  # every answer came from the runs


def test_a_counter_without_resets_is_summed_from_differences(
        hub: Hub, fallbacks: list[int], monkeypatch: pytest.MonkeyPatch) -> None:
    """Readings that stay within a factor two of the one before: on 18.16 the values before
    the heads come from differences, proven exact, in one query; with a reset (a value
    before that a difference does not pin down) the heads are asked for again with the
    values' bits. Current servers say the value before with a window function, once."""
    ts = pd.date_range("2024-03-20", "2024-04-10", freq="15min", tz="UTC", inclusive="left")
    values = 1000.0 + np.cumsum(np.random.default_rng(5).gamma(1.0, 0.2, len(ts)))
    write_series(hub, ts, values, "counter", channel="smooth")
    reset = values.copy()
    reset[900:] -= reset[900] - 0.25
    write_series(hub, ts, reset, "counter", channel="reset")
    hub.store.compact()
    asked: list[bool] = []
    original = clickhouse_store.ClickHouseStore._run_heads

    def run_heads(store: Any, *args: Any) -> Any:
        asked.append(args[-1])
        return original(store, *args)

    monkeypatch.setattr(clickhouse_store.ClickHouseStore, "_run_heads", run_heads)
    windows = hub.store._heads == "windows"  # type: ignore[attr-defined]
    for channel, series, queries in (("smooth", values, [windows]),
                                     ("reset", reset, [windows] + [True] * (not windows))):
        asked.clear()
        got = ours(hub, channel, "day", "Europe/Amsterdam")
        pd.testing.assert_frame_equal(got, reference_counter(ts, series, "day",
                                                             "Europe/Amsterdam")[
            ["consumption", "count"]], rtol=1e-9, check_names=False, check_freq=False)
        assert asked == queries
    assert fallbacks == []


def test_a_server_between_the_tested_ones_sums_counters_from_all_rows(
        hub: Hub, fallbacks: list[int]) -> None:
    """19.x to early 21.x have no window functions, and their query plans may evaluate a
    block's functions after a filter: counters come from all rows there."""
    ts, values = counters(hub, "c")
    hub.store._heads = None  # type: ignore[attr-defined]
    got = ours(hub, "c", "day", "Europe/Amsterdam")
    pd.testing.assert_frame_equal(got, reference_counter(ts, values, "day", "Europe/Amsterdam")[
        ["consumption", "count"]], rtol=1e-9, check_names=False, check_freq=False)
    assert fallbacks == [1]


def test_rewrites_not_yet_merged_are_read_as_replaced(hub: Hub, fallbacks: list[int],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    ts, values = counters(hub, "c")
    hub.store.compact()
    # rewrite two days in March: new parts beside the merged one (April stays one part)
    rewritten = values.copy()
    for day in ("2024-03-25", "2024-03-30"):
        picked = (ts >= pd.Timestamp(day, tz="UTC")) & (ts < pd.Timestamp(day, tz="UTC")
                                                        + pd.Timedelta(days=1))
        rewritten[picked] += 0.25
        write_series(hub, ts[picked], rewritten[picked], "counter", channel="c")
    temperatures = np.sin(np.arange(len(ts)) / 50.0) * 10
    write_series(hub, ts, temperatures, "instant", unit="°C", channel="t")
    write_series(hub, ts[:100], temperatures[:100] + 1.0, "instant", unit="°C", channel="t")
    temperatures[:100] += 1.0
    reads: list[tuple[str | None, str | None]] = []
    original = PartsWatch.exact

    def exact(watch: PartsWatch, lo: int, hi: int, run: Callable[..., Any],
              **options: Any) -> Any:
        def seen(plain: str | None, final: str | None, guarded: bool) -> Any:
            reads.append((plain, final))
            return run(plain, final, guarded)

        return original(watch, lo, hi, seen, **options)

    monkeypatch.setattr(PartsWatch, "exact", exact)
    for every, tz in (("day", "Europe/Amsterdam"), ("hour", "UTC")):
        want = reference_counter(ts, rewritten, every, tz)
        pd.testing.assert_frame_equal(ours(hub, "c", every, tz),
                                      want[["consumption", "count"]], rtol=1e-9,
                                      check_names=False, check_freq=False)
        got = hub.aggregate(device="d", channel="t", every=every, tz=tz,
                            fn=["mean", "min", "max", "first", "last", "count"])
        got["bucket"] = got["bucket"].dt.tz_convert("UTC")
        pd.testing.assert_frame_equal(
            got.set_index("bucket")[["mean", "min", "max", "first", "last", "count"]],
            reference_instant(ts, temperatures, every, tz), rtol=1e-9, check_names=False,
            check_freq=False)
    assert fallbacks == []  # March, in several parts, was read with FINAL, in runs
    assert reads  # and April plainly, in the same queries
    assert all(plain is not None and plain != "1" and final is not None
               for plain, final in reads)


def test_a_write_during_a_read_makes_it_read_again(hub: Hub, monkeypatch: pytest.MonkeyPatch,
                                                  fallbacks: list[int]) -> None:
    ts, values = counters(hub, "c")
    hub.store.compact()
    reads: list[list[tuple[str | None, str | None]]] = []  # the runs of each exact read
    original = PartsWatch.exact

    def exact(watch: PartsWatch, lo: int, hi: int, run: Callable[..., Any],
              **options: Any) -> Any:
        reads.append([])

        def racing(plain: str | None, final: str | None, guarded: bool) -> Any:
            answer = run(plain, final, guarded)
            reads[-1].append((plain, final))
            if len(reads) == len(reads[0]) == 1:  # a rewrite lands between the query and
                write_series(hub, ts[10:20], values[10:20] + 100.0, "counter",  # the look
                             channel="c")  # after it
            return answer

        return original(watch, lo, hi, racing, **options)

    monkeypatch.setattr(PartsWatch, "exact", exact)
    got = ours(hub, "c", "day", "UTC")
    runs = reads[0]
    assert len(runs) == 2  # the first answer was dropped: its months changed under it
    assert runs[0] == ("1", None)
    assert runs[1][1] is not None  # then March, in several parts, was read with FINAL
    # on 18.16, the reset's value before is asked for again, exactly: as March is now
    windows = hub.store._heads == "windows"  # type: ignore[attr-defined]
    assert reads[1:] == ([] if windows else [[runs[1]]])
    rewritten = values.copy()
    rewritten[10:20] += 100.0
    pd.testing.assert_frame_equal(got, reference_counter(ts, rewritten, "day", "UTC")[
        ["consumption", "count"]], rtol=1e-9, check_names=False, check_freq=False)
    assert fallbacks == []


def test_a_read_the_parts_keep_changing_under_ends_all_final(
        hub: Hub, monkeypatch: pytest.MonkeyPatch) -> None:
    march_april, values = counters(hub, "c")
    may = pd.date_range("2024-05-01", periods=200, freq="15min", tz="UTC")
    ts = march_april.append(may)
    rewritten = np.r_[values, values[-1] + np.arange(1, 201) * 0.5]
    write_series(hub, may, rewritten[-200:], "counter", channel="c")
    hub.store.compact()
    reads: list[list[tuple[str | None, str | None]]] = []  # the runs of each exact read
    original = PartsWatch.exact
    # each time, a write into a month read plainly: March, then April, then May
    months = iter([slice(10, 20), slice(1500, 1510), slice(len(ts) - 50, len(ts) - 40)])

    def exact(watch: PartsWatch, lo: int, hi: int, run: Callable[..., Any],
              **options: Any) -> Any:
        reads.append([])

        def racing(plain: str | None, final: str | None, guarded: bool) -> Any:
            answer = run(plain, final, guarded)
            reads[-1].append((plain, final))
            picked = next(months, None)
            if picked is not None:
                rewritten[picked] += 1.0
                write_series(hub, ts[picked], rewritten[picked], "counter", channel="c")
            return answer

        return original(watch, lo, hi, racing, **options)

    monkeypatch.setattr(PartsWatch, "exact", exact)
    got = ours(hub, "c", "day", "UTC")
    runs = reads[0]
    assert len(runs) == RETRIES + 1
    assert runs[-1] == (None, "1")  # after RETRIES runs, everything with FINAL
    pd.testing.assert_frame_equal(got, reference_counter(ts, rewritten, "day", "UTC")[
        ["consumption", "count"]], rtol=1e-9, check_names=False, check_freq=False)


def hidden_time(near: pd.Timestamp) -> int:
    """A time in year ~102,000 whose partition number is that of ``near``'s month: the
    parts cannot tell a reading there is not of that month."""
    month = partition_of(near.value // 1000)
    stray = (month + 1_000_000) * AVERAGE_MONTH_US + 5
    assert stray > MAX_US
    assert partition_of(stray) == month
    return stray


def plant_stray(hub: Hub, channel: str, ts: int, value: float) -> None:
    """A reading of ``channel`` at epoch µs ``ts``, planted past the store's checks."""
    client = client_of(hub)
    (series,), = client.query_rows(
        f"SELECT DISTINCT series_id FROM channels WHERE channel = '{channel}'")
    client.execute(f"INSERT INTO readings (series_id, ts, value, quality, validated, version) "
                   f"VALUES ({series}, {ts}, {value}, 'ok', 0, 1)",
                   {"insert_distributed_sync": 1} if "cluster=" in hub.store.url else None)


def test_the_times_a_reading_may_have_are_asked_for_only_while_one_strays(
        hub: Hub, monkeypatch: pytest.MonkeyPatch) -> None:
    ts, values = counters(hub, "c")
    write_series(hub, ts, np.sin(np.arange(len(ts)) / 50.0), "instant", unit="°C",
                 channel="t")
    hub.store.compact()
    client = client_of(hub)
    sent: list[str] = []
    query_arrow, query_rows = client.query_arrow, client.query_rows
    monkeypatch.setattr(client, "query_arrow",
                        lambda sql, *a, **k: sent.append(sql) or query_arrow(sql, *a, **k))
    counted: list[str] = []  # the counts that look for strays
    monkeypatch.setattr(client, "query_rows", lambda sql, *a, **k: (
        counted.append(sql) if "NOT (ts >=" in sql else None) or query_rows(sql, *a, **k))
    want = reference_counter(ts, values, "day", "UTC")[["consumption", "count"]]
    temperatures = hub.aggregate(device="d", channel="t", every="day", fn=["max"])

    def check(guarded: bool | None) -> None:
        sent.clear()
        pd.testing.assert_frame_equal(ours(hub, "c", "day", "UTC"), want, rtol=1e-9,
                                      check_names=False, check_freq=False)
        # the same answer of the delta/instant kind: a stray never shows
        pd.testing.assert_frame_equal(
            hub.aggregate(device="d", channel="t", every="day", fn=["max"]), temperatures)
        # every read of the readings named the range, or none did
        reads = [sql for sql in sent if "FROM readings" in sql]
        assert len(reads) >= 2
        if guarded is not None:
            assert all((f"ts < {MAX_US}" in sql) == guarded for sql in reads), reads

    check(guarded=False)  # nothing strays: no read names the range
    assert len(counted) == 1
    check(guarded=False)  # (proven once for these parts)
    assert len(counted) == 1
    plant_stray(hub, "c", hidden_time(ts[0]), 1e12)
    plant_stray(hub, "t", hidden_time(ts[-1]), 1e12)
    # (the first read after may go without, as the parts last seen were proven: the look
    # after it finds new ones, and it is read again)
    check(guarded=None)
    check(guarded=True)


def guarded_runs(monkeypatch: pytest.MonkeyPatch, after_first: Callable[[], None]
                 ) -> list[list[bool]]:
    """Whether each run of each exact read named the range (filled in as reads run);
    ``after_first`` runs once, after the first run of the first read."""
    runs: list[list[bool]] = []
    original = PartsWatch.exact

    def exact(watch: PartsWatch, lo: int, hi: int, run: Callable[..., Any],
              **options: Any) -> Any:
        runs.append([])

        def racing(plain: str | None, final: str | None, guarded: bool) -> Any:
            answer = run(plain, final, guarded)
            runs[-1].append(guarded)
            if len(runs) == len(runs[0]) == 1:
                after_first()
            return answer

        return original(watch, lo, hi, racing, **options)

    monkeypatch.setattr(PartsWatch, "exact", exact)
    return runs


def test_a_stray_landing_during_a_read_without_the_range_makes_it_read_again(
        hub: Hub, monkeypatch: pytest.MonkeyPatch) -> None:
    ts, values = counters(hub, "c")
    hub.store.compact()
    ours(hub, "c", "day", "UTC")  # the parts proven free of strays
    # planted after the proof, seen by the look after the read, in a partition of 1799,
    # which no read of 1800 on touches: as it might have landed before the read began, only
    # parts that hold no new rows prove the answer
    runs = guarded_runs(monkeypatch, lambda: plant_stray(hub, "c", MIN_US - 10**12, -1e12))
    got = ours(hub, "c", "day", "UTC")
    assert runs[0] == [False, True]
    pd.testing.assert_frame_equal(got, reference_counter(ts, values, "day", "UTC")[
        ["consumption", "count"]], rtol=1e-9, check_names=False, check_freq=False)


def test_a_merge_during_a_read_without_the_range_is_no_reason_to_read_again(
        hub: Hub, monkeypatch: pytest.MonkeyPatch) -> None:
    ts, values = counters(hub, "c")  # March and April, each in two parts (two writes)
    ours(hub, "c", "day", "UTC")  # the parts proven free of strays
    store = hub.store
    table = "readings_local" if "cluster=" in store.url else "readings"

    def merge_march() -> None:  # meanwhile: new parts, no new rows
        for shard in store._shards():  # type: ignore[attr-defined]
            shard.execute(f"OPTIMIZE TABLE {table} PARTITION 202403 FINAL")
            if shard is not client_of(hub):
                shard.close()

    runs = guarded_runs(monkeypatch, merge_march)
    before = store._parts.snapshot()  # type: ignore[attr-defined]
    got = ours(hub, "c", "day", "UTC")
    assert store._parts.snapshot()[202403] != before[202403]  # type: ignore[attr-defined]
    assert runs[0] == [False]
    pd.testing.assert_frame_equal(got, reference_counter(ts, values, "day", "UTC")[
        ["consumption", "count"]], rtol=1e-9, check_names=False, check_freq=False)


def test_the_reading_before_a_start_is_found_however_far_back(hub: Hub,
                                                             fallbacks: list[int]) -> None:
    """A counter's first rise in a window starts from its last reading before the start:
    an hour back, two years back (after a gap), or none (the series begins inside)."""
    early = pd.DatetimeIndex(["2021-05-01 00:00", "2021-05-01 01:00"], tz="UTC")
    late = pd.date_range("2024-03-01", periods=48, freq="h", tz="UTC")
    values = np.r_[[100.0, 104.0], 110.0 + np.arange(48) * 2.0]
    write_series(hub, early.append(late), values, "counter", channel="gap")
    write_series(hub, late, 5.0 + np.arange(48), "counter", channel="new")
    # (start, the index of the reading before it): 10:00 that day, or 2021's last
    for start, base in ((pd.Timestamp("2024-03-01 10:30", tz="UTC"), 12),
                        (pd.Timestamp("2024-02-01", tz="UTC"), 1)):
        got = ours(hub, "gap", "day", "UTC", start=start)
        kept = late > start
        ts = early.append(late)
        want = reference_counter(ts[[base, *np.flatnonzero(kept) + 2]],
                                 np.r_[values[base], values[2:][kept]], "day", "UTC")
        pd.testing.assert_frame_equal(got, want[["consumption", "count"]], rtol=1e-9,
                                      check_names=False, check_freq=False)
        # a series with nothing before the start: its first reading is its base
        fresh = ours(hub, "new", "day", "UTC", start=pd.Timestamp("2024-02-01", tz="UTC"))
        pd.testing.assert_frame_equal(fresh, reference_counter(
            late, 5.0 + np.arange(48), "day", "UTC")[["consumption", "count"]], rtol=1e-9,
            check_names=False, check_freq=False)
    assert fallbacks == []


def test_a_store_of_the_partition_key_before_schema_2_is_refused(hub: Hub) -> None:
    """Schema 1 divided times before 1970 as unsigned on 18.16 (other partitions than
    current versions make): such a store is refused, not read with the wrong spans."""
    hub.store._insert(  # type: ignore[attr-defined]  # newer than the store's own row
        "meta", pa.table({"key": ["schema_version"], "value": ["1"]}),
        {"key": "String", "value": "String"}, version=2**63)
    with pytest.raises(StoreError, match="holds a meterhub store of schema 1, this meterhub "
                                         "knows 2"):
        meterhub.open(hub.store.url)  # type: ignore[attr-defined]

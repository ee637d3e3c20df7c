"""`counter_sums_of_heads`: counter consumption from the heads of runs an engine read in
stored order (ClickHouse's runningDifference within blocks) is `counter_sums` over the
rows themselves, to the bit, however the rows fell into blocks; heads that do not prove
their runs join up are refused, never summed."""

from __future__ import annotations

import itertools

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meterhub.store.buckets import bucket_numpy
from meterhub.store.counters import (
    befores_certain,
    counter_sums,
    counter_sums_of_heads,
    with_bases,
)
from meterhub.timebase import offset_transitions, parse_every

MINUTE = 60_000_000
START = 1_711_584_000_000_000  # 2024-03-28, before a DST change in Amsterdam


Row = tuple[int, int, float]  #: (series, epoch µs, value)


def heads_in(blocks: list[list[Row]], every: str, transitions: list[tuple[int, int]],
             numbers: list[int] | None = None) -> pa.Table:
    """What ClickHouseStore._run_heads's SQL gives for rows that arrive in ``blocks`` (each
    in the order given, block i numbered ``numbers[i]``): runningDifference within the
    block, and the rows that break a run or end the block."""
    size = parse_every(every)
    shown: list[dict[str, int | float]] = []
    for index, block in enumerate(blocks):
        for i, (series, t, v) in enumerate(block):
            bucket = int(bucket_numpy(np.array([t - 1], dtype=np.int64), size, transitions)[0])
            if i == 0:
                before_t, before_v, before_series, before_bucket = t, v, series, bucket
            else:
                before_series, before_t, before_v = block[i - 1]
                before_bucket = int(bucket_numpy(np.array([before_t - 1], dtype=np.int64),
                                                 size, transitions)[0])
            fresh = i == 0 or series != before_series
            head = fresh or bucket != before_bucket or v - before_v < 0 or t - before_t <= 0
            end = i == len(block) - 1
            if head or end:
                shown.append({"series_id": series, "ts": t, "value": v,
                              "dt": t - before_t, "before": before_v,
                              "flags": int(fresh) + 2 * int(head) + 4 * int(end),
                              "position": i,
                              "block": index if numbers is None else numbers[index]})
    return pa.Table.from_pylist(shown, schema=HEAD_SCHEMA)


def heads_of(sid: npt.NDArray[np.int64], t: npt.NDArray[np.int64],
             v: npt.NDArray[np.float64], cuts: list[int], every: str,
             transitions: list[tuple[int, int]]) -> pa.Table:
    """`heads_in` for rows sorted by (series, t) read in blocks that end at ``cuts`` (as
    ClickHouse reads a part)."""
    return heads_in(blocks_of(sid, t, v, cuts), every, transitions)


def blocks_of(sid: npt.NDArray[np.int64], t: npt.NDArray[np.int64],
              v: npt.NDArray[np.float64], cuts: list[int]) -> list[list[Row]]:
    rows = list(zip(sid.tolist(), t.tolist(), v.tolist(), strict=True))
    edges = [0, *sorted({c for c in cuts if 0 < c < len(rows)}), len(rows)]
    return [rows[a:b] for a, b in itertools.pairwise(edges) if b > a]


HEAD_SCHEMA = pa.schema([("series_id", pa.int64()), ("ts", pa.int64()),
                         ("value", pa.float64()), ("dt", pa.int64()), ("before", pa.float64()),
                         ("flags", pa.uint8()), ("position", pa.uint64()),
                         ("block", pa.uint64())])


def sums(heads: pa.Table, every: str, transitions: list[tuple[int, int]],
         bases: pa.Table | None = None) -> pa.Table | None:
    return counter_sums_of_heads(heads, bases, parse_every(every), transitions)


VALUES = [0.0, 0.1, 0.5, 2.5, 7.3, 100.0, 1234.567, 1e6, 1e6 + 0.001]

series_rows = st.lists(st.tuples(st.integers(0, 3), st.integers(0, 3000), st.sampled_from(VALUES)),
                       min_size=0, max_size=60)


def sorted_rows(drawn: list[tuple[int, int, float]]
                ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    unique = {(s, minute): value for s, minute, value in drawn}
    keys = sorted(unique)
    sid = np.array([s for s, _ in keys], dtype=np.int64)
    t = np.array([START + minute * MINUTE for _, minute in keys], dtype=np.int64)
    v = np.array([unique[k] for k in keys], dtype=np.float64)
    return sid, t, v


def same(got: pa.Table | None, want: pa.Table) -> None:
    """The same answer to the bit: both sum the same pieces."""
    assert got is not None
    assert got.equals(want), (got.to_pandas(), want.to_pandas())


def amsterdam() -> list[tuple[int, int]]:
    return offset_transitions("Europe/Amsterdam", START - 2 * 86_400 * 10**6,
                              START + 5 * 86_400 * 10**6)


@settings(max_examples=200, deadline=None)
@given(drawn=series_rows, cuts=st.lists(st.integers(1, 60), max_size=12),
       every=st.sampled_from(["15min", "1h", "1d"]), tz=st.sampled_from(
           ["Europe/Amsterdam", "UTC", "Australia/Lord_Howe"]),
       with_base=st.booleans())
def test_runs_sum_to_the_rows_sums(drawn: list[tuple[int, int, float]], cuts: list[int],
                                   every: str, tz: str, with_base: bool) -> None:
    sid, t, v = sorted_rows(drawn)
    transitions = offset_transitions(tz, START - 2 * 86_400 * 10**6, START + 5 * 86_400 * 10**6)
    heads = heads_of(sid, t, v, cuts, every, transitions)
    bases = None
    if with_base:  # a reading before the range for series 0 and 2
        bases = pa.table({"series_id": pa.array([0, 2], pa.int64()),
                          "t": pa.array([START - MINUTE] * 2, pa.int64()),
                          "value": pa.array([3.0, 1e7])})
    want_sid, want_t, want_v = sid, t, v
    if bases is not None:
        want_sid, want_t, want_v = with_bases(sid, t, v, bases)
    same(sums(heads, every, transitions, bases), counter_sums(
        want_sid, want_t, want_v, parse_every(every), transitions))


def test_a_day_of_a_meter_is_its_last_reading_less_the_day_before() -> None:
    """A day counts exactly what the meter's display shows: the day's last reading less
    the last of the day before (the first day: less its first), however it was read."""
    steps = 96 * 3
    t = START + np.arange(1, steps + 1, dtype=np.int64) * 15 * MINUTE
    v = 1234.567 + np.cumsum(np.random.default_rng(3).gamma(1.0, 0.01, steps))
    sid = np.zeros(steps, dtype=np.int64)
    transitions = offset_transitions("UTC", START, START + 4 * 86_400 * 10**6)
    got = counter_sums(sid, t, v, parse_every("1d"), transitions)
    day_ends = v[[95, 191, 287]]
    assert got.column("consumption").to_pylist() == [
        v[95] - v[0], day_ends[1] - day_ends[0], day_ends[2] - day_ends[1]]
    same(sums(heads_of(sid, t, v, [50, 100, 250], "1d", transitions), "1d", transitions), got)


def test_heads_that_do_not_prove_their_runs_are_refused() -> None:
    sid = np.zeros(6, dtype=np.int64)
    t = START + np.arange(6, dtype=np.int64) * MINUTE
    v = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    transitions = offset_transitions("UTC", START, START + 86_400 * 10**6)
    blocks = blocks_of(sid, t, v, [3])
    assert sums(heads_in(blocks, "15min", transitions), "15min", transitions) is not None
    # a row read twice (an unmerged rewrite): two runs overlap
    twice = heads_in([*blocks, blocks[0][:1]], "15min", transitions)
    assert sums(twice, "15min", transitions) is None
    # two blocks under one number: their rows cannot be told apart
    one_number = heads_in(blocks, "15min", transitions, numbers=[4, 4])
    assert sums(one_number, "15min", transitions) is None
    # a block's end not shown: its last rows are not accounted for
    heads = heads_in(blocks, "15min", transitions)
    ends = [flags & 4 for flags in heads.column("flags").to_pylist()]
    assert sums(heads.filter(pa.array([not e for e in ends])), "15min", transitions) is None
    # a fresh row not said to be a head: the flags contradict themselves
    flags = heads.column("flags").to_pylist()
    assert flags[0] == 3
    unheaded = heads.set_column(heads.schema.get_field_index("flags"), "flags",
                                pa.array([1, *flags[1:]], pa.uint8()))
    assert sums(unheaded, "15min", transitions) is None
    # a run read on from a row two runs back (a block that held rows 1-2 and 5-6, with
    # rows 3-4 in another)
    rows = blocks_of(sid, t, v, [])[0]
    interleaved = heads_in([rows[:2] + rows[4:], rows[2:4]], "1d", transitions)
    assert sums(interleaved, "1d", transitions) is None
    # rows out of order within a block
    swapped = heads_in([[rows[0], rows[2], rows[1], *rows[3:]]], "1d", transitions)
    assert sums(swapped, "1d", transitions) is None


@pytest.mark.parametrize("cuts", [[], [1], [2, 4], [3]])
def test_a_reset_across_blocks_counts_as_within_one(cuts: list[int]) -> None:
    sid = np.zeros(5, dtype=np.int64)
    t = START + np.arange(1, 6, dtype=np.int64) * MINUTE
    v = np.array([10.0, 12.0, 15.0, 1.0, 3.0])  # 2 + 3, a restart at 1, + 2
    transitions = offset_transitions("UTC", START, START + 86_400 * 10**6)
    summed = sums(heads_of(sid, t, v, cuts, "1d", transitions), "1d", transitions)
    assert summed is not None
    assert summed.column("consumption").to_pylist() == [8.0]
    assert summed.column("count").to_pylist() == [4]


@settings(max_examples=300, deadline=None)
@given(drawn=st.lists(st.tuples(st.integers(0, 2), st.integers(0, 300),
                                st.sampled_from(VALUES)), max_size=40),
       chunks=st.lists(st.integers(1, 60), max_size=10),
       data=st.data(), every=st.sampled_from(["15min", "1h", "1d"]))
def test_heads_of_any_block_layout_are_right_or_refused(
        drawn: list[tuple[int, int, float]], chunks: list[int], data: st.DataObject,
        every: str) -> None:
    """Rows in sorted chunks that arrive shuffled and joined into blocks in any way (what
    an engine joining or splitting blocks could give), some blocks numbered alike: the
    heads sum right or are refused."""
    sid, t, v = sorted_rows(drawn)
    pieces = data.draw(st.permutations(blocks_of(sid, t, v, chunks)))
    joins = data.draw(st.lists(st.booleans(), min_size=len(pieces), max_size=len(pieces)))
    blocks: list[list[Row]] = []
    for piece, join in zip(pieces, joins, strict=True):
        if join and blocks:
            blocks[-1] = blocks[-1] + piece
        else:
            blocks.append(list(piece))
    numbers = data.draw(st.lists(st.integers(0, 3), min_size=len(blocks),
                                 max_size=len(blocks)) | st.just(list(range(len(blocks)))))
    got = sums(heads_in(blocks, every, amsterdam(), numbers), every, amsterdam())
    if got is not None:
        same(got, counter_sums(sid, t, v, parse_every(every), amsterdam()))


def test_a_row_differenced_across_another_series_is_refused() -> None:
    """One block [s1 02:30, s2 00:06, s1 00:30, s1 02:42]: 02:42 follows 00:30 in the block,
    so its rise is from there, though 02:30 lies between (found by review of the runs
    summed on the server: one of 02:30 and 02:42 summed 21 where 11 is right)."""
    hour = 3_600_000_000
    blocks: list[list[Row]] = [[(1, START + 5 * hour // 2, 10.0), (2, START + hour // 10, 5.0),
                                (1, START + hour // 2, 0.0), (1, START + 27 * hour // 10, 11.0)]]
    transitions = offset_transitions("UTC", START - 10 * hour, START + 100 * hour)
    for every in ("1h", "1d"):
        assert sums(heads_in(blocks, every, transitions), every, transitions) is None


def engine_befores(values: list[float], befores: list[float]) -> pa.Table:
    """Heads whose value before was computed as the 18.16 query does: the value less
    runningDifference's (value less the value before), in doubles."""
    value = np.array(values, dtype=np.float64)
    with np.errstate(over="ignore", invalid="ignore"):  # as the engine: inf, then nan
        before = value - (value - np.array(befores, dtype=np.float64))
    return pa.table({"value": value, "before": before,
                     "position": np.ones(len(value), dtype=np.uint64),
                     "flags": np.full(len(value), 2, dtype=np.uint8)})


finite = st.floats(allow_nan=False, allow_infinity=False)


@settings(max_examples=2000, deadline=None)
@given(value=finite, before=finite | st.sampled_from([0.0, -0.0, 5e-324]))
def test_a_before_said_certain_is_the_value_before(value: float, before: float) -> None:
    heads = engine_befores([value], [before])
    if befores_certain(heads):
        assert heads.column("before")[0].as_py() == before


@pytest.mark.parametrize(("value", "before"), [
    (0.5, 5000.0),  # a reset to near zero
    (1e6, 0.001), (0.001, 1e6),  # a series after one of another magnitude
    (1.0, 0.0), (-1.0, 1.0),
])
def test_befores_that_differences_lose_are_not_certain(value: float, before: float) -> None:
    assert not befores_certain(engine_befores([value], [before]))


@pytest.mark.parametrize(("value", "before"), [
    (1234.567, 1234.5), (0.0, 1e-300), (0.0, 123.0), (-3.0, -2.0), (1e6, 5e5 + 1),
])
def test_befores_near_their_values_are_certain(value: float, before: float) -> None:
    heads = engine_befores([value], [before])
    assert befores_certain(heads)
    assert heads.column("before")[0].as_py() == before


def test_a_zone_offset_of_minutes_and_seconds_counts_each_reading_in_its_own_day() -> None:
    """Amsterdam kept +0:19:32 until 1937 (found by review: its day edges are no quarter
    hours, and summing rises between edges on a quarter-hour grid put a reading at
    1900-01-01 23:45Z, 00:04:32 on 2 January there, in the 1st)."""
    t = (pd.Timestamp("1900-01-01 00:05", tz="UTC").value // 1000
         + np.arange(4 * 288, dtype=np.int64) * 5 * MINUTE)
    v = np.arange(len(t), dtype=np.float64)  # each reading rises by one
    sid = np.zeros(len(t), dtype=np.int64)
    transitions = offset_transitions("Europe/Amsterdam", int(t[0]) - 2 * 86_400 * 10**6,
                                     int(t[-1]) + 2 * 86_400 * 10**6)
    got = counter_sums(sid, t, v, parse_every("1d"), transitions)
    days = pd.DatetimeIndex(t[1:] * 1000, tz="UTC").tz_convert("Europe/Amsterdam") \
        .floor("D", ambiguous=False).tz_localize(None)  # each rise's day, the first is a base
    want = pd.Series(1.0, index=days).groupby(level=0).sum()
    assert got.column("consumption").to_pylist() == want.tolist()
    assert got.column("bucket").to_numpy().astype("datetime64[us]").tolist() == \
        want.index.to_numpy().astype("datetime64[us]").tolist()
    same(sums(heads_of(sid, t, v, [100, 700], "1d", transitions), "1d", transitions), got)

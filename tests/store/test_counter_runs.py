"""`counter_sums_of_runs`: counter consumption from runs an engine summed in stored order
(ClickHouse's runningDifference within blocks) equals `counter_sums` over the rows
themselves, however the rows fell into blocks; runs that do not prove their order are
refused, never summed."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meterhub.store.aggregation import counter_sums, counter_sums_of_runs, with_bases
from meterhub.store.buckets import bucket_numpy
from meterhub.timebase import offset_transitions, parse_every

MINUTE = 60_000_000
START = 1_711_584_000_000_000  # 2024-03-28, before a DST change in Amsterdam


def runs_of(sid: npt.NDArray[np.int64], t: npt.NDArray[np.int64],
            v: npt.NDArray[np.float64], cuts: list[int], every: str,
            transitions: list[tuple[int, int]]) -> pa.Table:
    """What the ClickHouse query gives for rows sorted by (series, t) read in blocks that
    end at ``cuts``: per (series, bucket, block), the rises from the row before within the
    block, its first and last rows, whether the first starts afresh."""
    bucket = bucket_numpy(t - 1, parse_every(every), transitions)
    block = np.searchsorted(np.array(sorted(cuts), dtype=np.int64), np.arange(len(t)),
                            side="right")
    rows = []
    for i in range(len(t)):
        start = i == 0 or block[i] != block[i - 1] or sid[i] != sid[i - 1]
        dt = 0 if i == 0 or block[i] != block[i - 1] else int(t[i] - t[i - 1])
        rise = 0.0
        if not start:
            d = v[i] - v[i - 1]
            rise = d if d >= 0 else (v[i] if 0 <= v[i] <= -d else 0.0)
        rows.append((int(sid[i]), int(bucket[i]), int(block[i]), start, dt, rise, int(t[i]),
                     float(v[i])))
    runs: dict[tuple[int, int, int], dict[str, object]] = {}
    for s, b, k, start, dt, rise, ts, value in rows:
        run = runs.get((s, b, k))
        if run is None:
            runs[(s, b, k)] = {"series_id": s, "bucket": b, "n": 1, "rises": rise,
                               "starts": int(start), "unordered": 0, "t0": ts, "t1": ts,
                               "v0": value, "v1": value, "dt0": dt}
        else:
            run["n"] = int(run["n"]) + 1  # type: ignore[call-overload]
            run["rises"] = float(run["rises"]) + rise  # type: ignore[arg-type]
            run["t1"], run["v1"] = ts, value
    return pa.Table.from_pylist(list(runs.values()), schema=RUN_SCHEMA)


RUN_SCHEMA = pa.schema([("series_id", pa.int64()), ("bucket", pa.timestamp("us")),
                        ("n", pa.int64()), ("rises", pa.float64()), ("starts", pa.int64()),
                        ("unordered", pa.uint8()), ("t0", pa.int64()), ("t1", pa.int64()),
                        ("v0", pa.float64()), ("v1", pa.float64()), ("dt0", pa.int64())])


series_rows = st.lists(st.tuples(st.integers(0, 3), st.integers(0, 3000),
                                  st.sampled_from([0.0, 0.5, 1.0, 2.5, 7.0, 100.0, 1e6])),
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
    assert got is not None
    order = ["series_id", "bucket"]
    got_df = got.to_pandas().sort_values(order).reset_index(drop=True)
    want_df = want.to_pandas().sort_values(order).reset_index(drop=True)
    np.testing.assert_array_equal(got_df["series_id"], want_df["series_id"])
    np.testing.assert_array_equal(got_df["bucket"], want_df["bucket"])
    np.testing.assert_array_equal(got_df["count"], want_df["count"])
    np.testing.assert_allclose(got_df["consumption"], want_df["consumption"], rtol=1e-12)


@settings(max_examples=200, deadline=None)
@given(drawn=series_rows, cuts=st.lists(st.integers(1, 60), max_size=12),
       every=st.sampled_from(["15min", "1h", "1d"]), tz=st.sampled_from(
           ["Europe/Amsterdam", "UTC", "Australia/Lord_Howe"]),
       with_base=st.booleans())
def test_runs_sum_to_the_rows_sums(drawn: list[tuple[int, int, float]], cuts: list[int],
                                   every: str, tz: str, with_base: bool) -> None:
    sid, t, v = sorted_rows(drawn)
    transitions = offset_transitions(tz, START - 2 * 86_400 * 10**6, START + 5 * 86_400 * 10**6)
    runs = runs_of(sid, t, v, cuts, every, transitions)
    bases = None
    if with_base:  # a reading before the range for series 0 and 2
        bases = pa.table({"series_id": pa.array([0, 2], pa.int64()),
                          "t": pa.array([START - MINUTE] * 2, pa.int64()),
                          "value": pa.array([3.0, 1e7])})
    want_sid, want_t, want_v = sid, t, v
    if bases is not None:
        want_sid, want_t, want_v = with_bases(sid, t, v, bases)
    same(counter_sums_of_runs(runs, bases), counter_sums(
        want_sid, want_t, want_v, parse_every(every), transitions))


def test_runs_that_do_not_prove_their_order_are_refused() -> None:
    sid = np.zeros(6, dtype=np.int64)
    t = START + np.arange(6, dtype=np.int64) * MINUTE
    v = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    transitions = offset_transitions("UTC", START, START + 86_400 * 10**6)
    runs = runs_of(sid, t, v, [3], "15min", transitions)
    assert counter_sums_of_runs(runs, None) is not None
    # a row read twice (an unmerged rewrite): two runs overlap
    twice = pa.concat_tables([runs, runs.slice(0, 1)])
    assert counter_sums_of_runs(twice, None) is None
    # a run that goes on from a row before it, but the run before ends elsewhere
    index = runs.column_names.index("starts")
    broken = runs.set_column(index, "starts", pa.array([0] * runs.num_rows, pa.int64()))
    assert counter_sums_of_runs(broken, None) is None
    # a run read on from a row two runs back (a block that held rows 1-2 and 5-6, with
    # rows 3-4 in another): the run before it does not end on that row
    later = t + MINUTE  # all in one day
    blocks = runs_of(sid, later, v, [2, 4], "1d", transitions)
    assert blocks.num_rows == 3
    assert counter_sums_of_runs(blocks, None) is not None
    starts = blocks.column_names.index("starts")
    gap = blocks.column_names.index("dt0")
    interleaved = blocks.set_column(starts, "starts", pa.array([1, 1, 0], pa.int64())) \
        .set_column(gap, "dt0", pa.array([0, 0, int(later[4] - later[1])], pa.int64()))
    assert counter_sums_of_runs(interleaved, None) is None
    # rows out of order within a run
    index = runs.column_names.index("unordered")
    unordered = runs.set_column(index, "unordered",
                                pa.array([0] * (runs.num_rows - 1) + [1], pa.uint8()))
    assert counter_sums_of_runs(unordered, None) is None


@pytest.mark.parametrize("cuts", [[], [1], [2, 4]])
def test_a_reset_across_blocks_counts_as_within_one(cuts: list[int]) -> None:
    sid = np.zeros(5, dtype=np.int64)
    t = START + np.arange(1, 6, dtype=np.int64) * MINUTE
    v = np.array([10.0, 12.0, 15.0, 1.0, 3.0])  # 2 + 3, a restart at 1, + 2
    transitions = offset_transitions("UTC", START, START + 86_400 * 10**6)
    summed = counter_sums_of_runs(runs_of(sid, t, v, cuts, "1d", transitions), None)
    assert summed is not None
    assert summed.column("consumption").to_pylist() == [8.0]
    assert summed.column("count").to_pylist() == [4]

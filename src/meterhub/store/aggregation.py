"""Aggregation, whatever the backend: which functions a request may ask for, counter
consumption from sorted readings in NumPy, and the answer's shape.

A backend computes per-(series, bucket) columns (``series_id``, ``bucket`` as the naive
bucket id of `meterhub.store.buckets`, and the functions); `assemble` turns them into the
answer every store gives.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from meterhub.errors import InputError
from meterhub.model import TS_TYPE, ChannelKind
from meterhub.store.base import COUNTER_FUNCTIONS, DELTA_FUNCTIONS, INSTANT_FUNCTIONS, Selection
from meterhub.store.buckets import (
    DAY_US,
    GRID_US,
    Transitions,
    bucket_edges,
    bucket_numpy,
    label_buckets,
)
from meterhub.store.catalog import SeriesRow
from meterhub.store.reads import query_range
from meterhub.timebase import Every, offset_transitions, parse_every

ERRORS = "errors"  #: the aggregate function any kind has on request: its sensor errors


class Bucketing(Protocol):
    """What a backend computes for `aggregate`, per kind, in its own engine."""

    def _data_range(self, series: Sequence[SeriesRow]) -> tuple[int, int] | None:
        """The first and last stored µs of these series (or a range around them: it gives
        the zone's offsets to bucket by), None when they hold nothing."""
        ...

    def _counter_buckets(self, selection: Selection, ids: Sequence[int], size: Every,
                         transitions: Transitions) -> pa.Table:
        """``series_id``, ``bucket``, ``consumption``, ``count`` (see `counter_sums`)."""
        ...

    def _counter_errors(self, selection: Selection, ids: Sequence[int], size: Every,
                        transitions: Transitions) -> pa.Table:
        """``series_id``, ``bucket``, ``errors``: sensor errors in (start, end], each in
        the bucket of the instant before it (right-closed, as a counter's rises)."""
        ...

    def _sql_buckets(self, selection: Selection, ids: Sequence[int], kind: str, size: Every,
                     transitions: Transitions, wanted: Sequence[str]) -> pa.Table:
        """Instant and delta functions per (``series_id``, ``bucket``)."""
        ...


def aggregate(backend: Bucketing, selection: Selection, series: Sequence[SeriesRow], *,
              every: str, tz: str, functions: Sequence[str] | None) -> pa.Table:
    """Aggregates per bucket for every selected channel, by its kind.

    - instant: mean, min, max, first, last, count of ok and estimated readings;
    - counter: consumption, the rise of the register between the bucket's edges. Each
      rise between two readings belongs to the bucket holding the later one, a reading
      exactly on an edge closing the bucket before it. A fall is a reset: it counts the
      new value when the register restarted near zero (0 <= new value <= the fall),
      else 0, so consumption is never negative;
    - delta: sum and count;
    - any kind, only when asked: ``errors``, the sensor_error readings in the bucket (a
      counter's bucket right-closed like its consumption). A bucket that holds only
      errors is then a row whose other functions are null (count 0).

    Buckets are aligned in ``tz``; rows carry ``bucket`` (UTC start) and ``bucket_end``.
    """
    size = parse_every(every)
    wanted = check_functions(functions, {s.kind for s in series})
    if not series:
        return empty(wanted)
    lo, hi = query_range(selection, tz, lambda: backend._data_range(series))
    if lo is None or hi is None:
        return empty(wanted)
    # A day either side covers a counter's last reading before `start` and the edges.
    transitions = offset_transitions(tz, lo - 2 * DAY_US, hi + 2 * DAY_US)
    by_kind: dict[str, list[int]] = {}
    for item in series:
        by_kind.setdefault(item.kind, []).append(item.series_id)
    parts = []
    for kind, ids in by_kind.items():
        if kind == ChannelKind.COUNTER:
            counted = backend._counter_buckets(selection, ids, size, transitions)
            if ERRORS in wanted:
                counted = _with_errors(counted, backend._counter_errors(
                    selection, ids, size, transitions))
            parts.append(counted)
        else:
            parts.append(backend._sql_buckets(selection, ids, kind, size, transitions,
                                              wanted))
    return assemble(parts, series, wanted, size, tz)


def _with_errors(counted: pa.Table, errors: pa.Table) -> pa.Table:
    """Counter buckets with their sensor errors (a bucket of errors only: count 0)."""
    errors = errors.cast(pa.schema([("series_id", pa.int64()),
                                    ("bucket", pa.timestamp("us")), (ERRORS, pa.int64())]))
    joined = counted.join(errors, ["series_id", "bucket"], join_type="full outer")
    return joined.set_column(joined.schema.get_field_index("count"), "count",
                             pc.fill_null(joined.column("count"), 0)).set_column(
        joined.schema.get_field_index(ERRORS), ERRORS,
        pc.fill_null(joined.column(ERRORS), 0))


def check_functions(functions: Sequence[str] | None, kinds: set[str]) -> list[str]:
    """The aggregate columns to return, checked against the kinds selected."""
    defaults = {ChannelKind.INSTANT.value: INSTANT_FUNCTIONS,
                ChannelKind.COUNTER.value: COUNTER_FUNCTIONS,
                ChannelKind.DELTA.value: DELTA_FUNCTIONS}
    if functions is None:
        wanted: list[str] = []
        for kind in (ChannelKind.INSTANT, ChannelKind.COUNTER, ChannelKind.DELTA):
            if kind.value in kinds:
                wanted += [f for f in defaults[kind.value] if f not in wanted]
        return wanted or ["count"]
    # errors: any kind's, on request only (the default answer keeps its columns)
    allowed = {kind: (*names, ERRORS) for kind, names in defaults.items()}
    for name in functions:
        if not any(name in allowed[k] for k in kinds) and kinds:
            options = sorted({f for k in kinds for f in allowed[k]})
            raise InputError(f"function {name!r} does not apply to {'/'.join(sorted(kinds))} "
                             f"channels: use {', '.join(options)}")
        if not kinds and name not in {f for fs in allowed.values() for f in fs}:
            raise InputError(f"unknown function {name!r}")
    return list(dict.fromkeys(functions))


AGG_SCHEMA = pa.schema([("device", pa.string()), ("channel", pa.string()),
                         ("kind", pa.string()), ("bucket", TS_TYPE), ("bucket_end", TS_TYPE),
                         ("mean", pa.float64()), ("min", pa.float64()), ("max", pa.float64()),
                         ("first", pa.float64()), ("last", pa.float64()),
                         ("consumption", pa.float64()), ("sum", pa.float64()),
                         ("count", pa.int64()), (ERRORS, pa.int64()),
                         ("unit", pa.string())])


def column(table: pa.Table, name: str, dtype: Any) -> Any:
    """A column as a NumPy array of ``dtype``, without a copy when the types agree."""
    return np.asarray(table.column(name).to_numpy(), dtype=dtype)


def sorted_by_series_and_time(sid: npt.NDArray[np.int64], t: npt.NDArray[np.int64]) -> bool:
    if len(sid) < 2:
        return True
    new_series = sid[1:] != sid[:-1]
    return bool(np.all(sid[1:] >= sid[:-1]) and np.all((t[1:] > t[:-1]) | new_series))


def order_by_series_and_time(sid: npt.NDArray[np.int64], t: npt.NDArray[np.int64]
                             ) -> npt.NDArray[np.intp] | None:
    """The order that sorts rows by (series, time), None when they are sorted already.

    Rows an engine gives in a few sorted runs (ClickHouse: each month's partition sorted by
    series and time) sort by series alone with a stable sort, which merges the runs in
    a few passes; a full two-key sort only when that leaves the times out of order."""
    if sorted_by_series_and_time(sid, t):
        return None
    order = np.argsort(sid, kind="stable")
    if sorted_by_series_and_time(sid[order], t[order]):
        return np.asarray(order)
    return np.asarray(np.lexsort((t, sid)))


def with_bases(sid: npt.NDArray[np.int64], t: npt.NDArray[np.int64],
               value: npt.NDArray[np.float64], bases: pa.Table
               ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """Rows sorted by (series, time) with each series' base row put first: ``bases`` holds
    (``series_id``, ``t``, ``value``) of the last reading at or before a range's start,
    sorted by series (the reading the first rise in the range starts from)."""
    ids = column(bases, "series_id", np.int64)
    at = np.searchsorted(sid, ids)
    return (np.insert(sid, at, ids), np.insert(t, at, column(bases, "t", np.int64)),
            np.insert(value, at, np.asarray(bases.column("value").to_numpy(
                zero_copy_only=False), dtype=np.float64)))


def counter_sums(sid: npt.NDArray[np.int64], t: npt.NDArray[np.int64],
                  value: npt.NDArray[np.float64], size: Every,
                  transitions: list[tuple[int, int]]) -> pa.Table:
    """Consumption per (series, bucket) from rows sorted by (series, t).

    Rises are differenced once and summed by cumulative sums between bucket edges, so the
    per-row work is a handful of vectorised passes; bucket edges come from a coarse grid.
    """
    empty = pa.table({"series_id": pa.array([], pa.int64()),
                      "bucket": pa.array([], pa.timestamp("us")),
                      "consumption": pa.array([], pa.float64()),
                      "count": pa.array([], pa.int64())})
    if len(t) < 2:
        return empty
    seg = np.r_[0, np.flatnonzero(sid[1:] != sid[:-1]) + 1]
    rise = np.empty(len(t))
    rise[0] = 0.0
    np.subtract(value[1:], value[:-1], out=rise[1:])
    falls = np.flatnonzero(rise < 0)
    if falls.size:  # few: resets count the new value only if it restarted near zero
        cur = value[falls]
        rise[falls] = np.where((cur >= 0) & (cur <= -rise[falls]), cur, 0.0)
    rise[seg] = 0.0  # a series' first row is its base, not a rise
    if (int(t.max()) - int(t.min())) // GRID_US >= len(t):
        # few rows over a long span (a reading in 1850, one in 2150): a grid of edges
        # would outgrow the rows, so each row finds its own bucket instead
        return _sparse_counter_sums(sid, t, rise, seg, size, transitions)
    edges, ids = bucket_edges(int(t.min()) - 1, int(t.max()), size, transitions)
    out_sid, out_bucket, out_start, out_count = [], [], [], []
    bounds = np.r_[seg, len(t)]
    for first, stop in itertools.pairwise(bounds):
        # right-closed: bucket k holds rises ending in (edge_k, edge_k+1]
        pos = first + np.searchsorted(t[first:stop], edges, side="right")
        # rows in the bucket, less the series' base row if it lies there
        number = pos[1:] - pos[:-1] - ((pos[:-1] <= first) & (first < pos[1:]))
        keep = number > 0
        out_sid.append(np.full(int(keep.sum()), sid[first]))
        out_bucket.append(ids[:-1][keep])
        out_start.append(pos[:-1][keep])
        out_count.append(number[keep])
    starts = np.concatenate(out_start)
    if not starts.size:
        return empty
    # Non-empty buckets are disjoint and ordered; rows between them are base rows (rise 0),
    # so one reduceat sums every bucket.
    return pa.table({
        "series_id": pa.array(np.concatenate(out_sid).astype(np.int64)),
        "bucket": pa.array(np.concatenate(out_bucket).astype("datetime64[us]")),
        "consumption": pa.array(np.add.reduceat(rise, starts)),
        "count": pa.array(np.concatenate(out_count).astype(np.int64)),
    })


def counter_sums_of_runs(runs: pa.Table, bases: pa.Table | None) -> pa.Table | None:
    """`counter_sums` from runs, None when the runs do not prove that they join up.

    A run is rows of one series in one bucket that an engine read one after another in
    time order (``series_id``, ``bucket``, ``n`` rows, ``rises`` summed over each row but
    the first from the row before it, ``starts`` 1 when the first row's row before was not
    read with it, ``unordered`` when the rows were not in order, ``t0``/``v0`` and
    ``t1``/``v1`` the first and last row, ``dt0`` the first row's time less that of the
    row read before it). Runs join when, per series, they do not overlap in time and a run
    whose first row was read after another row follows the run that ends on that row; a
    run that starts afresh gets its first rise from the run before, and a series' first
    run starts from ``bases`` (as `with_bases`) or is the series' base (not counted).
    """
    if runs.num_rows and bool(pc.any(pc.not_equal(runs.column("unordered"), 0)).as_py()):
        return None
    sid, t0 = column(runs, "series_id", np.int64), column(runs, "t0", np.int64)
    order = np.lexsort((t0, sid))
    sid, t0 = sid[order], t0[order]

    def take(name: str, dtype: Any) -> Any:
        return column(runs, name, dtype)[order]

    t1, v0, v1 = take("t1", np.int64), take("v0", np.float64), take("v1", np.float64)
    starts, dt0 = take("starts", np.int64) != 0, take("dt0", np.int64)
    n, rises = take("n", np.int64), take("rises", np.float64)
    first = np.r_[True, sid[1:] != sid[:-1]] if len(sid) else np.zeros(0, dtype=bool)
    later = ~first
    if np.any(t0[1:][later[1:]] <= t1[:-1][later[1:]]):
        return None  # runs of a series overlap: rows read twice, or interleaved
    follows = np.zeros(len(sid), dtype=bool)
    follows[1:] = t1[:-1] == t0[1:] - dt0[1:]
    if np.any(~starts & (first | ~follows)):
        return None  # a run that goes on from a row before it, but not from the run before
    cross = np.zeros(len(sid))
    again = starts & later  # a fresh run: its first rise is from the run before
    previous = np.flatnonzero(again) - 1
    cross[again] = _rises(v0[again], v1[previous])
    heads = np.flatnonzero(first)
    if bases is not None and bases.num_rows:
        base_ids = column(bases, "series_id", np.int64)
        base_values = np.asarray(bases.column("value").to_numpy(zero_copy_only=False),
                                 dtype=np.float64)
        at = np.searchsorted(base_ids, sid[heads])
        found = (at < len(base_ids)) & (base_ids[np.minimum(at, len(base_ids) - 1)]
                                        == sid[heads])
        cross[heads[found]] = _rises(v0[heads[found]], base_values[at[found]])
        heads = heads[~found]
    n[heads] -= 1  # a series' first reading with none before it is its base, not counted
    bucket = take("bucket", "datetime64[us]")
    grouped = pa.table({"series_id": sid, "bucket": bucket, "consumption": rises + cross,
                        "count": n}).group_by(["series_id", "bucket"], use_threads=False)
    summed = grouped.aggregate([("consumption", "sum"), ("count", "sum")])
    summed = pa.table({"series_id": summed.column("series_id"),
                       "bucket": summed.column("bucket"),
                       "consumption": summed.column("consumption_sum"),
                       "count": summed.column("count_sum")})
    return summed.filter(pc.greater(summed.column("count"), 0))


def _rises(new: npt.NDArray[np.float64], old: npt.NDArray[np.float64]
           ) -> npt.NDArray[np.float64]:
    """The rise from ``old`` to ``new`` as `counter_sums` counts it (a fall is a reset)."""
    rise = new - old
    return np.where(rise >= 0, rise, np.where((new >= 0) & (new <= -rise), new, 0.0))


def _sparse_counter_sums(sid: npt.NDArray[np.int64], t: npt.NDArray[np.int64],
                         rise: npt.NDArray[np.float64], seg: npt.NDArray[np.intp],
                         size: Every, transitions: list[tuple[int, int]]) -> pa.Table:
    """`_counter_sums` with each row's bucket found from its own time: O(rows), whatever
    the span. Right-closed as there: a rise ending on an edge belongs to the bucket before,
    so a row's bucket is that of the instant just before it."""
    bucket = bucket_numpy(t - 1, size, transitions)
    starts = np.flatnonzero(np.r_[True, (sid[1:] != sid[:-1]) | (bucket[1:] != bucket[:-1])])
    base = np.zeros(len(t), dtype=np.int64)
    base[seg] = 1
    # rows in each (series, bucket) run, less the series' base row if it lies there
    number = np.diff(np.r_[starts, len(t)]) - np.add.reduceat(base, starts)
    keep = number > 0
    return pa.table({
        "series_id": pa.array(sid[starts][keep].astype(np.int64)),
        "bucket": pa.array(bucket[starts][keep].astype("datetime64[us]")),
        "consumption": pa.array(np.add.reduceat(rise, starts)[keep]),
        "count": pa.array(number[keep].astype(np.int64)),
    })


def agg_columns(wanted: Sequence[str]) -> list[str]:
    return ["device", "channel", "kind", "bucket", "bucket_end", *wanted, "unit"]


def empty(wanted: Sequence[str]) -> pa.Table:
    return AGG_SCHEMA.empty_table().select(agg_columns(wanted))


def assemble(parts: Sequence[pa.Table], series: Sequence[SeriesRow], wanted: Sequence[str],
             size: Every, tz: str) -> pa.Table:
    """The answer from a backend's per-(series, bucket) columns (one table per kind): rows
    in the series' (device, channel) order, then time, labelled with UTC bucket starts and
    ends."""
    raw = pa.concat_tables([_with_int64_ids(part) for part in parts],
                           promote_options="default")
    # series are listed in (device, channel) order: sort results by that rank, then time
    ranked = sorted((s[0], rank) for rank, s in enumerate(series))
    lookup_ids = np.array([i for i, _ in ranked], dtype=np.int64)
    lookup_rank = np.array([r for _, r in ranked], dtype=np.int64)
    rank = lookup_rank[np.searchsorted(lookup_ids, column(raw, "series_id", np.int64))]
    order = np.lexsort((column(raw, "bucket", "datetime64[us]").astype(np.int64), rank))
    raw = raw.take(pa.array(order))
    rank = pa.array(rank[order])
    start, end = label_buckets(raw.column("bucket"), size, tz)

    def by_rank(position: int) -> pa.Array:
        names = pa.array([s[position] for s in series], pa.string())
        return pa.DictionaryArray.from_arrays(rank, names).cast(pa.string())

    columns: dict[str, Any] = {"device": by_rank(1), "channel": by_rank(2),
                               "kind": by_rank(4), "bucket": start, "bucket_end": end,
                               "unit": by_rank(3)}
    for name in wanted:
        columns[name] = (raw.column(name) if name in raw.column_names
                         else pa.nulls(raw.num_rows, AGG_SCHEMA.field(name).type))
    schema = pa.schema([AGG_SCHEMA.field(name) for name in agg_columns(wanted)])
    return pa.table({name: pa.array(columns[name]).cast(schema.field(name).type)
                     if not isinstance(columns[name], pa.ChunkedArray)
                     else columns[name].cast(schema.field(name).type)
                     for name in schema.names}, schema=schema)


def _with_int64_ids(part: pa.Table) -> pa.Table:
    """A part with ``series_id`` as int64 (backends keep ids of different widths)."""
    index = part.schema.get_field_index("series_id")
    return part.set_column(index, "series_id", part.column(index).cast(pa.int64()))

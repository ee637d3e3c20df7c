"""Aggregation, whatever the backend: which functions a request may ask for, counter
consumption from sorted readings in NumPy, and the answer's shape.

A backend computes per-(series, bucket) columns (``series_id``, ``bucket`` as the naive
bucket id of `meterhub.store.buckets`, and the functions); `assemble` turns them into the
answer every store gives.
"""

from __future__ import annotations

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
    Transitions,
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
        return pa.array([s[position] for s in series], pa.string()).take(rank)

    columns: dict[str, Any] = {"device": by_rank(1), "channel": by_rank(2),
                               "kind": by_rank(4), "bucket": start, "bucket_end": end,
                               "unit": by_rank(3)}
    for name in wanted:
        columns[name] = (raw.column(name) if name in raw.column_names
                         else pa.nulls(raw.num_rows, AGG_SCHEMA.field(name).type))
    schema = pa.schema([AGG_SCHEMA.field(name) for name in agg_columns(wanted)])
    return pa.table({name: _as_type(columns[name], schema.field(name).type)
                     for name in schema.names}, schema=schema)


def _as_type(values: Any, kind: pa.DataType) -> Any:
    """An Arrow column of ``kind`` (a cast costs tens of µs even when there is nothing to do:
    small answers are made of a dozen)."""
    if not isinstance(values, pa.Array | pa.ChunkedArray):
        values = pa.array(values)
    return values if values.type == kind else values.cast(kind)


def _with_int64_ids(part: pa.Table) -> pa.Table:
    """A part with ``series_id`` as int64 (backends keep ids of different widths)."""
    index = part.schema.get_field_index("series_id")
    return part.set_column(index, "series_id", _as_type(part.column(index), pa.int64()))

"""Gaps, whatever the backend: from a selection's (series, time, seq) in that order, the
runs of missing expected intervals and the jumps in a device's sequence numbers."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from meterhub.model import TS_TYPE
from meterhub.store.catalog import SeriesRow
from meterhub.timebase import MICROS

GAPS_SCHEMA = pa.schema([("device", pa.string()), ("channel", pa.string()),
                         ("kind", pa.string()), ("start", TS_TYPE), ("end", TS_TYPE),
                         ("missing", pa.int64()), ("seq_from", pa.int64()),
                         ("seq_to", pa.int64())])


def find_gaps(series: Sequence[SeriesRow], intervals: Mapping[int, int | None],
              rows: pa.Table) -> pa.Table:
    """Interior gaps per channel, in (device, channel, start, kind) order.

    ``rows``: ``series_id``, ``t`` (epoch µs) and ``seq`` of the selected readings, sorted
    by series then time; ``intervals``: each series' ``interval_s`` where known. The
    expected interval is that, else the lower median spacing of the series' readings in
    the range. A run of at least 1.5 intervals is a gap of round(spacing / interval) - 1
    missing readings; a seq that rises by more than one is a jump, one that falls a
    device reset (no gap).
    """
    sid = np.asarray(rows.column("series_id").to_numpy(), dtype=np.int64)
    t = np.asarray(rows.column("t").to_numpy(), dtype=np.int64)
    seq_column = rows.column("seq")
    seq = np.asarray(seq_column.fill_null(0).to_numpy(), dtype=np.int64)
    has_seq = np.asarray(seq_column.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
    found: list[tuple[int, int, int, int, int, int | None, int | None]] = []
    # (rank, start, kind: 0 interval / 1 seq, end, missing, seq_from, seq_to)
    rank = {item.series_id: position for position, item in enumerate(series)}
    bounds = np.r_[0, np.flatnonzero(sid[1:] != sid[:-1]) + 1, len(sid)]
    for first, stop in itertools.pairwise(bounds):
        if stop - first < 2:
            continue
        series_id = int(sid[first])
        times, spacing = t[first:stop], np.diff(t[first:stop])
        interval = intervals.get(series_id)
        step = (interval * MICROS if interval is not None
                else int(np.sort(spacing)[(len(spacing) - 1) // 2]))
        if step > 0:
            wide = np.flatnonzero(spacing >= 1.5 * step)
            # round half away from zero, as SQL's round does (all values are positive)
            missing = np.floor(spacing[wide] / step + 0.5).astype(np.int64) - 1
            found += [(rank[series_id], int(times[i]) + step, 0, int(times[i + 1]),
                       int(m), None, None) for i, m in zip(wide, missing, strict=True)]
        numbers, valid = seq[first:stop], has_seq[first:stop]
        jumps = np.flatnonzero(valid[1:] & valid[:-1] & (numbers[1:] > numbers[:-1] + 1))
        found += [(rank[series_id], int(times[i]), 1, int(times[i + 1]),
                   int(numbers[i + 1] - numbers[i] - 1), int(numbers[i] + 1),
                   int(numbers[i + 1] - 1)) for i in jumps]
    found.sort(key=lambda gap: gap[:3])
    return pa.table({
        "device": pa.array([series[g[0]].device for g in found], pa.string()),
        "channel": pa.array([series[g[0]].channel for g in found], pa.string()),
        "kind": pa.array(["seq" if g[2] else "interval" for g in found], pa.string()),
        "start": _times([g[1] for g in found]),
        "end": _times([g[3] for g in found]),
        "missing": pa.array([g[4] for g in found], pa.int64()),
        "seq_from": pa.array([g[5] for g in found], pa.int64()),
        "seq_to": pa.array([g[6] for g in found], pa.int64()),
    }, schema=GAPS_SCHEMA)


def _times(us: list[int]) -> pa.Array:
    values: npt.NDArray[np.int64] = np.asarray(us, dtype=np.int64)
    return pa.array(values.astype("datetime64[us]")).cast(TS_TYPE)

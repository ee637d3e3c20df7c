"""Counter consumption, whatever the backend: the rises between a series' readings summed
per bucket, right-closed (a rise belongs to the bucket of the reading it ends on), where a
fall is a reset that counts the new value if it restarted near zero.

Every path sums the same pieces: stretches of one series' readings in time order, within
one bucket, that do not fall. A piece counts ``last - base``, ``base`` being the reading
before its first (in its bucket or the one before); when its first reading fell from
``base``, that reading's reset rise plus ``last - first``. Telescoped so, a day of a meter
counts its last reading less the day before's (what its display shows), and backends that
find the pieces differently (NumPy from the rows, ClickHouse from the runs it read in
stored order) give the same bits.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from meterhub.store.aggregation import column, order_by_series_and_time
from meterhub.store.buckets import GRID_US, Transitions, bucket_edges, bucket_numpy
from meterhub.timebase import Every

Ints = npt.NDArray[np.int64]
Floats = npt.NDArray[np.float64]
Flags = npt.NDArray[np.bool_]


def with_bases(sid: Ints, t: Ints, value: Floats, bases: pa.Table) -> tuple[Ints, Ints, Floats]:
    """Rows sorted by (series, time) with each series' base row put first: ``bases`` holds
    (``series_id``, ``t``, ``value``) of the last reading at or before a range's start,
    sorted by series (the reading the first rise in the range starts from)."""
    ids = column(bases, "series_id", np.int64)
    at = np.searchsorted(sid, ids)
    return (np.insert(sid, at, ids), np.insert(t, at, column(bases, "t", np.int64)),
            np.insert(value, at, _values(bases, "value")))


def counter_sums(sid: Ints, t: Ints, value: Floats, size: Every,
                 transitions: Transitions) -> pa.Table:
    """Consumption per (series, bucket) from rows sorted by (series, t): ``series_id``,
    ``bucket``, ``consumption``, ``count`` (the rises counted; a series' first row is its
    base, not counted)."""
    if len(t) < 2:
        return _piece_sums(*_no_pieces())
    if ((int(t.max()) - int(t.min())) // GRID_US >= len(t)
            or any(offset % GRID_US for _, offset in transitions)
            or any(at % GRID_US for at, _ in transitions[1:])):
        # few rows over a long span (a reading in 1850, one in 2150): a grid of edges
        # would outgrow the rows; and a zone's offset of minutes and seconds (local mean
        # time, Amsterdam's +0:19:32 until 1937) puts edges off the grid. Each row finds
        # its own bucket instead (right-closed: that of the instant just before it).
        bucket = bucket_numpy(t - 1, size, transitions)
        starts = np.flatnonzero(np.r_[True, (sid[1:] != sid[:-1])
                                      | (bucket[1:] != bucket[:-1])])
        return _row_pieces(sid, value, starts, bucket[starts])
    edges, ids = bucket_edges(int(t.min()) - 1, int(t.max()), size, transitions)
    seg = np.r_[0, np.flatnonzero(sid[1:] != sid[:-1]) + 1, len(t)]
    run_starts: list[Ints] = []
    run_buckets: list[Ints] = []
    for first, stop in itertools.pairwise(seg):
        # right-closed: bucket k holds the rows in (edge_k, edge_k+1]
        pos = first + np.searchsorted(t[first:stop], edges, side="right")
        held = pos[1:] > pos[:-1]
        run_starts.append(pos[:-1][held])
        run_buckets.append(ids[:-1][held])
    return _row_pieces(sid, value, np.concatenate(run_starts), np.concatenate(run_buckets))


def _row_pieces(sid: Ints, value: Floats, starts: Ints, buckets: Ints) -> pa.Table:
    """`_piece_sums` of rows sorted by (series, t) whose runs of one series in one bucket
    start at ``starts`` (a series' first row among them), in ``buckets``."""
    falls = np.flatnonzero(value[1:] < value[:-1]) + 1  # few: resets
    falls = falls[sid[falls] == sid[falls - 1]]  # within a series
    first = np.sort(np.r_[starts, falls]) if len(falls) else starts
    first = first[np.r_[True, first[1:] != first[:-1]]]
    last = np.r_[first[1:], len(value)] - 1
    bucket = buckets[np.searchsorted(starts, first, side="right") - 1]
    own = np.r_[True, sid[first[1:]] != sid[first[1:] - 1]]  # a series' first row is
    base = value[np.where(own, first, first - 1)]  # its own base
    return _piece_sums(sid[first], bucket, base, value[first], value[last],
                       np.isin(first, falls, assume_unique=True), last - first + 1 - own)


def counter_sums_of_heads(heads: pa.Table, bases: pa.Table | None, size: Every,
                          transitions: Transitions) -> pa.Table | None:
    """`counter_sums` from the heads of the runs an engine read, None when they do not
    prove that the runs hold every row read once, in order.

    A run is rows one after another in a block of the engine's answer, of one series and
    one bucket (right-closed, as `bucket_numpy` of the instant before), each later than the
    row before it and not below it. Its head is its first row (``series_id``, ``ts``,
    ``value``; ``dt`` its time less the block's row before it, whose value is ``before``);
    each block's last row comes too. ``flags`` says what a row is: 1 fresh (the block's
    first row, or the row before is of another series), 2 a head (a fresh row is one), 4
    the block's last; ``block`` and ``position`` say where it was. Runs join when, per
    series, they do not overlap in time and a run whose head was read after another row of
    its series follows the run that ends on that row; a fresh run rises from the run
    before it, and a series' first run from ``bases`` (as `with_bases`) or from itself.
    """
    if not heads.num_rows:
        return _piece_sums(*_no_pieces())
    block = column(heads, "block", np.uint64)
    position = column(heads, "position", np.int64)
    order: Any = slice(None)  # engines may send them sorted already
    if np.any((block[1:] < block[:-1]) | ((block[1:] == block[:-1])
                                          & (position[1:] <= position[:-1]))):
        order = np.lexsort((position, block))
    block, position = block[order], position[order]
    ts, dt = column(heads, "ts", np.int64)[order], column(heads, "dt", np.int64)[order]
    value = _values(heads, "value")[order]
    before = _values(heads, "before")[order]
    flags = column(heads, "flags", np.uint8)[order]
    fresh, head, ends = (flags & bit != 0 for bit in (1, 2, 4))
    opens = np.r_[True, block[1:] != block[:-1]]
    closes = np.r_[opens[1:], True]
    if (np.any(~opens[1:] & (position[1:] <= position[:-1]))  # a block number twice
            or np.any(position[opens] != 0) or not np.all(fresh[opens])
            or np.any(ends != closes) or np.any(~head & ~ends) or np.any(fresh & ~head)):
        return None  # not every block whole: its rows are not all accounted for
    at = np.flatnonzero(head)
    after = np.minimum(at + 1, len(head) - 1)  # the next row shown of the block
    alone = ends[at]  # a head that ends its block is a run of one row
    cut = head[after] & ~alone  # the run ends on the row before the next head
    t1 = np.where(alone, ts[at], np.where(cut, ts[after] - dt[after], ts[after]))
    v1 = np.where(alone, value[at], np.where(cut, before[after], value[after]))
    n = np.where(alone, 1, position[after] - position[at] + ~cut)
    return _join_runs(column(heads, "series_id", np.int64)[order][at],
                      bucket_numpy(ts[at] - 1, size, transitions), ts[at], t1, value[at],
                      v1, dt[at], before[at], fresh[at], n, bases)


def befores_certain(heads: pa.Table) -> bool:
    """Whether each head's ``before`` (the value of the row before it in its block) is
    exactly that value, when an engine computed it as ``value - (value - before)``: so it
    is where the difference was exact, which it is where ``before`` lies within a factor
    of two of ``value`` (Sterbenz) and always where ``value`` is 0. Rounding is monotone,
    so a ``before`` strictly within the factor two came from one within it (from outside
    it rounds to outside); a reset to near zero, or a series after one of another
    magnitude, is not certain."""
    value, before = _values(heads, "value"), _values(heads, "before")
    needed = (column(heads, "position", np.int64) > 0) & (column(heads, "flags", np.uint8) & 2 != 0)
    with np.errstate(over="ignore"):
        near = ((np.sign(value) == np.sign(before)) & (2 * np.abs(before) > np.abs(value))
                & (np.abs(before) < 2 * np.abs(value)))
    return bool(np.all(~needed | near | (value == 0)))


def _join_runs(sid: Ints, bucket: Ints, t0: Ints, t1: Ints, v0: Floats, v1: Floats,
               dt0: Ints, before: Floats, fresh: Flags, n: Ints,
               bases: pa.Table | None) -> pa.Table | None:
    """`_piece_sums` of runs (see `counter_sums_of_heads`), None when they do not join."""
    order: Any = order_by_series_and_time(sid, t0)  # parts read one after another
    if order is None:
        order = slice(None)
    sid, bucket, t0, t1, dt0, n = sid[order], bucket[order], t0[order], t1[order], \
        dt0[order], n[order]
    v0, v1, before, fresh = v0[order], v1[order], before[order], fresh[order]
    first = np.r_[True, sid[1:] != sid[:-1]]
    later = np.flatnonzero(~first)
    if np.any(t0[later] <= t1[later - 1]):
        return None  # runs of a series overlap: rows read twice, or interleaved
    follows = np.zeros(len(sid), dtype=bool)
    follows[later] = ((t1[later - 1] == t0[later] - dt0[later])
                      & (v1[later - 1].view(np.int64) == before[later].view(np.int64)))
    if np.any(~fresh & ~follows):
        return None  # a run read on from a row that is not the end of the run before
    base = v0.copy()
    based = ~first
    base[later] = v1[later - 1]
    if bases is not None and bases.num_rows:
        ids = column(bases, "series_id", np.int64)
        heads = np.flatnonzero(first)
        at = np.minimum(np.searchsorted(ids, sid[heads]), len(ids) - 1)
        found = ids[at] == sid[heads]
        base[heads[found]] = _values(bases, "value")[at[found]]
        based[heads[found]] = True
    fall = based & (v0 - base < 0)
    begins = first | fall
    begins[later] |= bucket[later] != bucket[later - 1]
    start = np.flatnonzero(begins)
    last = np.r_[start[1:], len(sid)] - 1
    counted = np.add.reduceat(n, start) if len(start) else n[:0]
    return _piece_sums(sid[start], bucket[start], base[start], v0[start], v1[last],
                       fall[start], counted - ~based[start])


def _piece_sums(sid: Ints, bucket: Ints, base: Floats, first: Floats, last: Floats,
                fall: Flags, n: Ints) -> pa.Table:
    """Consumption and count per (series, bucket) of pieces in (series, time) order."""
    keep = n > 0  # a series' base alone counts nothing (and adds no 0.0 to a sum)
    sid, bucket, base, first, last = sid[keep], bucket[keep], base[keep], first[keep], last[keep]
    fall, n = fall[keep], n[keep]
    rise = np.where(fall, _rises(first, base) + (last - first), last - base)
    start = np.flatnonzero(np.r_[True, (sid[1:] != sid[:-1]) | (bucket[1:] != bucket[:-1])])
    if not len(sid):
        start = start[:0]
    return pa.table({
        "series_id": pa.array(sid[start], pa.int64()),
        "bucket": pa.array(bucket[start].astype("datetime64[us]")),
        "consumption": pa.array(np.add.reduceat(rise, start) if len(start) else rise,
                                pa.float64()),
        "count": pa.array(np.add.reduceat(n, start) if len(start) else n, pa.int64()),
    })


def _no_pieces() -> tuple[Ints, Ints, Floats, Floats, Floats, Flags, Ints]:
    nothing = np.zeros(0, dtype=np.float64)
    none = np.zeros(0, dtype=np.int64)
    return none, none, nothing, nothing, nothing, np.zeros(0, dtype=bool), none


def _rises(new: Floats, old: Floats) -> Floats:
    """The rise from ``old`` to ``new``, a fall being a reset: the new value counts when it
    restarted near zero (0 <= new <= the fall), else nothing."""
    rise = new - old
    return np.where(rise >= 0, rise, np.where((new >= 0) & (new <= -rise), new, 0.0))


def _values(table: pa.Table, name: str) -> Floats:
    return np.asarray(table.column(name).to_numpy(zero_copy_only=False), dtype=np.float64)

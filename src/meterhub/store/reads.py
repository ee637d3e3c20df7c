"""Reading readings, whatever the backend: the times reads keep to, how a page of a
keyset scan is planned, and the shape of the batches a scan streams."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from meterhub.model import READING_SCHEMA, TS_MAX, TS_MIN, TS_TYPE
from meterhub.store.base import PageKey, Selection
from meterhub.store.catalog import SeriesRow
from meterhub.timebase import FIXED_UTC, epoch_us

#: Reads keep to the times a reading may have (`meterhub.model.TS_MIN`, `TS_MAX`): a row
#: written outside them before writes were checked (year 1, year 9999) has no local time
#: in some zones and no pandas time at all, so reads skip it and only `delete` sees it.
MIN_US, MAX_US = epoch_us(TS_MIN), epoch_us(TS_MAX)

#: A page's extent: each series with the part of it the page holds, (lower, upper] in
#: epoch µs (None: unbounded on that side).
Plan = list[tuple[SeriesRow, int | None, int | None]]


def clamped(selection: Selection) -> tuple[dt.datetime, dt.datetime]:
    """A selection's [start, end) within [`TS_MIN`, `TS_MAX`) (reads see no other rows)."""
    start = TS_MIN if selection.start is None else max(selection.start, TS_MIN)
    end = TS_MAX if selection.end is None else min(selection.end, TS_MAX)
    return start, end


def clamped_us(selection: Selection) -> tuple[int, int]:
    """`clamped` in epoch µs."""
    start, end = clamped(selection)
    return epoch_us(start), epoch_us(end)


def query_range(selection: Selection, tz: str,
                data_range: Callable[[], tuple[int, int] | None]) -> tuple[int | None,
                                                                          int | None]:
    """The µs range an aggregate spans (to know the zone's offsets over it): the
    selection's bounds, else the data's (``data_range``: first and last stored µs, None
    when nothing is stored). (None, None) when there is nothing to aggregate."""
    lo = max(epoch_us(selection.start), MIN_US) if selection.start is not None else None
    hi = min(epoch_us(selection.end), MAX_US) if selection.end is not None else None
    if tz in FIXED_UTC and (lo is None or hi is None):
        # one offset for all time: no need to look at the data for its range
        return (lo if lo is not None else -(2**53), hi if hi is not None else 2**53)
    if lo is None or hi is None:
        found = data_range()
        if found is None:
            return None, None
        lo = found[0] if lo is None else lo
        hi = found[1] + 1 if hi is None else hi
    return lo, hi


def page_series(series: Sequence[SeriesRow], after: PageKey | None
                ) -> tuple[list[SeriesRow], dict[int, int]]:
    """The series a page may take rows from, and where the first of them resumes (series id
    -> the epoch µs it starts after)."""
    if after is not None:
        series = [s for s in series if (s.device, s.channel) >= (after.device, after.channel)]
    first_after: dict[int, int] = {}
    if after is not None and series and \
            (series[0].device, series[0].channel) == (after.device, after.channel):
        first_after[series[0].series_id] = after.ts_us
    return list(series), first_after


def plan_page(series: Sequence[SeriesRow], first_after: Mapping[int, int], limit: int, *,
              nth: Callable[[int, int, int], list[int]],
              counts: Callable[[], Mapping[int, tuple[int, int]]]) -> tuple[Plan,
                                                                            PageKey | None]:
    """Which part of which series a page of ``limit`` rows holds, each bounded, and the key
    a next page starts after.

    ``nth(series_id, offset, n)``: the epoch µs of the series' rows number ``offset`` on
    (0-based, at most ``n`` of them) in the page's range; ``counts()``: per series id its
    rows in that range and the newest one's µs.
    """
    if len(series) == 1:
        # one series (the usual request): the page's last row and whether one follows
        # come from one bounded lookup, no count needed
        item = series[0]
        found = nth(item.series_id, limit - 1, 2)
        lower = first_after.get(item.series_id)
        if len(found) < 2:
            return [(item, lower, None)], None
        return [(item, lower, found[0])], PageKey(item.device, item.channel, found[0])
    counted = counts()
    plan: Plan = []
    left = limit
    for item in series:
        number, newest = counted.get(item.series_id, (0, 0))
        if not number:
            continue
        if left == 0:  # the page is full and more rows follow: go on after its last
            full = plan[-1][0]
            return plan, PageKey(full.device, full.channel, counted[full.series_id][1])
        lower = first_after.get(item.series_id)
        if number <= left:
            plan.append((item, lower, newest))
            left -= number
            continue
        last = nth(item.series_id, left - 1, 1)[0]
        plan.append((item, lower, last))
        return plan, PageKey(item.device, item.channel, last)
    return plan, None


def reading_batch(batch: pa.RecordBatch, item: SeriesRow) -> pa.RecordBatch:
    """A batch of one series' stored columns (ts, value, quality, seq, error_code,
    validated) as `READING_SCHEMA` rows."""
    n = batch.num_rows

    def const(value: str) -> pa.Array:
        return pa.repeat(pa.scalar(value, pa.string()), n)

    return pa.RecordBatch.from_arrays([
        const(item.source), const(item.device), const(item.channel),
        batch.column("ts").cast(pa.timestamp("us")).cast(TS_TYPE),
        batch.column("value"), const(item.unit),
        batch.column("quality").cast(pa.string()), batch.column("seq"),
        batch.column("error_code"), batch.column("validated").cast(pa.bool_()),
    ], schema=READING_SCHEMA)


def last_of_each_key(sid: npt.NDArray[np.int64], ts: npt.NDArray[np.int64]
                     ) -> npt.NDArray[np.intp]:
    """Row positions in (series, ts) order, one per key: the later row of a key in the
    input wins (as a write's rows are applied in order)."""
    order = np.lexsort((ts, sid))  # stable: equal keys keep arrival order
    s, t = sid[order], ts[order]
    last = np.ones(len(order), dtype=bool)
    last[:-1] = (s[1:] != s[:-1]) | (t[1:] != t[:-1])
    return np.asarray(order[last])

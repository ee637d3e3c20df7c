"""Bucket arithmetic shared by the SQL and the NumPy aggregation paths.

A bucket is identified by a naive timestamp: the UTC start for fixed widths (15min, hour),
the local wall-clock start for calendar buckets (day, week, month, year), which
`label_buckets` turns into UTC instants. Offsets come from the zone's transitions within
the queried range (`meterhub.timebase.offset_transitions`), never from per-row zone lookups.
"""

from __future__ import annotations

import itertools

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from meterhub.model import TS_TYPE
from meterhub.timebase import MICROS, Every

DAY_US = 86400 * MICROS
Transitions = list[tuple[int, int]]


def offset_sql(transitions: Transitions, column: str = "t") -> str:
    """SQL for the UTC offset (µs) at epoch-µs ``column``, from a zone's transitions."""
    if len(transitions) == 1:
        return str(transitions[0][1])
    parts = [f"WHEN {column} < {at} THEN {offset}" for (_, offset), (at, _) in
             itertools.pairwise(transitions)]
    return f"CASE {' '.join(parts)} ELSE {transitions[-1][1]} END"


def offset_steps_sql(transitions: Transitions, column: str) -> str:
    """`offset_sql` as a sum of steps, one per transition: ``(column >= at) * change``.
    ClickHouse evaluates a CASE branch by branch over whole columns; the sum is plain
    arithmetic (on 18.16 half the time, where the CASE took a fifth of a year's daily
    consumption of a hundred meters)."""
    terms = [f"toInt64({transitions[0][1]})"] + [
        f"({column} >= {at}) * toInt64({offset - before})"
        for (_, before), (at, offset) in itertools.pairwise(transitions)]

    def summed(terms: list[str]) -> str:  # in halves: centuries of changes, a shallow tree
        if len(terms) == 1:
            return terms[0]
        half = len(terms) // 2
        return f"({summed(terms[:half])} + {summed(terms[half:])})"

    return summed(terms)


def bucket_sql(size: Every, transitions: Transitions) -> str:
    """SQL for the bucket of a row with columns ``ts`` (TIMESTAMP) and ``t`` (epoch µs)."""
    constant = transitions[0][1] if len(transitions) == 1 else None
    if size.width_us is not None:
        w = size.width_us
        if constant is not None and constant % w == 0:
            # The zone keeps one offset that is whole in buckets: plain UTC buckets.
            if w == 3600 * MICROS:
                return "date_trunc('hour', ts)"
            return f"time_bucket(to_microseconds({w}), ts)"
        offset = offset_sql(transitions)
        return f"make_timestamp(t - (((t + ({offset})) % {w}) + {w}) % {w})"
    if constant is not None:
        return f"date_trunc('{size.calendar}', ts + to_microseconds({constant}))"
    return f"date_trunc('{size.calendar}', make_timestamp(t + ({offset_sql(transitions)})))"


def bucket_numpy(t: npt.NDArray[np.int64], size: Every,
                 transitions: Transitions) -> npt.NDArray[np.int64]:
    """The same buckets as `bucket_sql`, as epoch µs, for sorted or unsorted ``t``."""
    starts = np.array([at for at, _ in transitions], dtype=np.int64)
    offsets = np.array([off for _, off in transitions], dtype=np.int64)
    index = np.clip(np.searchsorted(starts, t, side="right") - 1, 0, len(starts) - 1)
    local = t + offsets[index]
    if size.width_us is not None:
        w = size.width_us
        return np.asarray(t - np.mod(local, w), dtype=np.int64)
    if size.calendar == "day":
        return np.asarray(local - np.mod(local, DAY_US), dtype=np.int64)
    if size.calendar == "week":
        days = np.floor_divide(local, DAY_US)
        # 1970-01-01 was a Thursday: step back to the Monday of each week
        return np.asarray((days - np.mod(days + 3, 7)) * DAY_US, dtype=np.int64)
    unit = "M" if size.calendar == "month" else "Y"
    truncated = local.astype("datetime64[us]").astype(f"datetime64[{unit}]")
    return truncated.astype("datetime64[us]").astype(np.int64)


#: bucket starts are whole quarter hours where every offset in use is (today's zones; not
#: local mean times before the 20th century): `bucket_edges` may step by it then
GRID_US = 15 * 60 * MICROS


def bucket_edges(lo: int, hi: int, size: Every,
                 transitions: Transitions) -> tuple[npt.NDArray[np.int64],
                                                    npt.NDArray[np.int64]]:
    """UTC edges of the buckets covering (lo, hi], and each bucket's id.

    ``edges[k]`` is where bucket ``ids[k]`` starts; the last edge closes the range.
    """
    first = lo - np.mod(lo, GRID_US)
    grid = np.arange(first, hi + GRID_US + 1, GRID_US, dtype=np.int64)
    ids = bucket_numpy(grid, size, transitions)
    change = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
    edges = grid[change]
    # a closing edge after the last bucket so that every row falls between two edges
    step = size.width_us or 366 * DAY_US
    return np.r_[edges, edges[-1] + step], np.r_[ids[change], ids[change][-1]]


def label_buckets(bucket: pa.Array | pa.ChunkedArray, size: Every,
                  tz: str) -> tuple[pa.Array, pa.Array]:
    """UTC start and end instants of each bucket id."""
    if size.width_us is not None:  # the id is the UTC start
        if isinstance(bucket, pa.ChunkedArray):
            bucket = bucket.combine_chunks()
        start = bucket.cast(pa.timestamp("us")).cast(pa.int64())
        return (start.cast(TS_TYPE),
                pc.add(start, pa.scalar(size.width_us, pa.int64())).cast(TS_TYPE))
    starts = pd.DatetimeIndex(np.asarray(bucket.cast(pa.timestamp("us")).to_numpy(
        zero_copy_only=False), dtype="datetime64[us]"))
    step = {"day": pd.DateOffset(days=1), "week": pd.DateOffset(weeks=1),
            "month": pd.DateOffset(months=1), "year": pd.DateOffset(years=1)}
    earliest = np.ones(len(starts), dtype=bool)  # a local midnight seen twice: the first
    utc_start = starts.tz_localize(tz, ambiguous=earliest,
                                   nonexistent="shift_forward").tz_convert("UTC")
    utc_end = (starts + step[str(size.calendar)]).tz_localize(
        tz, ambiguous=earliest, nonexistent="shift_forward").tz_convert("UTC")
    return pa.array(utc_start, TS_TYPE), pa.array(utc_end, TS_TYPE)


def bucket_arithmetic_sql(size: Every, transitions: Transitions,
                          column: str = "ts") -> tuple[str, list[str], str]:
    """The bucket of epoch-µs ``column`` as epoch µs (the UTC start for fixed widths, the
    local wall-clock start for calendar buckets, as `bucket_numpy` gives it), in integer
    arithmetic only: for engines without a time type that spans 1800-2200 (ClickHouse's
    DateTime ends in 2106).

    Returns three parts: ``_local`` (the local time, ``expr AS _local``) for an inner
    query, the named steps (``expr AS _name``) for the query around it, and the bucket's
    expression over them. ClickHouse expands aliases where they are used, so the zone's
    offsets, which may be hundreds of cases, are computed a query below the arithmetic
    that uses them a dozen times. ``intDiv`` and ``%`` truncate towards zero there, and
    every number is an Int64 (an unsigned literal would turn a negative time unsigned),
    so each modulo is made non-negative first, unless every local time from the first of
    ``transitions`` on is positive (rows before it have no offset to go by anyway)."""
    local = f"({column} + {offset_steps_sql(transitions, column)}) AS _local"
    # From the first transition on, local times are positive when the earliest one is:
    # then truncation is flooring, and the modulo needs no correction.
    positive = transitions[0][0] + min(offset for _, offset in transitions) >= 0

    def modulo(width: str) -> str:
        return f"(_local % {width})" if positive else f"(((_local % {width}) + {width}) % {width})"

    if size.width_us is not None:
        w = f"toInt64({size.width_us})"
        return local, [], f"({column} - {modulo(w)})"
    day = f"toInt64({DAY_US})"
    steps = [f"intDiv(_local, {day}) AS _days" if positive
             else f"intDiv(_local - {modulo(day)}, {day}) AS _days"]
    if size.calendar == "day":
        return local, steps, f"(_days * {day})"
    if size.calendar == "week":
        # 1970-01-01 was a Thursday: step back to the Monday of each week
        return local, steps, f"((_days - (((_days + 3) % 7) + 7) % 7) * {day})"
    # H. Hinnant's civil-from-days, for days from 0000-03-01 on (where truncating and
    # flooring division agree): the year counted from 1 March, and the day in it
    steps += ["intDiv(_days + 719468, 146097) AS _era",
              "(_days + 719468 - _era * 146097) AS _doe",
              "intDiv(_doe - intDiv(_doe, 1460) + intDiv(_doe, 36524) - intDiv(_doe, 146096), "
              "365) AS _yoe",
              "(_doe - (365 * _yoe + intDiv(_yoe, 4) - intDiv(_yoe, 100))) AS _doy",
              "intDiv(5 * _doy + 2, 153) AS _mp"]  # month from March: 0 = March, 11 = Feb
    march = "(_days - _doy)"  # the 1 March that year began on
    if size.calendar == "month":
        return local, steps, f"(({march} + intDiv(153 * _mp + 2, 5)) * {day})"
    # 1 January is 306 days after 1 March of the year before, and 59 or 60 days before
    # 1 March of its own year (60 in a leap year)
    steps.append("(_yoe + _era * 400) AS _year")
    leap = "((_year % 4) = 0 AND ((_year % 100) != 0 OR (_year % 400) = 0))"
    return local, steps, f"(if(_mp >= 10, {march} + 306, {march} - 59 - {leap}) * {day})"


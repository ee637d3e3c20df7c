"""Reads of ClickHouse readings that say FINAL only where it can matter.

FINAL replaces rewritten keys while a query reads, and it cost 40-50 ms per half-million
rows of one series on 18.16 even where every month was one part. A key lives in one
partition (its UTC month); within one part it is unique (a write never sends a key twice,
and a merge keeps one row of each). So a partition held in one part on every shard has
nothing to replace: it is read plainly, and only partitions in several parts with FINAL.

Which partitions those are comes from ``system.parts``. A write or merge between that look
and the query would make the split wrong, so the parts are looked at again after the query:
parts never change once written, and a new or merged part has a new name, so an unchanged
set of names for every partition read plainly proves that the query read just those parts.
When they changed, the query runs again (a few times, then all of it with FINAL). The look
after one query is the look before the next, so a quiet store costs one small query more.
"""

from __future__ import annotations

import datetime as dt
import re
import threading
from collections.abc import Callable, Sequence
from typing import TypeVar

from meterhub.store.clickhouse_http import ClickHouseClient, literal

T = TypeVar("T")

#: readings' partition key: UTC YYYYMM from 1970 until 2100, where DateTime holds the
#: times, and before and after, months of average length counted from the epoch (negative
#: ids less a million, apart from every YYYYMM); see `partition_of`. DateTime functions wrap
#: (18.16) or saturate (current) outside their range, and a key must fall in the same
#: partition on every version: the guard keeps them out of it. (A calendar month in integer
#: arithmetic alone made current ClickHouse 30x slower to insert.)
MONTHS_UNTIL_US = 4_102_444_800_000_000
AVERAGE_MONTH_US = 2_629_746_000_000
#: (the divisor is Int64: 18.16 divides an Int64 by an unsigned literal as unsigned, so
#: times before 1970 fell into partitions of wrapped numbers that other versions differ on)
PARTITION_KEY = (f"if(ts >= 0 AND ts < {MONTHS_UNTIL_US}, "
                 "toInt64(toYYYYMM(toDateTime(intDiv(ts, 1000000), 'UTC'))), "
                 f"intDiv(ts, toInt64({AVERAGE_MONTH_US})) - 1000000)")
RETRIES = 3  #: runs of a query the parts changed under, before all of it says FINAL
#: a part's name: partition id, first and last block number, level (and mutation)
_PART_BLOCKS = re.compile(r"[^_]+_(\d+)_(\d+)_\d+(?:_\d+)?")
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)

Snapshot = dict[int, frozenset[tuple[int, str]]]  #: partition -> (shard, part name) pairs
#: (plain, final conditions, guarded) -> answer; see `PartsWatch.exact`
Run = Callable[[str | None, str | None, bool], T]


def partition_of(ts: int) -> int:
    """The partition of a reading at epoch µs ``ts``, as `PARTITION_KEY` computes it
    (ClickHouse's intDiv truncates towards zero)."""
    if 0 <= ts < MONTHS_UNTIL_US:
        day = _EPOCH + dt.timedelta(microseconds=ts)
        return day.year * 100 + day.month
    quotient = abs(ts) // AVERAGE_MONTH_US
    return (quotient if ts >= 0 else -quotient) - 1_000_000


def partition_span(partition: int) -> tuple[int, int]:
    """The epoch µs ``[start, end)`` from 1800 to 2200 that `partition_of` maps to
    ``partition``. (Times beyond year 85,000, which only rows planted past the store's
    checks have, give ids that may equal a YYYYMM: reads never ask for them.)"""
    if partition > 0:  # YYYYMM
        year, month = divmod(partition, 100)
        if not (1970 <= year < 2100 and 1 <= month <= 12):
            return 0, 0  # none of the times a reading may have
        start = dt.datetime(year, month, 1, tzinfo=dt.UTC)
        end = dt.datetime(year + month // 12, month % 12 + 1, 1, tzinfo=dt.UTC)
        return _us(start), _us(end)
    quotient = partition + 1_000_000
    if quotient > 0:  # 2100 on
        return (max(quotient * AVERAGE_MONTH_US, MONTHS_UNTIL_US),
                (quotient + 1) * AVERAGE_MONTH_US)
    # before 1970: truncation puts (-(k+1) months, -k months] in quotient -k
    return (quotient - 1) * AVERAGE_MONTH_US + 1, min(quotient * AVERAGE_MONTH_US + 1, 0)


def _us(moment: dt.datetime) -> int:
    return (moment - _EPOCH) // dt.timedelta(microseconds=1)


def ts_ranges_sql(spans: Sequence[tuple[int, int]]) -> str:
    """``ts`` within any of ``spans``, adjacent ones joined."""
    joined: list[list[int]] = []
    for start, end in sorted(spans):
        if joined and joined[-1][1] >= start:
            joined[-1][1] = max(joined[-1][1], end)
        else:
            joined.append([start, end])
    return " OR ".join(f"(ts >= {start} AND ts < {end})" for start, end in joined)


class PartsWatch:
    """Which partitions of a readings table span several parts, on every shard."""

    def __init__(self, shards: Callable[[], list[ClickHouseClient]], database: str,
                 table: str) -> None:
        self._make_shards = shards
        self._shards: list[ClickHouseClient] | None = None
        self._sql = (f"SELECT partition, name FROM system.parts WHERE database = "
                     f"{literal(database)} AND table = {literal(table)} AND active")
        self._seen: Snapshot | None = None
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            shards, self._shards = self._shards or [], None
        for shard in shards:
            shard.close()

    def snapshot(self) -> Snapshot:
        """Every active part of the table, by partition."""
        with self._lock:
            if self._shards is None:
                self._shards = self._make_shards()
            shards = self._shards
        found: dict[int, set[tuple[int, str]]] = {}
        for number, shard in enumerate(shards):
            for partition, name in shard.query_rows(self._sql, use_database=False):
                found.setdefault(int(partition), set()).add((number, str(name)))
        return {partition: frozenset(names) for partition, names in found.items()}

    def held_range(self, lo: int, hi: int) -> tuple[int, int] | None:
        """The first and last µs within [lo, hi) of the months holding any reading (a look
        at the parts, which the next `exact` starts from); None when there is none."""
        self._seen = self.snapshot()
        spans = [(max(start, lo), min(end, hi)) for start, end in map(partition_span,
                                                                       self._seen)]
        spans = [(start, end) for start, end in spans if start < end]
        if not spans:
            return None
        return min(start for start, _ in spans), max(end for _, end in spans) - 1

    def exact(self, lo: int, hi: int, run: Run[T], *,
              unguarded: Callable[[Snapshot], bool] | None = None) -> T:
        """``run(plain, final, guarded)`` over readings with ts in [lo, hi): rows where
        ``plain`` holds are to be read without FINAL, those where ``final`` holds with it
        (None: no rows there); run again until the parts it read were the parts there are.

        ``guarded`` is False where ``unguarded(parts)`` proves that the run's guard (a
        condition that keeps rows out) would keep none out of these parts: the run may then
        leave it out, and counts only if no part came meanwhile with rows those did not
        hold (merges and mutations may run)."""
        before = self._seen if self._seen is not None else self.snapshot()
        for _ in range(RETRIES):
            spans = {p: partition_span(p) for p in before}
            touched = {p for p, (start, end) in spans.items() if start < hi and end > lo}
            several = {p for p in touched if _several_parts(before[p])}
            final = ts_ranges_sql([spans[p] for p in several]) or None
            plain = "1" if final is None else f"NOT ({final})"
            guarded = unguarded is None or not unguarded(before)
            answer = run(plain, final, guarded)
            after = self.snapshot()
            self._seen = after
            read_plainly = {p for p in after if p not in several and _overlaps(p, lo, hi)}
            if all(after.get(p) == before.get(p) for p in read_plainly | (touched - several)
                   ) and (guarded or _no_new_rows(before, after)):
                return answer
            before = after
        return run(None, "1", True)


def _no_new_rows(before: Snapshot, after: Snapshot) -> bool:
    """Whether every part in ``after`` holds only rows the parts in ``before`` held: a merge
    or a mutation is named by the block numbers of the parts it replaced, while an insert
    (or an attached part) takes a number past every one its shard had (one count per
    table on each server)."""
    newest: dict[int, int] = {}
    for names in before.values():
        for shard, name in names:
            numbers = _PART_BLOCKS.fullmatch(name)
            if numbers is None:
                return False
            newest[shard] = max(newest.get(shard, -1), int(numbers[2]))
    for partition, names in after.items():
        for shard, name in names - before.get(partition, frozenset()):
            numbers = _PART_BLOCKS.fullmatch(name)
            if numbers is None or int(numbers[2]) > newest.get(shard, -1):
                return False
    return True


def _several_parts(names: frozenset[tuple[int, str]]) -> bool:
    shards = [shard for shard, _ in names]
    return len(shards) != len(set(shards))


def _overlaps(partition: int, lo: int, hi: int) -> bool:
    start, end = partition_span(partition)
    return start < hi and end > lo

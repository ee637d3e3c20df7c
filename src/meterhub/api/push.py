"""POST /api/v1/readings bodies: read as they arrive, a slice at a time, into Arrow columns.

The body is never held whole, nor as one Python object per reading for the whole batch: a
JSON array is cut between items (at ``},`` when that parses, else where a NumPy scan of
the bytes finds a top-level comma, quotes and escapes respected), a CSV text at row ends
(newlines after an even number of quotes). Each slice is parsed in a worker thread while
the next bytes arrive (orjson, then columns; pyarrow's CSV reader with the header line in
front), so only compact Arrow columns add up. JSON columns are validated (`to_readings`)
a group of slices at a time, since slices may differ in their columns and types; CSV text
columns all share the header's and go to the store as they are, which validates them as
it did a CSV body read whole. The batch stays all or nothing: a bad item anywhere is a
400 naming its index, and the store writes the whole batch in one transaction.

Limits (`PUSH_LIMITS`, `MAX_PUSH_ROWS`) keep the largest batch of every format within
the server's memory budget (BENCHMARKS.md, "Peak server memory per push format"): a body
over its format's limit, by Content-Length or as it arrives, is a 413.
"""

from __future__ import annotations

import asyncio
import operator
import re
from abc import ABC, abstractmethod
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
from fastapi import Request
from starlette.concurrency import run_in_threadpool

from meterhub.api.problems import Problem
from meterhub.errors import InputError
from meterhub.fileio import read_csv_bytes
from meterhub.model import (
    CHANNEL_HINT_COLUMNS,
    NOT_BOOLEAN,
    READING_SCHEMA,
    records_to_arrow,
    to_readings,
)

JSON = "application/json"
CSV = "text/csv"
#: the largest body of each format, in bytes
PUSH_LIMITS: dict[str, int] = {JSON: 8_000_000, CSV: 4_000_000}
#: the most readings in one batch, whatever the format
MAX_PUSH_ROWS = 60_000
SLICE_BYTES = 1 << 18  #: about this much of the body is parsed at a time
#: rows read are validated this many at a time: the validator costs about 10 ms a call
#: whatever the rows, and its scratch memory grows with them (fewer, larger groups were
#: faster and peaked higher: BENCHMARKS.md)
GROUP_ROWS = 10_000
_REQUIRED = ("device", "channel", "ts", "unit")
_QUOTE, _BACKSLASH, _COMMA = 34, 92, 44


def limits_text() -> str:
    """The limits, as the 413 answer and the README state them."""
    sizes = ", ".join(f"{media} {size / 1e6:g} MB" for media, size in PUSH_LIMITS.items())
    return f"{sizes}, and at most {MAX_PUSH_ROWS:,} readings"


def too_large(media: str) -> Problem:
    return Problem(413, f"the batch is over the limit for {media} ({limits_text()}): send "
                   "it in smaller batches")


async def read_push(request: Request, media: str, source: str) -> pa.Table:
    """The body of a push as validated readings (``source`` for rows without one); a
    413 once it passes its format's limit, a 400 for a bad item. Nothing is written."""
    limit = PUSH_LIMITS[media]
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large(media)
    batch: _Batch = _JsonBatch(source) if media == JSON else _CsvBatch(source)
    pending: list[bytes] = []
    size = received = 0
    work: asyncio.Future[None] | None = None
    try:
        async for chunk in request.stream():
            received += len(chunk)
            if received > limit:
                raise too_large(media)
            pending.append(chunk)
            size += len(chunk)
            if size >= SLICE_BYTES:
                if work is not None:  # one slice at a time: memory stays bounded
                    await work
                work = asyncio.ensure_future(run_in_threadpool(batch.feed, b"".join(pending)))
                pending, size = [], 0
        if work is not None:
            await work
            work = None
        await run_in_threadpool(batch.feed, b"".join(pending))
        return await run_in_threadpool(batch.finish)
    finally:
        if work is not None:  # an early answer: the slice being parsed is dropped
            work.add_done_callback(_drop)


def _drop(task: asyncio.Future[None]) -> None:
    if not task.cancelled():
        task.exception()


def item_problem(exc: InputError, media: str) -> Problem:
    """A rejected batch: which item (0-based index; CSV rows also by line) and why."""
    if exc.row is None:
        return Problem(400, f"nothing was written: {exc}")
    index = exc.row - 1
    where = f"item {index}" if media == JSON else f"row {exc.row} (line {exc.row + 1})"
    return Problem(400, f"nothing was written: {where}: {exc.reason}",
                   errors=[{"index": index, "reason": exc.reason}])


class _Batch(ABC):
    """Validated slices of one batch, and the rows they hold; a format reads its body
    (`feed`, `finish`)."""

    media = JSON
    #: items may leave out ``value`` (sensor errors): only a batch without any value
    #: misses the column (CSV names its columns once, in the header)
    values_optional = False

    def __init__(self, source: str) -> None:
        self.source = source
        self.rows = 0  # validated
        self.tables: list[pa.Table] = []  # validated
        self.seen: set[str] = set()
        self.raw: list[pa.Table] = []  # read, not yet validated
        self.raw_rows = 0

    @abstractmethod
    def feed(self, data: bytes) -> None:
        """Take the body's next bytes."""

    @abstractmethod
    def finish(self) -> pa.Table:
        """The whole batch, validated, once the body has ended."""

    def _queue(self, raw: pa.Table) -> None:
        """Keep the slice ``raw`` (the batch's next rows, as read) until `GROUP_ROWS` rows
        wait or its columns differ from theirs; then validate them together."""
        if self.raw and raw.schema != self.raw[0].schema:
            self._validate()
        self.raw.append(raw)
        self.raw_rows += raw.num_rows
        if self.raw_rows >= GROUP_ROWS:
            self._validate()

    def _validate(self) -> None:
        if self.raw:
            raw, self.raw, self.raw_rows = pa.concat_tables(self.raw), [], 0
            self._add(raw)

    def _add(self, raw: pa.Table) -> None:
        """Validate the slice ``raw`` (the next rows of the batch) and keep its columns."""
        if raw.num_rows == 0:
            return
        if self.rows + raw.num_rows > MAX_PUSH_ROWS:
            raise too_large(self.media)
        names = set(raw.column_names)
        if self.tables:
            # a column the batch has but this slice lacks is null here, as it would be
            # were the batch read whole
            for name in sorted((self.seen | {"value"}) - names):
                raw = raw.append_column(name, pa.nulls(raw.num_rows))
        elif self.values_optional and "value" not in names and not ({*_REQUIRED} - names):
            # sensor errors need no value: whether the batch has values shows at its end
            raw = raw.append_column("value", pa.nulls(raw.num_rows))
        self.seen |= names
        try:
            table = to_readings(raw, source=self.source, first_row=self.rows + 1,
                                keep_hints=True)
        except InputError as exc:
            raise item_problem(exc, self.media) from None
        self.rows += table.num_rows
        self.tables.append(table)

    def _table(self) -> pa.Table:
        if self.values_optional and self.rows and "value" not in self.seen:
            raise Problem(400, "nothing was written: missing column(s) value: readings need "
                          "device, channel, ts, value and unit")
        hints = [name for name in CHANNEL_HINT_COLUMNS
                 if any(name in t.column_names for t in self.tables)]
        schema = READING_SCHEMA
        for name in hints:
            schema = schema.append(pa.field(name, pa.string()))
        tables = []
        for table in self.tables:
            for name in hints:
                if name not in table.column_names:
                    table = table.append_column(name, pa.nulls(table.num_rows, pa.string()))
            tables.append(table.select(schema.names).cast(schema))
        self.tables = []
        return pa.concat_tables(tables) if tables else READING_SCHEMA.empty_table()


class _Cutter:
    """Where to cut a growing JSON array: after its last comma between top-level items,
    outside strings, found with NumPy a region at a time. What a region leaves to the
    next (inside a string or not, nesting depth, an odd run of backslashes) is carried,
    so every byte is scanned once."""

    def __init__(self) -> None:
        self.in_string = False
        self.escaping = False  # the last region ended on an odd run of backslashes
        self.depth = 1  # inside the top-level array
        self.scanned = 0  # bytes of the buffer already scanned
        self.cut = -1  # the last separator found so far, -1 for none

    def scan(self, buffer: bytearray) -> None:
        while self.scanned < len(buffer):
            stop = min(len(buffer), self.scanned + SLICE_BYTES)
            with memoryview(buffer) as view, view[self.scanned:stop] as region:
                found = self._region(np.frombuffer(region, dtype=np.uint8))
            if found >= 0:
                self.cut = self.scanned + found
            self.scanned = stop

    def taken(self, count: int) -> None:
        """The buffer's first ``count`` bytes were cut off."""
        self.scanned -= count
        self.cut = self.cut - count if self.cut >= count else -1

    def _region(self, data: np.ndarray[Any, Any]) -> int:
        quotes = data == _QUOTE
        self._unescaped(data, quotes)
        inside = np.cumsum(quotes, dtype=np.int32)
        if self.in_string:
            inside += 1
        outside = inside % 2 == 0
        self.in_string = bool(inside[-1] % 2)
        step = (((data == 123) | (data == 91)).astype(np.int8)
                - ((data == 125) | (data == 93)).astype(np.int8))
        step[~outside] = 0
        depth = np.cumsum(step, dtype=np.int32) + self.depth
        self.depth = int(depth[-1])
        hits = np.flatnonzero((data == _COMMA) & outside & (depth == 1))
        return int(hits[-1]) if hits.size else -1

    def _unescaped(self, data: np.ndarray[Any, Any], quotes: np.ndarray[Any, Any]) -> None:
        """Clear the quotes that a backslash escapes (those after an odd run of them)."""
        slashes = data == _BACKSLASH
        carried = 1 if self.escaping else 0
        if not slashes.any():
            if carried and quotes[0]:
                quotes[0] = False
            self.escaping = False
            return
        index = np.arange(data.size, dtype=np.int64)
        last_other = np.maximum.accumulate(np.where(slashes, -1, index))
        at = np.flatnonzero(quotes)
        before = np.maximum(at - 1, 0)
        other = np.where(at > 0, last_other[before], -1)
        run = at - 1 - other + np.where(other < 0, carried, 0)
        quotes[at[run % 2 == 1]] = False
        tail = data.size - 1 - int(last_other[-1]) + (carried if last_other[-1] < 0 else 0)
        self.escaping = bool(slashes[-1]) and tail % 2 == 1


class _JsonBatch(_Batch):
    """A JSON array of readings, parsed a slice of whole items at a time.

    A slice ends at a comma between two items. The last ``},`` of the bytes so far is
    tried first: ``[`` + the bytes before the comma + ``]`` parses as JSON only when that
    comma is between top-level items (parsing is deterministic from the array's start),
    so a parse that succeeds is a right cut and its items are used. When it fails (a
    ``},`` inside a string, nested values, or a broken body), `_Cutter` finds the cut
    exactly.
    """

    media = JSON
    values_optional = True
    _SMALL = 65_536  #: a body that is not an array is read whole up to this size

    def __init__(self, source: str) -> None:
        super().__init__(source)
        self.buffer = bytearray()
        self.array: bool | None = None  # whether the body is an array; None until known
        self.cutter = _Cutter()
        self.guessing = True  # until a guess fails; again after the next cut
        self.items = 0  # items before the buffer

    def feed(self, data: bytes) -> None:
        self.buffer += data
        if self.array is None:
            text = self.buffer.lstrip(_JSON_SPACE)
            if not text:
                self.buffer.clear()
                return
            self.array = text[:1] == b"["
            self.buffer = bytearray(text[1:] if self.array else text)
        if not self.array:
            if len(self.buffer) > self._SMALL:
                raise _not_an_array()
            return
        if len(self.buffer) >= SLICE_BYTES:
            self._cut()

    def finish(self) -> pa.Table:
        if not self.array:  # empty, or not an array: what is wrong with it, as before
            try:
                orjson.loads(bytes(self.buffer))
            except orjson.JSONDecodeError as exc:
                raise Problem(400, f"the body is not JSON ({exc}): send an array of "
                              "readings") from None
            raise _not_an_array()
        rest = bytes(b"[" + self.buffer)
        self.buffer = bytearray()
        self._items(self._parse(rest, last=True))
        self._validate()
        return self._table()

    def _cut(self) -> None:
        guess = self.buffer.rfind(b"},") if self.guessing else -1
        for _ in range(3):
            if guess < 0:
                break
            try:
                items = orjson.loads(b"[" + self.buffer[:guess + 1] + b"]")
            except orjson.JSONDecodeError:
                guess = self.buffer.rfind(b"},", 0, guess)
                continue
            del self.buffer[:guess + 2]
            self.cutter = _Cutter()  # the buffer starts between items
            self._items(items)
            return
        self.guessing = False  # guessing again would parse the same bytes again
        self.cutter.scan(self.buffer)
        cut = self.cutter.cut
        if cut >= SLICE_BYTES or (cut >= 0 and len(self.buffer) > 4 * SLICE_BYTES):
            piece = bytes(b"[" + self.buffer[:cut] + b"]")
            del self.buffer[:cut + 1]
            self.cutter.taken(cut + 1)
            self.guessing = True
            self._items(self._parse(piece, last=False))

    def _parse(self, text: bytes, *, last: bool) -> list[Any]:
        try:
            items = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            raise Problem(400, f"the body is not JSON ({exc.msg}, at item {self.items} or "
                          "after): send an array of readings") from None
        if not isinstance(items, list) or (not items and (self.items or not last)):
            # `[` + a cut piece + `]` holds items unless the body had `[,` `,,` or `,]`
            raise Problem(400, "the body is not JSON (a comma without an item after item "
                          f"{self.items}): send an array of readings")
        return items

    def _items(self, items: list[Any]) -> None:
        first = self.items
        self.items += len(items)
        if self.items > MAX_PUSH_ROWS:
            raise too_large(self.media)
        try:
            raw = _records_table(items)
        except InputError as exc:
            raise item_problem(_shifted(exc, first), self.media) from None
        del items
        self._queue(raw)


def _records_table(records: list[Any]) -> pa.Table:
    """`records_to_arrow` of orjson's items (dicts, lists and scalars), with the same
    columns and errors, a few times faster: the per-item checks run in C (``map``) and
    look at values one by one only where a column is not plain."""
    if set(map(type, records)) - {dict}:
        return records_to_arrow(records)  # names the first item that is not an object
    shapes = dict.fromkeys(map(tuple, records))  # the distinct key lists, in order
    names = list(dict.fromkeys(key for shape in shapes for key in shape))
    if records and not names:  # only empty objects: a table of no columns has no rows
        reason = "an empty object: readings need device, channel, ts, value and unit"
        raise InputError(f"item 1: {reason}", row=1, reason=reason)
    pick = operator.itemgetter if len(shapes) == 1 else _getter
    columns: dict[str, pa.Array] = {}
    for name in names:
        values = list(map(pick(name), records))
        try:
            column = pa.array(values)
            plain = not pa.types.is_nested(column.type)
            if plain and name in NOT_BOOLEAN and not pa.types.is_boolean(column.type) \
                    and not pa.types.is_string(column.type):
                plain = bool not in set(map(type, values))  # Arrow reads true as 1.0
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
            plain = False
        if not plain:  # an object or array somewhere, or mixed types: as records_to_arrow
            columns[name] = records_to_arrow([{name: value} for value in values]
                                             ).column(name).combine_chunks()
        else:
            columns[name] = column
    return pa.table(columns) if columns else pa.table({})


def _getter(name: str) -> Any:
    return operator.methodcaller("get", name)


_JSON_SPACE = b" \t\r\n"


def _not_an_array() -> Problem:
    return Problem(400, "the body must be a JSON array of readings, each with device, "
                   "channel, ts, value and unit")


def _shifted(exc: InputError, rows: int) -> InputError:
    return InputError(str(exc), row=None if exc.row is None else exc.row + rows,
                      reason=exc.reason)


_CSV_WHERE = re.compile(r"^the body: row \d+ \(line \d+\): ")


class _CsvBatch(_Batch):
    """CSV text with a header line, read a slice of whole rows at a time (each slice
    with the header line in front) into text columns, which are compact (pyarrow makes no
    Python object per value). A row ends at a newline after an even number of quotes (a
    quote in a quoted field is doubled), counted by ``bytes.count``."""

    media = CSV

    def __init__(self, source: str) -> None:
        super().__init__(source)
        self.buffer = bytearray()
        self.header: bytes | None = None

    def feed(self, data: bytes) -> None:
        self.buffer += data
        if self.header is None:
            end = _row_end(self.buffer, first=True)
            if end < 0:
                return
            self.header = bytes(self.buffer[:end + 1])
            del self.buffer[:end + 1]
        if len(self.buffer) >= SLICE_BYTES:
            end = _row_end(self.buffer)
            if end >= 0:
                piece = bytes(self.header + self.buffer[:end + 1])
                del self.buffer[:end + 1]
                self._rows(piece)

    def finish(self) -> pa.Table:
        rest = bytes(self.buffer)
        self.buffer = bytearray()
        if self.header is None:  # a single line, or nothing: read as a whole body
            self._rows(rest)
        elif rest.strip():
            self._rows(self.header + rest)
        self._validate()
        return self._table()

    def _rows(self, text: bytes) -> None:
        before = self.rows + self.raw_rows
        try:
            raw = read_csv_bytes(text, threads=False)
        except InputError as exc:
            if exc.row is None:
                raise item_problem(exc, self.media) from None
            reason = _CSV_WHERE.sub("", exc.reason)
            raise item_problem(InputError(reason, row=exc.row + before, reason=reason),
                               self.media) from None
        if before + raw.num_rows > MAX_PUSH_ROWS:
            raise too_large(self.media)
        self._queue(raw)


def _row_end(buffer: bytearray, *, first: bool = False) -> int:
    """The first (``first``) or last newline of ``buffer`` outside quotes; -1 if none.
    ``buffer`` starts outside quotes, at a row's start."""
    if first:
        end = buffer.find(b"\n")
        while end >= 0 and buffer.count(b'"', 0, end) % 2:
            end = buffer.find(b"\n", end + 1)
        return end
    end = buffer.rfind(b"\n")
    quotes = buffer.count(b'"', 0, end) if end >= 0 else 0
    while end >= 0 and quotes % 2:
        before = buffer.rfind(b"\n", 0, end)
        quotes -= buffer.count(b'"', max(before, 0), end)
        end = before
    return end


__all__ = ["CSV", "JSON", "MAX_PUSH_ROWS", "PUSH_LIMITS", "item_problem", "limits_text",
           "read_push", "too_large"]

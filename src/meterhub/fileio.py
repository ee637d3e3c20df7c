"""Reading files of readings (CSV, JSON, Parquet) and streaming exports to them.

``read_`` functions parse a whole file into an Arrow table and validate every row before
anything is written, so a bad row rejects the file. ``export_`` streams record batches to
the output as they come from the store, never holding the whole range in memory.
"""

from __future__ import annotations

import contextlib
import csv
import io
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any, Literal

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from meterhub import encode
from meterhub.errors import InputError
from meterhub.model import READING_SCHEMA, Channel, records_to_arrow, to_readings

Format = Literal["csv", "json", "parquet"]
FORMATS: tuple[Format, ...] = ("csv", "json", "parquet")


def guess_format(path: Path, given: str | None) -> Format:
    """The file format: as given, else from the file's extension."""
    name = (given or path.suffix.lstrip(".")).lower()
    aliases: dict[str, Format] = {"csv": "csv", "json": "json", "jsonl": "json",
                                  "ndjson": "json", "parquet": "parquet", "pq": "parquet"}
    if name not in aliases:
        raise InputError(f"{path}: cannot tell the format from {path.suffix or 'no suffix'!r}: "
                         "pass --format csv, json or parquet")
    return aliases[name]


def read_readings_file(path: Path, *, fmt: str | None = None,
                       source: str | None = None) -> pa.Table:
    """Readings from one file, validated; an `InputError` names the file and the row."""
    kind = guess_format(path, fmt)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    try:
        if kind == "csv":
            raw = _read_csv(path)
        elif kind == "json":
            raw = _read_json(path)
        else:
            raw = pq.read_table(path)
    except UnicodeDecodeError:  # a CSV file's text, read by Python's csv module
        raise InputError(f"{path}: not a readable {kind} file: the text is not UTF-8"
                         ) from None
    except (pa.ArrowInvalid, orjson.JSONDecodeError, OSError) as exc:
        raise InputError(f"{path}: not a readable {kind} file: "
                         f"{str(exc).splitlines()[0]}") from None
    try:
        return to_readings(raw, source=source, keep_hints=True)
    except InputError as exc:
        raise in_file(exc, path, kind) from None


def in_file(exc: InputError, path: Path, kind: Format) -> InputError:
    """``exc`` (about the readings of a file, its row numbered from 1) as an `InputError`
    that names the file, and the row as the file's format counts it."""
    if exc.row is None:
        return InputError(f"{path}: {exc}")
    where = {"csv": _csv_where, "json": _json_where, "parquet": _parquet_where}[kind]
    return InputError(f"{path}: {where(exc.row)}: {exc.reason}", row=exc.row,
                      reason=exc.reason)


def _csv_where(row: int) -> str:
    return f"row {row} (line {row + 1})"


def _json_where(row: int) -> str:
    return f"item {row}"


def _parquet_where(row: int) -> str:
    return f"row {row}"


def read_csv_bytes(data: bytes, *, threads: bool = True) -> pa.Table:
    """Readings from CSV text in memory (an API push), validated like a CSV file.

    ``threads=False`` reads on the calling thread only: for many small pieces (a push
    read a slice at a time), where pyarrow's thread pool adds memory and little speed."""
    try:
        raw = _read_csv(data, threads=threads)
    except pa.ArrowInvalid as exc:
        raise InputError(f"not readable CSV: {str(exc).splitlines()[0]}") from None
    except UnicodeDecodeError:
        raise InputError("not readable CSV: the text is not UTF-8") from None
    return raw


def _read_csv(source: Path | bytes, *, threads: bool = True) -> pa.Table:
    name = "the body" if isinstance(source, bytes) else str(source)
    try:
        if isinstance(source, bytes):
            header = next(csv.reader(io.StringIO(source.decode("utf-8"), newline="")), None)
        else:
            with source.open(newline="", encoding="utf-8") as handle:
                header = next(csv.reader(handle), None)
    except csv.Error as exc:
        raise InputError(f"{name}: cannot read the header line: {exc}") from None
    def path() -> Path | io.BytesIO:
        return io.BytesIO(source) if isinstance(source, bytes) else source

    if not header:
        raise InputError(f"{name}: empty file: the first line must name the columns")
    # Every column as text: the validator reports bad values by row, not pyarrow. Only an
    # empty field is missing: "NA" and "null" are valid ids (pyarrow's default would read
    # them as missing, and the row as one without a device), except where a number is due
    options = pacsv.ConvertOptions(column_types=dict.fromkeys(header, pa.string()),
                                   null_values=[""], strings_can_be_null=True,
                                   quoted_strings_can_be_null=False)
    try:
        return _missing_numbers(pacsv.read_csv(
            path(), convert_options=options, read_options=pacsv.ReadOptions(
                use_threads=threads)))
    except pa.ArrowInvalid:
        # Read again on one thread, where pyarrow knows the line of a ragged row.
        ragged: list[Any] = []

        def remember(row: Any) -> str:
            ragged.append(row)
            return "error"

        with contextlib.suppress(pa.ArrowInvalid):
            pacsv.read_csv(path(), read_options=pacsv.ReadOptions(use_threads=False),
                           parse_options=pacsv.ParseOptions(invalid_row_handler=remember),
                           convert_options=options)
        if not ragged or ragged[0].number is None:
            raise
        line = int(ragged[0].number)
        raise InputError(f"{name}: {_csv_where(line - 1)}: expected "
                         f"{ragged[0].expected_columns} columns, got "
                         f"{ragged[0].actual_columns}", row=line - 1) from None


#: what pandas, R and spreadsheets write for a missing number (pyarrow's list)
_MISSING_NUMBER = pa.array([text for text in pacsv.ConvertOptions().null_values if text])


def _missing_numbers(table: pa.Table) -> pa.Table:
    """``table`` with the unquoted spellings of a missing number (NA, NaN, null ...) as
    missing in its number columns, value and seq."""
    for name in ("value", "seq"):
        if name in table.column_names:
            column = table.column(name)
            missing = pc.is_in(column, value_set=_MISSING_NUMBER)
            table = table.set_column(table.schema.get_field_index(name), name,
                                     pc.if_else(missing, pa.scalar(None, pa.string()),
                                                column))
    return table


def _read_json(path: Path) -> pa.Table:
    """A JSON array of objects, or JSON Lines (one object per line)."""
    data = path.read_bytes()
    stripped = data.lstrip()
    if stripped.startswith(b"["):
        items = orjson.loads(data)
    else:
        items = [orjson.loads(line) for line in data.splitlines() if line.strip()]
    if not isinstance(items, list):
        raise InputError(f"{path}: expected a JSON array of readings or JSON Lines")
    try:
        return records_to_arrow(items)
    except InputError as exc:
        raise InputError(f"{path}: {_json_where(exc.row or 0)}: {exc.reason}") from None


#: Readings with their channel's quantity and kind, as `export_readings` writes them when
#: given the channels: an import of such a file creates the same channels.
EXPORT_SCHEMA = READING_SCHEMA.append(pa.field("quantity", pa.string())).append(
    pa.field("kind", pa.string()))


def export_readings(batches: Iterable[pa.RecordBatch], out: IO[bytes], fmt: Format,
                    *, on_batch: Callable[[int], None] | None = None,
                    channels: Iterable[Channel] | None = None) -> int:
    """Write readings batch by batch to a binary stream; returns the number of rows.

    With ``channels`` (e.g. ``hub.store.channels(selection)``), each row also carries its
    channel's ``quantity`` and ``kind`` (`EXPORT_SCHEMA`; null for a channel not given),
    so that importing the file into another store creates the same channels.
    """
    total = 0
    lookup = None if channels is None else {(c.device, c.channel): c for c in channels}

    def counted() -> Iterator[pa.RecordBatch]:
        nonlocal total
        for batch in batches:
            total += batch.num_rows
            yield batch if lookup is None else _with_channel_columns(batch, lookup)
            if on_batch:
                on_batch(batch.num_rows)

    schema = READING_SCHEMA if lookup is None else EXPORT_SCHEMA
    reader = pa.RecordBatchReader.from_batches(schema, counted())
    for chunk in encode.stream(reader, fmt):
        out.write(chunk)
    return total


def _with_channel_columns(batch: pa.RecordBatch,
                          lookup: Mapping[tuple[str, str], Channel]) -> pa.RecordBatch:
    """``batch`` with its channels' quantity and kind appended: repeated when the batch
    holds one channel (as the store's scans give them), else joined on (device, channel)."""
    n = batch.num_rows
    devices, names = batch.column("device"), batch.column("channel")
    if n and pc.all(pc.equal(devices, devices[0])).as_py() and pc.all(
            pc.equal(names, names[0])).as_py():
        channel = lookup.get((devices[0].as_py(), names[0].as_py()))
        quantity = pa.repeat(pa.scalar(channel and channel.quantity, pa.string()), n)
        kind = pa.repeat(pa.scalar(channel and channel.kind.value, pa.string()), n)
    else:
        catalog = pa.table({"device": [key[0] for key in lookup],
                            "channel": [key[1] for key in lookup],
                            "quantity": [c.quantity for c in lookup.values()],
                            "kind": [c.kind.value for c in lookup.values()]},
                           schema=pa.schema([("device", pa.string()),
                                             ("channel", pa.string()),
                                             ("quantity", pa.string()),
                                             ("kind", pa.string())]))
        keys = pa.table({"device": devices, "channel": names,
                         "_row": pa.array(np.arange(n, dtype=np.int64))})
        joined = keys.join(catalog, ["device", "channel"], join_type="left outer").sort_by(
            "_row")
        quantity = joined.column("quantity").combine_chunks()
        kind = joined.column("kind").combine_chunks()
    return pa.RecordBatch.from_arrays([*batch.columns, quantity, kind], schema=EXPORT_SCHEMA)

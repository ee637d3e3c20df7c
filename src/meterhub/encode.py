"""Arrow record batches -> JSON, CSV, Parquet or Arrow IPC bytes, streamed batch by batch.

One encoder for the API and for file exports. Following PERF.md, nothing builds a pydantic
model or a Python datetime per reading: JSON objects are assembled by Arrow kernels column
by column (orjson only escapes the rare string that needs it); CSV and JSON carry times
as ISO 8601 strings made by Arrow casts (a tz-aware CSV writer was 7x slower); Parquet
and Arrow are written by pyarrow into a sink drained after each batch. No format holds a
whole range in memory.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any, Literal

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

Format = Literal["json", "csv", "parquet", "arrow"]
MEDIA_TYPES: dict[Format, str] = {
    "json": "application/json",
    "csv": "text/csv; charset=utf-8",
    "parquet": "application/vnd.apache.parquet",
    "arrow": "application/vnd.apache.arrow.stream",
}
#: Accept-header media types and the format each selects (first match wins)
ACCEPTED: dict[str, Format] = {
    "application/json": "json", "text/csv": "csv", "application/vnd.apache.parquet": "parquet",
    "application/x-parquet": "parquet", "application/vnd.apache.arrow.stream": "arrow",
    "application/vnd.apache.arrow.file": "arrow",
}
_UNITS = (("s", 1_000_000), ("ms", 1_000), ("us", 1))


def _is_utc(kind: pa.DataType) -> bool:
    return kind.tz in (None, "UTC", "utc", "+00:00", "Etc/UTC")


def iso_times(column: pa.Array | pa.ChunkedArray, *, zulu: bool = True) -> pa.Array:
    """ISO 8601 strings of a timestamp column: ``...Z`` for UTC, else with the offset.

    UTC columns go through Arrow casts at the coarsest exact precision (seconds for the
    usual whole-second readings); other zones (aggregate buckets, few rows) use Python.
    ``zulu=False`` leaves the ``Z`` off UTC times (the JSON encoder adds it in one go).
    """
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if not _is_utc(column.type):
        return pa.array([None if v is None else v.isoformat() for v in column.to_pylist()],
                        pa.string())
    micros = column.cast(pa.timestamp("us"))
    values = micros.cast(pa.int64()).to_numpy(zero_copy_only=False)
    unit = next(name for name, size in _UNITS
                if size == 1 or not np.any(np.asarray(values) % size))
    text = pc.binary_replace_slice(micros.cast(pa.timestamp(unit)).cast(pa.string()), 10, 11,
                                   "T")
    return pc.binary_join_element_wise(text, pa.scalar("Z"), "") if zulu else text


def with_text_times(batch: pa.RecordBatch) -> pa.RecordBatch:
    """The batch with every timestamp column as ISO 8601 text."""
    arrays = [iso_times(col) if pa.types.is_timestamp(col.type) else col
              for col in batch.columns]
    return pa.RecordBatch.from_arrays(arrays, names=batch.schema.names)


_NULL = pa.scalar("null")
SMALL_BATCH = 1_000  #: batches below this size are encoded by orjson over Python rows
Segment = Any  #: constant JSON text (str), or an Arrow array of JSON text per row


def _escaped(column: pa.Array) -> Segment:
    """A string column as JSON text: each distinct value escaped once by orjson."""
    if column.null_count == len(column):
        return "null"
    encoded = pc.dictionary_encode(column)
    words = [orjson.dumps(v).decode() for v in encoded.dictionary.to_pylist()]
    if len(words) == 1 and column.null_count == 0:
        return words[0]  # one value in the whole batch (device, unit ...): fold it in
    return pc.fill_null(pa.array(words, pa.string()).take(encoded.indices), _NULL)


def _json_segments(column: pa.Array) -> list[Segment]:
    """JSON text of a column's values, as segments that `json_objects` joins."""
    kind = column.type
    if pa.types.is_dictionary(kind):
        column, kind = column.cast(kind.value_type), kind.value_type
    if pa.types.is_timestamp(kind):
        if _is_utc(kind):
            return ['"', pc.fill_null(iso_times(column, zulu=False), ""), 'Z"'] \
                if column.null_count == 0 else [_escaped(iso_times(column))]
        return [_escaped(iso_times(column))]
    if pa.types.is_floating(kind):
        finite = pc.is_finite(column)
        column = pc.if_else(finite, column, pa.scalar(None, kind))  # NaN/inf are no JSON
        return [pc.fill_null(column.cast(pa.string()), _NULL)]
    if pa.types.is_integer(kind) or pa.types.is_boolean(kind):
        return [pc.fill_null(column.cast(pa.string()), _NULL)]
    if pa.types.is_null(kind):
        return ["null"]
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return [_escaped(column)]
    return [pa.array([orjson.dumps(v, default=str).decode() for v in column.to_pylist()],
                     pa.string())]


def json_objects(batch: pa.RecordBatch, *, small: int = SMALL_BATCH) -> bytes | memoryview:
    """The rows of a batch as JSON objects separated by commas (no brackets).

    Built column-wise by Arrow kernels with no Python object per row: number and time
    casts, each distinct string escaped once, values constant in the batch folded into
    the text between columns, then one element-wise join. About 2x faster than orjson
    over row dicts (bench/api.py has the end-to-end figure).
    """
    if not batch.num_rows:
        return b""
    if batch.num_rows < small:
        # each Arrow kernel call costs tens of µs: for a few rows orjson is faster. Zoned
        # times go as Python's isoformat, since orjson rounds offsets to whole minutes
        # (Amsterdam was +00:19:32 until 1937)
        zoned = [i for i, f in enumerate(batch.schema)
                 if pa.types.is_timestamp(f.type) and not _is_utc(f.type)]
        for i in zoned:
            batch = batch.set_column(i, batch.schema.field(i).name, iso_times(batch.column(i)))
        return orjson.dumps(batch.to_pylist(), option=orjson.OPT_UTC_Z)[1:-1]
    segments: list[Segment] = []
    for index, (name, column) in enumerate(zip(batch.schema.names, batch.columns,
                                               strict=True)):
        segments.append(("{" if index == 0 else ",") + orjson.dumps(name).decode() + ":")
        segments += _json_segments(column)
    segments.append("},")
    parts: list[Any] = []
    for segment in segments:  # merge neighbouring constant texts
        if isinstance(segment, str) and parts and isinstance(parts[-1], str):
            parts[-1] += segment
        else:
            parts.append(segment)
    if len(parts) == 1:  # every column constant
        rows = pa.array([parts[0]] * batch.num_rows, pa.string())
    else:
        rows = pc.binary_join_element_wise(
            *(pa.scalar(p) if isinstance(p, str) else p for p in parts), "")
    offsets = np.frombuffer(rows.buffers()[1], dtype=np.int32)[rows.offset:
                                                                rows.offset + len(rows) + 1]
    data = rows.buffers()[2]
    # a view of Arrow's buffer, no copy (it keeps the buffer alive); without the last ","
    return memoryview(data)[int(offsets[0]):int(offsets[-1]) - 1]


def _batches(data: pa.RecordBatchReader | pa.Table) -> Iterable[pa.RecordBatch]:
    if isinstance(data, pa.Table):
        batches: list[pa.RecordBatch] = data.to_batches()
        return batches
    reader: Iterable[pa.RecordBatch] = data
    return reader


def stream_json(data: pa.RecordBatchReader | pa.Table, *, key: str | None = None,
                tail: Callable[[], dict[str, Any]] | None = None) -> Iterator[bytes | memoryview]:
    """A JSON array of row objects; with ``key``, an object ``{key: [...], **tail()}``."""
    yield b"{" + orjson.dumps(key) + b":[" if key else b"["
    first = True
    for batch in _batches(data):
        if not batch.num_rows:
            continue
        if not first:
            yield b","
        yield json_objects(batch)
        first = False
    if key is None:
        yield b"]"
        return
    extra = tail() if tail else {}
    yield b"]" + (b"," + orjson.dumps(extra)[1:] if extra else b"}")


class _Sink:
    """A write-only file for pyarrow writers whose bytes are taken after each batch."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.closed = False

    def write(self, data: Any) -> int:
        self.parts.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def take(self) -> bytes:
        data = b"".join(self.parts)
        self.parts.clear()
        return data


def stream_binary(data: pa.RecordBatchReader | pa.Table, fmt: Format,
                  schema: pa.Schema | None = None) -> Iterator[bytes]:
    """CSV (header once, ISO times), Parquet or Arrow IPC stream bytes, batch by batch."""
    schema = schema or data.schema
    if fmt == "csv":
        schema = pa.schema([pa.field(f.name, pa.string()) if pa.types.is_timestamp(f.type)
                            else f for f in schema])
    sink = _Sink()
    writer: Any
    if fmt == "csv":
        writer = pacsv.CSVWriter(sink, schema)
    elif fmt == "parquet":
        writer = pq.ParquetWriter(sink, schema)
    elif fmt == "arrow":
        writer = ipc.new_stream(sink, schema)
    else:
        raise ValueError(f"not a binary format: {fmt}")
    try:
        for batch in _batches(data):
            writer.write_batch(with_text_times(batch) if fmt == "csv" else batch)
            chunk = sink.take()
            if chunk:
                yield chunk
    finally:
        writer.close()
    chunk = sink.take()
    if chunk:
        yield chunk


def stream(data: pa.RecordBatchReader | pa.Table, fmt: Format) -> Iterator[bytes | memoryview]:
    """Bytes of ``data`` in ``fmt`` (JSON: a plain array of row objects)."""
    return stream_json(data) if fmt == "json" else stream_binary(data, fmt)

"""ClickHouse's Native format over HTTP, to and from Arrow, without a Python object per row.

The layout (the same from 18.16 to 26.x when the client sends no protocol version): each block
is ``varint columns, varint rows``, then per column ``string name, string type, data``, where a
string is ``varint length + bytes``. Data is column-wise:

- fixed-width numbers: raw little-endian values;
- ``Nullable(T)``: one byte per row (1 = NULL), then T's data with a filler under each NULL;
- ``String``: per value ``varint length + bytes``;
- ``Enum8/Enum16``: the Int8/Int16 codes; ``DateTime``: UInt32 seconds; ``Date``: UInt16 days;
  ``Bool``: UInt8; ``Nothing`` (the type of a bare NULL): one byte per row.

Arrow types of decoded columns: the matching integer and float types; ``String`` and enums as
``string``; ``DateTime`` as ``timestamp('s', tz='UTC')`` (ClickHouse stores UTC seconds, the
column's time zone only changes how text is printed); ``Date`` as ``date32``; ``Bool`` as
``bool``; ``Nothing`` as ``null``. Each field's metadata keeps the ClickHouse type under
``clickhouse_type``.

Encoding takes each column's ClickHouse type from the caller and casts what Arrow holds:
integers and floats to the column's width (a value that does not fit is an InputError);
enums from names (string or dictionary columns) or from codes; ``DateTime`` from timestamps
of whole seconds (naive ones are UTC) or integer seconds; ``Date`` from date32 or days;
``Bool`` from bools. Under a NULL goes 0, "" or an enum's first code.

An answer with no rows is an empty body (18.16 and 26.x alike: no header block), so
`decode_native` returns None for it and the caller supplies the columns.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from meterhub.errors import InputError, StoreError

#: rows per block that `encode_native` sends; ClickHouse itself answers in blocks of ~65k
DEFAULT_BLOCK_ROWS = 1_000_000
#: the field-metadata key holding a decoded column's ClickHouse type
TYPE_KEY = b"clickhouse_type"

_FIXED: dict[str, tuple[str, Any]] = {
    "Int8": ("<i1", pa.int8()), "Int16": ("<i2", pa.int16()),
    "Int32": ("<i4", pa.int32()), "Int64": ("<i8", pa.int64()),
    "UInt8": ("<u1", pa.uint8()), "UInt16": ("<u2", pa.uint16()),
    "UInt32": ("<u4", pa.uint32()), "UInt64": ("<u8", pa.uint64()),
    "Float32": ("<f4", pa.float32()), "Float64": ("<f8", pa.float64()),
}
# the stored integer of the types that are numbers underneath
_CODED: dict[str, str] = {"Enum8": "Int8", "Enum16": "Int16", "DateTime": "UInt32",
                          "Date": "UInt16", "Bool": "UInt8"}
_ENUM_ITEM = re.compile(r"\s*'((?:[^'\\]|\\.)*)'\s*=\s*(-?\d+)\s*(,|$)", re.DOTALL)
_ESCAPE = re.compile(rb"\\(x[0-9a-fA-F]{2}|.)", re.DOTALL)
_ESCAPES = {b"b": b"\b", b"f": b"\f", b"n": b"\n", b"r": b"\r", b"t": b"\t", b"0": b"\0",
            b"a": b"\a", b"v": b"\v", b"e": b"\x1b"}


class NativeFormatError(StoreError):
    """A Native body that does not parse: cut short, or not Native at all."""


def unescape(raw: bytes) -> bytes:
    """ClickHouse's backslash escapes undone (as in TabSeparated values and quoted names)."""
    def one(match: re.Match[bytes]) -> bytes:
        seq = match.group(1)
        if len(seq) == 3:
            return bytes([int(seq[1:], 16)])
        return _ESCAPES.get(seq, seq)
    return _ESCAPE.sub(one, raw) if b"\\" in raw else raw


@dataclass(frozen=True)
class ColumnType:
    """One ClickHouse column type that this module reads and writes."""

    #: the type as ClickHouse spells it, e.g. ``Nullable(Enum8('good' = 1, 'bad' = 2))``
    name: str
    #: the type under ``Nullable``, without parameters: ``Int64``, ``String``, ``Enum8``...
    base: str
    nullable: bool
    #: an enum's (name, code) pairs, in ClickHouse's order
    enum: tuple[tuple[str, int], ...] = ()

    @property
    def arrow_type(self) -> Any:
        if self.base in _FIXED:
            return _FIXED[self.base][1]
        return {"String": pa.string(), "Enum8": pa.string(), "Enum16": pa.string(),
                "DateTime": pa.timestamp("s", tz="UTC"), "Date": pa.date32(),
                "Bool": pa.bool_(), "Nothing": pa.null()}[self.base]

    def field(self, name: str) -> Any:
        return pa.field(name, self.arrow_type, nullable=True,
                        metadata={TYPE_KEY: self.name.encode()})


@functools.lru_cache(maxsize=256)
def parse_type(name: str) -> ColumnType:
    """The `ColumnType` of a ClickHouse type name; StoreError for types this module lacks."""
    inner = name.strip()
    nullable = inner.startswith("Nullable(") and inner.endswith(")")
    if nullable:
        inner = inner[len("Nullable("):-1].strip()
    base, _, params = inner.partition("(")
    base = base.strip()
    if base in ("Enum8", "Enum16") and params.endswith(")"):
        return ColumnType(name, base, nullable, _parse_enum(name, params[:-1]))
    # DateTime('Europe/Berlin') holds UTC seconds too: the zone only affects text output
    if base == "DateTime" and (not params or params.endswith(")")):
        return ColumnType(name, base, nullable)
    if not params and (base in _FIXED or base in ("String", "Date", "Bool", "Nothing")):
        return ColumnType(name, base, nullable)
    raise StoreError(
        f"ClickHouse type {name} is not supported by meterhub's Native codec: use Int*, "
        "UInt*, Float*, String, Enum8/16, DateTime, Date, Bool or Nullable of those "
        "(CAST the column in the query)")


def _parse_enum(name: str, body: str) -> tuple[tuple[str, int], ...]:
    items: list[tuple[str, int]] = []
    pos = 0
    while pos < len(body):
        match = _ENUM_ITEM.match(body, pos)
        if match is None:
            raise StoreError(f"cannot read the values of ClickHouse type {name}")
        items.append((unescape(match.group(1).encode()).decode(), int(match.group(2))))
        pos = match.end()
    if not items:
        raise StoreError(f"ClickHouse type {name} has no values")
    return tuple(items)


def arrow_schema(columns: Mapping[str, str] | Sequence[tuple[str, str]]) -> Any:
    """The Arrow schema `decode_native` gives for columns of these ClickHouse types."""
    pairs = columns.items() if isinstance(columns, Mapping) else columns
    return pa.schema([parse_type(type_name).field(name) for name, type_name in pairs])


# -- decoding ----------------------------------------------------------------------------


class _Cursor:
    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def varint(self) -> int:
        value, self.pos = _varint_at(self.data, self.pos)
        return value

    def take(self, size: int) -> int:
        """Skip `size` bytes and return where they start."""
        start = self.pos
        if start + size > len(self.data):
            raise NativeFormatError("the Native answer is cut short")
        self.pos = start + size
        return start

    def text(self) -> str:
        size = self.varint()
        start = self.take(size)
        return self.data[start:start + size].decode("utf-8", "replace")


def _varint_at(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data):
            raise NativeFormatError("the Native answer is cut short")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            raise NativeFormatError("a varint in the Native answer is too long")


def decode_native(data: bytes) -> Any | None:
    """A Native body as an Arrow table (one record batch per block), or None when the body
    holds no block at all, which is how ClickHouse answers a query without rows."""
    cur = _Cursor(data)
    batches: list[Any] = []
    header: list[tuple[str, str]] | None = None
    schema: Any = None
    while cur.pos < len(data):
        n_columns = cur.varint()
        n_rows = cur.varint()
        names: list[tuple[str, str]] = []
        arrays: list[Any] = []
        for _ in range(n_columns):
            name, type_name = cur.text(), cur.text()
            names.append((name, type_name))
            arrays.append(_decode_column(cur, parse_type(type_name), n_rows, name))
        if header is None:
            header, schema = names, arrow_schema(names)
        elif names != header:
            raise NativeFormatError("the Native answer's blocks differ in their columns")
        batches.append(pa.RecordBatch.from_arrays(arrays, schema=schema))
    if schema is None:
        return None
    return pa.Table.from_batches(batches, schema=schema)


def _decode_column(cur: _Cursor, ctype: ColumnType, n: int, name: str) -> Any:
    if not ctype.nullable:
        return _decode_values(cur, ctype, n, name)
    is_null = np.frombuffer(cur.data, np.uint8, n, cur.take(n))
    values = _decode_values(cur, ctype, n, name, is_null)
    nulls = int(np.count_nonzero(is_null))
    if nulls == 0 or ctype.base == "Nothing":
        return values
    validity = pa.py_buffer(np.packbits(is_null == 0, bitorder="little"))
    return pa.Array.from_buffers(values.type, n, [validity, *values.buffers()[1:]],
                                 null_count=nulls)


def _decode_values(cur: _Cursor, ctype: ColumnType, n: int, name: str,
                   is_null: npt.NDArray[np.uint8] | None = None) -> Any:
    base = ctype.base
    if base == "String":
        return _decode_strings(cur, n, name)
    if base == "Nothing":
        cur.take(n)
        return pa.nulls(n)
    dtype = _FIXED[_CODED.get(base, base)][0]
    width = np.dtype(dtype).itemsize
    # one copy: aligned and owned, so the Arrow array outlives the response body
    raw = np.frombuffer(cur.data, dtype, n, cur.take(n * width)).copy()
    if base in _FIXED:
        return pa.array(raw)
    if base == "DateTime":
        return pa.array(raw.astype(np.int64), type=pa.timestamp("s", tz="UTC"))
    if base == "Date":
        return pa.array(raw.astype(np.int32), type=pa.date32())
    if base == "Bool":
        return pa.array(raw != 0)
    return _decode_enum(raw, ctype, is_null)


def _decode_enum(codes: npt.NDArray[Any], ctype: ColumnType,
                 is_null: npt.NDArray[np.uint8] | None) -> Any:
    # codes -> positions in the enum's names by a lookup table over the whole code range
    low = -(1 << (8 * codes.itemsize - 1))
    lookup = np.full(1 << (8 * codes.itemsize), -1, np.int32)
    for position, (_, code) in enumerate(ctype.enum):
        lookup[code - low] = position
    indices = lookup[codes.astype(np.int32) - low]
    unknown = indices < 0
    if unknown.any():
        # under a NULL any code may stand (ours write the first one, others may write 0)
        if is_null is None or (unknown & (is_null == 0)).any():
            raise NativeFormatError(f"the Native answer has a code outside {ctype.name}")
        indices[unknown] = 0
    names = pa.array([item for item, _ in ctype.enum], pa.string())
    return pa.DictionaryArray.from_arrays(pa.array(indices), names).dictionary_decode()


def _decode_strings(cur: _Cursor, n: int, name: str) -> Any:
    data, start = cur.data, cur.pos
    if n and data.count(0, start, start + n) == n:
        # every length byte is 0: all values empty (or all NULL), no loop needed
        cur.take(n)
        return pa.Array.from_buffers(pa.string(), n, [None, pa.py_buffer(
            np.zeros(n + 1, np.int32)), pa.py_buffer(b"")])
    # the one loop per value: a string's start is known only after the previous one
    lengths = [0] * n
    pos = start
    try:
        for i in range(n):
            byte = data[pos]
            if byte < 0x80:
                lengths[i] = byte
                pos += 1 + byte
            else:
                length, pos = _varint_at(data, pos)
                lengths[i] = length
                pos += length
    except IndexError:
        raise NativeFormatError("the Native answer is cut short") from None
    cur.take(pos - start)
    size = np.array(lengths, np.int64)
    prefix = _varint_sizes(size)
    # payload bytes = the region less its length prefixes (ClickHouse writes minimal varints)
    record_start = np.cumsum(prefix + size) - (prefix + size)
    keep = np.ones(pos - start, np.bool_)
    for k in range(int(prefix.max(initial=1))):
        keep[(record_start + k)[prefix > k]] = False
    payload = np.frombuffer(data, np.uint8, pos - start, start)[keep]
    if payload.size >= 1 << 31:
        raise NativeFormatError("a block of the Native answer holds more than 2 GiB of text")
    offsets = np.zeros(n + 1, np.int32)
    offsets[1:] = np.cumsum(size)
    array = pa.Array.from_buffers(pa.string(), n, [None, pa.py_buffer(offsets),
                                                   pa.py_buffer(payload)])
    try:
        array.validate(full=True)
    except pa.ArrowInvalid:
        raise StoreError(f"column {name} holds bytes that are not UTF-8: select it through "
                         "hex() or base64Encode()") from None
    return array


# -- encoding ----------------------------------------------------------------------------


@dataclass(frozen=True)
class PreparedColumn:
    """A column checked and cast by `prepare_columns`, ready for `encode_native`."""

    name: str
    ctype: ColumnType
    #: values already in the stored type (enum codes, UInt32 seconds...), NULLs kept
    values: Any


def _varint_sizes(lengths: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    sizes = np.ones(lengths.shape, np.int64)
    for bits in range(7, 64, 7):
        above = lengths >= (1 << bits)
        if not above.any():
            break
        sizes += above
    return sizes


def _varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _text(value: str) -> bytes:
    raw = value.encode()
    return _varint(len(raw)) + raw


def prepare_columns(table: Any, types: Mapping[str, str] | Sequence[str]) -> list[PreparedColumn]:
    """The table's columns cast to what ClickHouse stores, checked before a byte is sent.

    ``types`` names each column's ClickHouse type, by column name or by position (a
    mapping may name more columns than the table has). Values that do not fit raise
    InputError; nothing is sent then.
    """
    if isinstance(types, Mapping):
        missing = [name for name in table.column_names if name not in types]
        if missing:
            raise ValueError(f"no ClickHouse type given for column(s) {missing}")
        type_names = [types[name] for name in table.column_names]
    else:
        type_names = list(types)
        if len(type_names) != table.num_columns:
            raise ValueError(f"{len(type_names)} ClickHouse types for {table.num_columns} "
                             "columns")
    return [_prepare(name, parse_type(type_name), table.column(i))
            for i, (name, type_name) in enumerate(zip(table.column_names, type_names,
                                                      strict=True))]


def _prepare(name: str, ctype: ColumnType, column: Any) -> PreparedColumn:
    if column.null_count and not ctype.nullable:
        raise InputError(f"column {name} has {column.null_count} NULL(s) but its ClickHouse "
                         f"type {ctype.name} is not Nullable")
    try:
        values = _cast(ctype, column)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
        raise InputError(f"column {name} cannot be written as ClickHouse {ctype.name}: "
                         f"{exc}") from None
    return PreparedColumn(name, ctype, values)


def _cast(ctype: ColumnType, column: Any) -> Any:
    base, kind = ctype.base, column.type
    if base in _FIXED:
        return pc.cast(column, _FIXED[base][1], safe=True)
    if base == "String":
        return column if kind in (pa.string(), pa.large_string()) else pc.cast(
            column, pa.string(), safe=True)
    if base in ("Enum8", "Enum16"):
        return _enum_codes(ctype, column)
    if base == "DateTime":
        if pa.types.is_timestamp(kind):
            # naive timestamps are taken as UTC, like everywhere in meterhub
            seconds = pc.cast(column, pa.timestamp("s", tz=kind.tz), safe=True)
            column = pc.cast(seconds, pa.int64())
        return pc.cast(column, pa.uint32(), safe=True)
    if base == "Date":
        if pa.types.is_date(kind):
            column = pc.cast(pc.cast(column, pa.date32()), pa.int32())
        return pc.cast(column, pa.uint16(), safe=True)
    if base == "Bool":
        return pc.cast(column, pa.uint8(), safe=True)
    raise InputError(f"ClickHouse type {ctype.name} cannot be written")  # Nothing


def _enum_codes(ctype: ColumnType, column: Any) -> Any:
    code_type = _FIXED[_CODED[ctype.base]][1]
    allowed = {item: code for item, code in ctype.enum}
    kind = column.type
    if pa.types.is_integer(kind):
        codes = pc.cast(column, code_type, safe=True)
        given = pc.fill_null(codes, ctype.enum[0][1]).to_numpy()
        if not np.isin(given, list(allowed.values())).all():
            raise InputError(f"a code that {ctype.name} does not have")
        return codes
    # names -> codes through a dictionary: the names are looked up once each, not per row
    if pa.types.is_dictionary(kind):
        column = pc.cast(column, kind.value_type)  # chunks may have differing dictionaries
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    encoded = pc.dictionary_encode(column)
    names = encoded.dictionary.to_pylist()
    unknown = sorted({str(item) for item in names if item not in allowed})
    if unknown:
        raise InputError(f"value(s) {unknown[:5]} are not in {ctype.name}")
    table = np.array([allowed[item] for item in names] or [0], dtype=_FIXED[_CODED[
        ctype.base]][0])
    indices = encoded.indices
    positions = pc.fill_null(indices, 0).to_numpy(zero_copy_only=False)
    codes = table[positions] if len(names) else np.zeros(len(indices), table.dtype)
    return pa.array(codes, code_type, mask=pc.is_null(indices).to_numpy(zero_copy_only=False))


def encode_native(columns: Sequence[PreparedColumn], n_rows: int,
                  block_rows: int = DEFAULT_BLOCK_ROWS) -> Iterator[bytes]:
    """The Native body for prepared columns, one block per `block_rows` rows, made as it is
    sent, so that memory holds one block's bytes at a time."""
    if block_rows < 1:
        raise ValueError("block_rows must be at least 1")
    for start in range(0, n_rows, block_rows):
        length = min(block_rows, n_rows - start)
        yield _varint(len(columns)) + _varint(length)
        for column in columns:
            values = column.values.slice(start, length)
            if isinstance(values, pa.ChunkedArray):
                values = values.combine_chunks()
            yield from _encode_column(column, values)


def _encode_column(column: PreparedColumn, values: Any) -> Iterator[bytes]:
    yield _text(column.name) + _text(column.ctype.name)
    if column.ctype.nullable:
        yield values.is_null().to_numpy(zero_copy_only=False).view(np.uint8).tobytes()
    if values.null_count:
        values = values.fill_null(_filler(column.ctype))
    if column.ctype.base == "String":
        yield _encode_strings(values)
    else:
        raw = values.to_numpy(zero_copy_only=False)
        yield raw.astype(raw.dtype.newbyteorder("<"), copy=False).tobytes()


def _filler(ctype: ColumnType) -> Any:
    """The value written under a NULL: empty, zero, or an enum's first code (0 may be no
    code of it)."""
    if ctype.base == "String":
        return ""
    return ctype.enum[0][1] if ctype.enum else 0


def _encode_strings(values: Any) -> bytes:
    n = len(values)
    if n == 0:
        return b""
    offset_type = np.int64 if values.type == pa.large_string() else np.int32
    _, offsets_buffer, data_buffer = values.buffers()
    offsets = np.frombuffer(offsets_buffer, offset_type, n + 1, values.offset * np.dtype(
        offset_type).itemsize).astype(np.int64)
    size = np.diff(offsets)
    prefix = _varint_sizes(size)
    total = int(prefix.sum() + size.sum())
    out = np.empty(total, np.uint8)
    record_start = np.cumsum(prefix + size) - (prefix + size)
    payload = np.ones(total, np.bool_)
    for k in range(int(prefix.max())):
        has = prefix > k
        at = record_start[has] + k
        more = (prefix[has] > k + 1).astype(np.uint8) << 7
        out[at] = ((size[has] >> (7 * k)) & 0x7F).astype(np.uint8) | more
        payload[at] = False
    if data_buffer is not None and total > int(prefix.sum()):
        data = np.frombuffer(data_buffer, np.uint8)
        # the values are contiguous in Arrow's data buffer and in the same order
        out[payload] = data[int(offsets[0]):int(offsets[-1])]
    return out.tobytes()

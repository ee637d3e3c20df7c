"""An append-only journal of writes acknowledged before they reach the store.

A DuckDB commit costs about 5.5 ms however few rows it holds (BENCHMARKS.md, "DSMR"), and a
pushed telegram must be stored when its 201 goes out, so group commits bounded pushes at
a few hundred a second. Appending a group to this file and syncing it costs a fraction of
a millisecond; the store folds the journal in with one commit per many groups, and
replays what a crash left in it when it opens (`meterhub.store.duckdb`).

A record is a header (magic, sequence number, payload length, CRC-32 of the payload) and
the payload: the rows as an Arrow IPC stream whose schema metadata carries the write's
origin and state values. A record is acknowledged only once it is synced, so a torn or
corrupt tail (a crash mid-append) was never acknowledged and ends its segment's replay.
"""

from __future__ import annotations

import contextlib
import os
import struct
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import orjson
import pyarrow as pa

_HEADER = struct.Struct("<4sQII")
_MAGIC = b"MHJ1"
_ORIGIN = b"meterhub.origin"
_STATE = b"meterhub.state"


@dataclass(frozen=True, slots=True)
class Record:
    """One journaled write: its sequence number, rows, origin and state values."""

    seq: int
    table: pa.Table
    origin: str
    state: dict[str, str]


@dataclass(frozen=True, slots=True)
class Journaled:
    """What a journaled write tells its writer: the keys it may change (device, channel,
    ts; None without rows) and whether enough is held for a fold to be due."""

    keys: pa.Table | None
    fold_due: bool


def encode(seq: int, table: pa.Table, origin: str, state: Mapping[str, str]) -> bytes:
    metadata = {_ORIGIN: origin.encode(), _STATE: orjson.dumps(dict(state))}
    table = table.replace_schema_metadata(metadata)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as stream:
        stream.write_table(table)
    payload: bytes = sink.getvalue().to_pybytes()
    return _HEADER.pack(_MAGIC, seq, len(payload), zlib.crc32(payload)) + payload


def decode(data: bytes) -> Iterator[Record]:
    """The whole records of ``data`` in order, up to the first torn or corrupt one."""
    at = 0
    while at + _HEADER.size <= len(data):
        magic, seq, length, crc = _HEADER.unpack_from(data, at)
        payload = data[at + _HEADER.size:at + _HEADER.size + length]
        if magic != _MAGIC or len(payload) != length or zlib.crc32(payload) != crc:
            return
        table = pa.ipc.open_stream(payload).read_all()
        metadata = table.schema.metadata or {}
        yield Record(seq, table.replace_schema_metadata(None),
                     metadata.get(_ORIGIN, b"journal").decode(),
                     orjson.loads(metadata.get(_STATE, b"{}")))
        at += _HEADER.size + length


def sync_folder(folder: Path) -> None:
    """Make a new name or a rename in ``folder`` durable (its entry, not only the file's
    blocks)."""
    with contextlib.suppress(OSError):  # a folder cannot be opened so everywhere (Windows)
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class Journal:
    """The journal of one store (its owner's only: one process owns a DuckDB file), in
    numbered segments ``<base>.1``, ``<base>.2``, ...: a fold `rotate`s to a new segment,
    so that writes go on being journaled while it writes the old ones into the store,
    and drops those once they are in (`drop_through`)."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self._fd: int | None = None
        self.size = 0  #: bytes in the current segment
        numbers = [number for number, _ in self._segments()]
        self.current = max(numbers, default=0) + 1  #: the segment appends go to
        #: an append failed and its bytes could not be taken back: a later record would
        #: follow a torn one, which a replay never reaches, so nothing is appended any more
        self.broken = False

    def _segments(self) -> list[tuple[int, Path]]:
        found = []
        for path in self.base.parent.glob(f"{self.base.name}.*"):
            suffix = path.name[len(self.base.name) + 1:]
            if suffix.isdigit():
                found.append((int(suffix), path))
        return sorted(found)

    def records(self) -> list[Record]:
        """What the segments hold, oldest first."""
        found: list[Record] = []
        for _, path in self._segments():
            found += decode(path.read_bytes())
        return found

    def append(self, record: bytes) -> None:
        """Append an `encode`d record; durable when this returns."""
        if self._fd is None:
            path = Path(f"{self.base}.{self.current}")
            self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            self.size = os.fstat(self._fd).st_size
            sync_folder(path.parent)  # the new name must survive a crash too
        try:
            written = os.write(self._fd, record)
            if written != len(record):  # a full disk
                raise OSError(f"journal {self.base}: only {written} of {len(record)} bytes "
                              "written")
            os.fdatasync(self._fd)
        except BaseException:
            try:  # take the torn record back, so that the next one can be replayed
                os.ftruncate(self._fd, self.size)
            except OSError:
                self.broken = True
            raise
        self.size += len(record)

    def rotate(self) -> int:
        """Start a new segment; the number of the last one written before it."""
        self.close()
        self.current += 1
        self.broken = False  # a torn record stays behind in the old segment
        return self.current - 1

    def drop_through(self, number: int) -> None:
        """Delete the segments up to ``number``: their records are in the store."""
        for found, path in self._segments():
            if found <= number:
                path.unlink(missing_ok=True)

    def remove(self) -> None:
        """Close and delete every segment."""
        self.close()
        self.drop_through(self.current)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


__all__ = ["Journal", "Journaled", "Record", "decode", "encode", "sync_folder"]

"""Copy a whole store into another (DuckDB to ClickHouse, back, or between two of a kind).

What goes over: sites, devices and channels (kinds, units and intervals as they are), every
reading, the sync cursors, the state values and the API keys (their hashes, revoked ones
too). Sync status is not copied: it says how the last sync went, and the next one writes it.

Resuming needs no bookkeeping: a series whose readings the target already holds in the same
number and with the same checksum is skipped, any other is copied again (writes are
idempotent, so a series half copied before an interruption is completed, not doubled).
Every series is verified at the end of its copy by its count and a checksum of every stored
field, read back from the target.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from meterhub.model import READING_SCHEMA
from meterhub.store import Selection, Store

BATCH_ROWS = 500_000  #: readings per write into the target

_MASK = np.uint64(0xFFFFFFFFFFFFFFFF)


@dataclass
class Progress:
    """Where a migration stands (``readings`` counts those read, copied or found there)."""

    series: int = 0
    series_total: int = 0
    readings: int = 0
    readings_total: int = 0


@dataclass
class MigrateResult:
    series_copied: int = 0
    series_present: int = 0  #: already in the target, verified and skipped
    readings_copied: int = 0
    readings_present: int = 0
    cursors: int = 0
    state_values: int = 0
    keys_copied: int = 0
    #: series whose count or checksum in the target differs after the copy
    mismatched: list[str] = field(default_factory=list)


def migrate(source: Store, target: Store, *,
            on_progress: Callable[[Progress], None] | None = None,
            batch_rows: int = BATCH_ROWS) -> MigrateResult:
    """Copy ``source`` into ``target`` (see the module's description)."""
    result = MigrateResult()
    target.upsert_sites(source.sites())
    target.upsert_devices(source.devices())
    channels = source.channels()
    target.upsert_channels(channels)
    wanted, held = _counts(source), _counts(target)
    progress = Progress(series_total=len(channels), readings_total=sum(wanted.values()))
    keys = [(c.device, c.channel) for c in channels]
    # a series the target holds in the same number may be there already: compare checksums
    maybe = [key for key in keys if held.get(key, 0) == wanted.get(key, 0)]
    digests = {key: digest(source.scan(_one(key))) for key in maybe if wanted.get(key)}
    present = {key for key in maybe
               if not wanted.get(key) or digest(target.scan(_one(key))) == digests[key]}
    for key in present:
        result.series_present += 1
        result.readings_present += wanted.get(key, 0)
        progress.readings += wanted.get(key, 0)
        progress.series += 1
    copy = [key for key in keys if key not in present]
    sums = _copy(source, target, copy, batch_rows, progress, on_progress)
    for key in copy:  # verified as the target stores them
        result.series_copied += 1
        result.readings_copied += wanted.get(key, 0)
        if digest(target.scan(_one(key))) != (wanted.get(key, 0), sums.get(key, 0)):
            result.mismatched.append(f"{key[0]}/{key[1]}")
    cursors = source.cursors()
    state = source.state_values()
    target.write(None, cursors=cursors, state=state, origin="migrate")
    result.cursors, result.state_values = len(cursors), len(state)
    have = {api_key.key_id for api_key in target.api_keys()}
    for api_key in source.api_keys():
        if api_key.key_id not in have:
            target.add_key(api_key)
            result.keys_copied += 1
    return result


def _one(key: tuple[str, str]) -> Selection:
    return Selection(devices=[key[0]], channels=[key[1]])


def _counts(store: Store) -> dict[tuple[str, str], int]:
    """Readings per (device, channel), from one statistics read."""
    stats = store.channel_stats()
    return {(d, c): int(n) for d, c, n in zip(stats.column("device").to_pylist(),
                                              stats.column("channel").to_pylist(),
                                              stats.column("readings").to_pylist(),
                                              strict=True)}


def _copy(source: Store, target: Store, keys: list[tuple[str, str]], batch_rows: int,
          progress: Progress, on_progress: Callable[[Progress], None] | None
          ) -> dict[tuple[str, str], int]:
    """Copy these series in writes of ``batch_rows`` readings (a write may span series: a
    store of many small series is not a write each); each series' checksum as read."""
    sums: dict[tuple[str, str], int] = {}
    pending: list[pa.RecordBatch] = []
    size = 0

    def flush() -> None:
        nonlocal size
        if not pending:
            return
        table = pa.Table.from_batches(pending, READING_SCHEMA)
        target.write(table, origin="migrate")
        progress.readings += table.num_rows
        pending.clear()
        size = 0
        if on_progress is not None:
            on_progress(progress)

    for key in keys:
        for batch in source.scan(_one(key)):
            sums[key] = (sums.get(key, 0) + _row_sum(pa.Table.from_batches([batch]))
                         ) & 0xFFFFFFFFFFFFFFFF
            while batch.num_rows:  # writes of batch_rows exactly, whatever the scan's batches
                part = batch.slice(0, batch_rows - size)
                batch = batch.slice(part.num_rows)
                pending.append(part)
                size += part.num_rows
                if size >= batch_rows:
                    flush()
        progress.series += 1
    flush()
    return sums


def checksum(batches: Iterable[pa.RecordBatch]) -> int:
    """An order-free checksum of readings: the sum, modulo 2**64, of a mix of each row's
    time, value, quality, validated flag, seq and error code (vectorised; the few distinct
    texts are hashed once each)."""
    return digest(batches)[1]


def digest(batches: Iterable[pa.RecordBatch]) -> tuple[int, int]:
    """How many readings, and their `checksum`, from one read."""
    rows = total = 0
    for batch in batches:
        rows += batch.num_rows
        total = (total + _row_sum(pa.Table.from_batches([batch]))) & 0xFFFFFFFFFFFFFFFF
    return rows, total


def _row_sum(table: pa.Table) -> int:
    if not table.num_rows:
        return 0
    ts = np.asarray(table.column("ts").cast(pa.timestamp("us")).cast(pa.int64())
                    .to_numpy(), dtype=np.int64).view(np.uint64)
    value = table.column("value")
    bits = np.asarray(value.fill_null(0.0).to_numpy(), dtype=np.float64).view(np.uint64)
    bits = np.where(np.asarray(value.is_null().to_numpy(zero_copy_only=False)),
                    np.uint64(0x9E3779B97F4A7C15), bits)
    seq = table.column("seq")
    seq_bits = np.where(np.asarray(seq.is_null().to_numpy(zero_copy_only=False)),
                        np.uint64(0xC2B2AE3D27D4EB4F),
                        np.asarray(seq.fill_null(0).to_numpy(), dtype=np.int64)
                        .view(np.uint64))
    validated = np.asarray(table.column("validated").fill_null(False)
                           .to_numpy(zero_copy_only=False), dtype=np.uint64)
    row = _mix(ts)
    for part in (bits, seq_bits, validated, _text_hashes(table.column("quality")),
                 _text_hashes(table.column("error_code"))):
        row = _mix(row ^ _mix(part + np.uint64(0x165667B19E3779F9)))
    with np.errstate(over="ignore"):
        return int(np.sum(row, dtype=np.uint64))


def _mix(x: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    """SplitMix64's finaliser: every input bit moves every output bit."""
    with np.errstate(over="ignore"):
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return np.asarray(x ^ (x >> np.uint64(31)), dtype=np.uint64)


def _text_hashes(column: pa.ChunkedArray) -> npt.NDArray[np.uint64]:
    """Each row's text as a 64-bit hash (NULL its own), hashing each distinct text once."""
    encoded = pc.dictionary_encode(column.combine_chunks())
    hashes = np.array([int.from_bytes(hashlib.blake2b(
        b"\x01" + text.encode(), digest_size=8).digest(), "little")
        for text in encoded.dictionary.to_pylist()] + [0], dtype=np.uint64)
    indices = np.asarray(encoded.indices.fill_null(len(encoded.dictionary))
                         .to_numpy(zero_copy_only=False), dtype=np.int64)
    return hashes[indices]

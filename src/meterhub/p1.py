"""Telegrams straight from a meter's P1 port, or replayed from a capture file.

The serial side is dsmr-parser's `SerialReader` (its port settings per DSMR version and
its telegram buffer), read as raw telegram text so that every telegram goes through the
same checks as a pushed one (`meterhub.dsmr.parse_telegram`). A port that fails or
vanishes (a USB cable pulled) is reopened after a delay that doubles up to a bound.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import serialx
from dsmr_parser.clients.serial_ import SerialReader
from dsmr_parser.clients.settings import (
    SERIAL_SETTINGS_V2_2,
    SERIAL_SETTINGS_V4,
    SERIAL_SETTINGS_V5,
)
from dsmr_parser.clients.telegram_buffer import TelegramBuffer

from meterhub.config import DsmrSettings
from meterhub.dsmr import DIALECTS, TelegramError, meter_device, parse_telegram
from meterhub.errors import InputError
from meterhub.hub import Hub

log = logging.getLogger("meterhub.p1")
FILE_BATCH = 1_000  #: telegrams per commit when replaying a file


@dataclass
class Counts:
    accepted: int = 0
    rejected: int = 0


def serial_settings(version: str) -> dict[str, object]:
    """dsmr-parser's port settings for a DSMR version (2.2/3: 9600 7E1, 4: 115200 7E1,
    5 and later dialects: 115200 8N1)."""
    if version not in DIALECTS:
        raise InputError(f"unknown DSMR version {version!r}: use one of {', '.join(DIALECTS)}")
    base = {"2.2": SERIAL_SETTINGS_V2_2, "3": SERIAL_SETTINGS_V2_2,
            "4": SERIAL_SETTINGS_V4}.get(version, SERIAL_SETTINGS_V5)
    return dict(base)


class RawSerialReader(SerialReader):  # type: ignore[misc]
    """dsmr-parser's serial reader, yielding each telegram's text instead of parsing it."""

    def raw(self) -> Iterator[str]:
        with serialx.serial_for_url(**self.serial_settings) as handle:
            while True:
                data = handle.read(max(1, min(1024, handle.num_unread_bytes())))
                if data:
                    yield from self._buffer_incoming(data)


def telegrams_in(text: str) -> list[str]:
    """The complete telegrams in captured text (partial ones at either end are dropped)."""
    buffer = TelegramBuffer()
    buffer.append(text)
    return list(buffer.get_all())


def _describe_meter(hub: Hub, text: str, settings: DsmrSettings) -> None:
    hub.add_devices([meter_device(text, dialect=settings.version, device=settings.device,
                                  tz=settings.timezone)])


def _parse(text: str, settings: DsmrSettings, counts: Counts) -> pa.Table | None:
    try:
        table = parse_telegram(text, dialect=settings.version, device=settings.device,
                               tz=settings.timezone)
    except TelegramError as exc:
        counts.rejected += 1
        log.warning("telegram rejected (%d so far): %s", counts.rejected, exc)
        return None
    counts.accepted += 1
    return table


def replay_file(hub: Hub, path: Path, settings: DsmrSettings) -> Counts:
    """Store every telegram of a capture file, a thousand per commit."""
    try:
        # bytes, not read_text: universal newlines would turn the telegrams' CRLF into LF
        text = path.read_bytes().decode("ascii", errors="replace")
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror}") from None
    counts, pending = Counts(), []
    for telegram in telegrams_in(text):
        table = _parse(telegram, settings, counts)
        if table is not None:
            pending.append(table)
            if counts.accepted == 1:
                _describe_meter(hub, telegram, settings)
        if len(pending) >= FILE_BATCH:
            hub.write(pa.concat_tables(pending, promote_options="permissive"), origin="p1")
            pending = []
    if pending:
        hub.write(pa.concat_tables(pending, promote_options="permissive"), origin="p1")
    return counts


def read_serial(hub: Hub, port: str, settings: DsmrSettings, *, count: int | None = None,
                max_delay: float = 60.0, sleep: Callable[[float], None] = time.sleep,
                source: Callable[[], Iterable[str]] | None = None,
                on_telegram: Callable[[Counts], None] | None = None) -> Counts:
    """Store telegrams from a serial port as they come (one commit each: a meter sends one
    every 1-10 s), until ``count`` telegrams were read, reopening the port on failure."""
    counts, delay = Counts(), 1.0
    while True:
        reader = source or RawSerialReader(port, serial_settings(settings.version),
                                           DIALECTS[settings.version]).raw
        try:
            for telegram in reader():
                table = _parse(telegram, settings, counts)
                if table is not None:
                    hub.write(table, origin="p1")
                    if counts.accepted == 1:
                        _describe_meter(hub, telegram, settings)
                delay = 1.0
                if on_telegram is not None:
                    on_telegram(counts)
                if count is not None and counts.accepted + counts.rejected >= count:
                    return counts
        except (OSError, serialx.SerialException) as exc:
            log.warning("serial port %s failed (%s); reopening in %.0f s", port, exc, delay)
            sleep(delay)
            delay = min(delay * 2, max_delay)

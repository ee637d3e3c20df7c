"""Telegrams straight from a meter's P1 port, or replayed from a capture file.

The serial side is dsmr-parser's `SerialReader` (its port settings per DSMR version and
its telegram buffer), read as raw telegram text so that every telegram goes through the
same checks as a pushed one (`meterhub.dsmr.telegram.read_telegram`). A port that fails or
vanishes (a USB cable pulled) is reopened after a delay that doubles up to a bound.

A capture file holds telegrams as the meter sent them, each framed by ``/`` and a final
``!`` line with its CRC. A meter ends every line with CRLF, and the CRC covers those
bytes; a capture saved by a tool that turned line endings into LF (or some of them:
mixed endings) is read with each bare LF restored to CRLF first, so its CRC is checked
against the text the meter sent (a last CRC saved without its line end gets CRLF too).
A telegram damaged otherwise still fails that check. A file without a single complete
telegram is an `InputError`, and nothing is stored.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import serialx
from dsmr_parser.clients.serial_ import SerialReader
from dsmr_parser.clients.settings import (
    SERIAL_SETTINGS_V2_2,
    SERIAL_SETTINGS_V4,
    SERIAL_SETTINGS_V5,
)
from dsmr_parser.clients.telegram_buffer import TelegramBuffer

from meterhub.dsmr.meter_log import MeterLog
from meterhub.dsmr.settings import DsmrSettings
from meterhub.dsmr.telegram import (
    DIALECTS,
    Telegram,
    TelegramError,
    meter_device,
    read_telegram,
)
from meterhub.errors import InputError
from meterhub.hub import Hub

log = logging.getLogger("meterhub.p1")
FILE_BATCH = 1_000  #: telegrams per commit when replaying a file


@dataclass
class Counts:
    """Telegrams read (``accepted + rejected``), and what storing the accepted ones did to
    the store's readings, as the store counts each write: readings ``new`` to it,
    ``replaced`` (stored with other content) and ``unchanged`` (stored already, the same;
    a replayed capture is all unchanged, and so is a meter's gas reading repeated)."""

    accepted: int = 0  #: telegrams that passed every check and were written
    rejected: int = 0  #: failed a check (CRC, cut short, unreadable, stamped in the future)
    new: int = 0  #: readings the store did not hold
    replaced: int = 0  #: readings stored before with another value or quality
    unchanged: int = 0  #: readings stored before, the same


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


_BARE_LF = re.compile(r"(?<!\r)\n")
_ENDS_IN_CRC = re.compile(r"![0-9A-F]{4}\Z")


def as_sent(text: str) -> str:
    """Captured text with every bare LF back to the CRLF the meter sent (the CRC covers
    the CR too), and the line end after a final CRC that a saved file may lack; text that
    has only CRLF is returned as it is."""
    if text.count("\n") != text.count("\r\n"):
        text = _BARE_LF.sub("\r\n", text)
    if _ENDS_IN_CRC.search(text):  # a complete telegram (its CRC is always 4 digits)
        text += "\r\n"
    return text


def telegrams_in(text: str) -> list[str]:
    """The complete telegrams in captured text (partial ones at either end are dropped),
    with CRLF line ends (see `as_sent`)."""
    buffer = TelegramBuffer()  # finds only telegrams whose lines end in CRLF
    text = as_sent(text)
    buffer.append(text)
    return list(buffer.get_all())


class _Meter:
    """One meter's telegrams -> readings, with the status and rejection count that go into
    the store with them (`MeterLog`, as the push endpoint keeps them)."""

    def __init__(self, hub: Hub, settings: DsmrSettings) -> None:
        self.hub, self.settings, self.counts = hub, settings, Counts()
        self.meter = MeterLog(hub.get_state, settings.device)

    def parse(self, text: str) -> Telegram | None:
        settings = self.settings
        try:
            # DSMR-reader's datalogger reads a telegram from '/' to its CRC: without the
            # line end after it (kept as the meter's latest telegram so)
            telegram = read_telegram(text.strip(), dialect=settings.version,
                                     device=settings.device, tz=settings.timezone)
        except TelegramError as exc:
            self.counts.rejected += 1
            self.meter.reject()
            log.warning("telegram rejected (%d so far): %s", self.counts.rejected, exc)
            return None
        self.counts.accepted += 1
        if self.counts.accepted == 1:
            self.hub.add_devices([meter_device(telegram, device=settings.device,
                                               tz=settings.timezone)])
        self.meter.accept(telegram)
        return telegram

    def write(self, telegrams: list[Telegram]) -> None:
        """Store ``telegrams`` (maybe none) with the meter's status and rejection count."""
        result = self.hub.write(Telegram.join(telegrams) if telegrams else None,
                                origin="p1", state=self.meter.state())
        self.counts.new += result.new
        self.counts.replaced += result.replaced
        self.counts.unchanged += result.unchanged


def replay_file(hub: Hub, path: Path, settings: DsmrSettings) -> Counts:
    """Store every telegram of a capture file (CRLF or LF line ends), a thousand per
    commit; an `InputError` when the file holds no complete telegram."""
    try:
        # bytes, not read_text: universal newlines would turn the telegrams' CRLF into LF
        text = path.read_bytes().decode("ascii", errors="replace")
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror}") from None
    found = telegrams_in(text)
    if not found:
        # raised before anything is written: an empty or wrong file stores no counts either
        raise InputError(f"{path}: no DSMR telegram ('/' ... '!CRC') found: give a capture "
                         "of a meter's P1 output")
    meter, pending = _Meter(hub, settings), []
    for text_of_one in found:
        telegram = meter.parse(text_of_one)
        if telegram is not None:
            pending.append(telegram)
        if len(pending) >= FILE_BATCH:
            meter.write(pending)
            pending = []
    meter.write(pending)  # the rest, and the counts even when nothing was accepted
    return meter.counts


def read_serial(hub: Hub, port: str, settings: DsmrSettings, *, count: int | None = None,
                max_delay: float = 60.0, sleep: Callable[[float], None] = time.sleep,
                source: Callable[[], Iterable[str]] | None = None,
                on_telegram: Callable[[Counts], None] | None = None) -> Counts:
    """Store telegrams from a serial port as they come (one commit each: a meter sends one
    every 1-10 s), until ``count`` telegrams were read, reopening the port on failure."""
    meter, delay = _Meter(hub, settings), 1.0
    counts = meter.counts
    while True:
        reader = source or RawSerialReader(port, serial_settings(settings.version),
                                           DIALECTS[settings.version]).raw
        try:
            for text in reader():
                telegram = meter.parse(text)
                meter.write([] if telegram is None else [telegram])
                delay = 1.0
                if on_telegram is not None:
                    on_telegram(counts)
                if count is not None and counts.accepted + counts.rejected >= count:
                    return counts
        except (OSError, serialx.SerialException) as exc:
            log.warning("serial port %s failed (%s); reopening in %.0f s", port, exc, delay)
            sleep(delay)
            delay = min(delay * 2, max_delay)

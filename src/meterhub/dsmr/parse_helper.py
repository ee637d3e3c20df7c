"""Pushed telegrams parsed in a helper process, so the process that owns the store mostly
answers requests and commits.

Parsing a telegram is pure Python (about a third of a millisecond) and one process owns
the store file, so under many pushes that process parsed, answered and committed on one
core while the other idled. A helper parses with the same `read_telegram`, so a telegram
reads the same in either process. Each telegram goes over as soon as its request is read
(the helper parses it while the loop reads the next one); the helper answers everything
that waited for it at once, as `Telegram`s of plain values.

Dataloggers wait for each answer, so their telegrams come in waves: the loop reads a
wave's requests, then idles while the helper parses them one after another. While the
helper has more telegrams waiting than the server has of its own plus one, the next one
is parsed in the server instead, once the loop has run what is ready (so the requests
read meanwhile go to the helper first): about a third of a wave, which the server parses
while the helper parses the rest (BENCHMARKS.md, "DSMR": 12 % more telegrams a second
with 16 clients in alternating runs).

Helpers (`HELPERS`, taking turns) are started once pushes come faster than `AUTO_RATE` a
second (one meter pushing every second never needs one), or at the first push
(``parse_helper = "on"``), or never (``"off"``). Until one is up, and whenever all are
gone, telegrams are parsed in the server's process; a helper that dies is started again
`RESTART_AFTER` seconds later. Its pipe closing ends it.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import itertools
import logging
import multiprocessing
import os
import signal
import socket
import threading
import time
import traceback
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any
from urllib.parse import unquote_plus

from meterhub.dsmr.settings import DsmrSettings
from meterhub.dsmr.telegram import Telegram, TelegramError, read_telegram
from meterhub.errors import InputError

log = logging.getLogger("meterhub.dsmr")
RESTART_AFTER = 5.0  #: seconds before a helper that died is started again
#: helper processes: one beside the server on two cores (a second one measured no faster
#: there: bench/dsmr.py); none on one core, which has nothing to share
HELPERS = 1 if (os.cpu_count() or 1) > 1 else 0
AUTO_RATE = 20  #: pushes within a second that start the helper (``parse_helper = "auto"``)


class NoTelegram(InputError):
    """A pushed form whose telegram is nothing but NULs and whitespace (DSMR-reader's
    form refuses it: not a rejected telegram)."""


def pushed_text(given: str | bytes) -> str:
    """The telegram a datalogger's form holds, as DSMR-reader reads it: its CharField trims
    whitespace, then clean_telegram the NULs at either end. ``given`` is the field's text,
    or its bytes as sent in a urlencoded body, decoded here as Starlette decodes a form's
    field (latin-1, then ``unquote_plus``); `NoTelegram` when nothing else is left."""
    text = form_field(given) if isinstance(given, bytes) else given
    if not text.strip("\x00").strip():
        raise NoTelegram("the form's telegram is empty")
    return text.strip().strip("\x00")


def form_field(raw: bytes) -> str:
    """A urlencoded form field's text as Starlette decodes it (``unquote_plus`` of its
    latin-1 text), in a seventh of the time for a telegram (four escapes a line, which
    ``unquote`` reads one by one in Python): each ``%`` becomes ``\\x`` and Python's
    ``unicode_escape`` codec reads them, in C. That reads alike when every ``%`` starts an
    escape and all is ASCII; any other field is decoded the library's way."""
    if raw.isascii():
        try:
            text = raw.replace(b"+", b" ").replace(b"\\", b"\\\\").replace(
                b"%", b"\\x").decode("unicode_escape")
        except UnicodeDecodeError:  # a '%' with no two hex digits after it
            pass
        else:
            if text.isascii():  # (an escaped byte over 0x7F is UTF-8's to decode)
                return text
    return unquote_plus(raw.decode("latin-1"))


def read_pushed(given: str | bytes, now: dt.datetime, dialect: str, device: str,
                tz: str) -> Telegram:
    """A pushed telegram's readings (`pushed_text`, then `read_telegram`)."""
    return read_telegram(pushed_text(given), dialect=dialect, device=device, tz=tz, now=now)


@dataclass(frozen=True, slots=True)
class _Failed:
    """A telegram the helper rejected (``kind`` "rejected": its `TelegramError` message),
    found empty ("empty"), or could not parse for an unexpected reason ("failed": the
    traceback, re-raised in the server)."""

    message: str
    kind: str


def serve_telegrams(conn: Connection, dialect: str, device: str, tz: str) -> None:
    """The helper: read batches of (id, telegram as `pushed_text` takes it, now), answer
    [(id, Telegram or _Failed)], until the pipe closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the server's to handle
    while True:
        try:
            batch = conn.recv()
            while conn.poll():  # everything that is waiting goes into one answer
                batch += conn.recv()
        except (EOFError, OSError):
            return
        answers: list[tuple[int, Telegram | _Failed]] = []
        for ident, given, now in batch:
            try:
                answers.append((ident, read_pushed(given, now, dialect, device, tz)))
            except TelegramError as exc:
                answers.append((ident, _Failed(str(exc), "rejected")))
            except NoTelegram as exc:
                answers.append((ident, _Failed(str(exc), "empty")))
            except Exception:  # noqa: BLE001 - reported to the server, which raises it
                answers.append((ident, _Failed(traceback.format_exc(), "failed")))
        try:
            conn.send(answers)
        except OSError:
            return


class _Helper:
    """One helper process: its pipe, and the telegrams it has not answered yet (shared with
    the thread that reads its answers; ``closed`` once its pipe closed)."""

    def __init__(self, conn: Connection, process: Any) -> None:
        self.conn, self.process = conn, process
        self.lock = threading.Lock()
        self.closed = False
        self.shutting = False  #: ended on purpose (not to be started again)
        self.waiting: dict[int, tuple[asyncio.AbstractEventLoop, asyncio.Future[Telegram],
                                      str | bytes, dt.datetime]] = {}

    def shut(self) -> None:
        self.shutting = True
        # shut the socket down before closing it: closing alone leaves it open while the
        # reader thread is blocked reading it, and the helper would never read EOF
        with contextlib.suppress(OSError), socket.fromfd(
                self.conn.fileno(), socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.shutdown(socket.SHUT_RDWR)
        self.conn.close()  # the helper reads EOF and ends
        self.process.join(timeout=5)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(timeout=5)


class TelegramReader:
    """`read` a pushed telegram: a `Telegram`, or a `TelegramError` saying why it was
    rejected (`NoTelegram`: empty), exactly as `read_pushed` would answer in this
    process."""

    def __init__(self, settings: DsmrSettings, *, helpers: int = HELPERS,
                 share: bool = True) -> None:
        """``share``: parse a share of the telegrams here while a helper has a queue (see
        above); else every telegram goes to a helper while one is up."""
        self.settings = settings
        self.share = share
        self._here = 0  #: telegrams waiting to be parsed here (`_parse_here_soon`)
        self.mode = settings.parse_helper if helpers > 0 else "off"
        self.count = helpers
        #: the helpers up; replaced, never changed in place, so a reader of it sees one
        #: whole list while threads start and lose helpers
        self.helpers: list[_Helper] = []
        self._started: list[_Helper] = []  #: every helper ever started (to end them)
        self._turn = 0
        self._starting = False
        self._retry_at = 0.0
        self._closed = False
        self._second, self._pushes = 0, 0  #: pushes counted in the current second
        self._ids = itertools.count()
        self._finalizer = weakref.finalize(self, _shut_all, self._started)

    async def read(self, text: str | bytes, now: dt.datetime) -> Telegram:
        """``text`` as `pushed_text` takes it: raw form bytes are decoded where parsed."""
        helpers = self.helpers
        if len(helpers) < self.count and self._wanted():
            self._start()
        if not helpers:
            return self._inline(text, now)
        self._turn += 1
        helper = helpers[self._turn % len(helpers)]
        if self.share and len(helper.waiting) > self._here + 1:
            return await self._parse_here_soon(text, now)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Telegram] = loop.create_future()
        ident = next(self._ids)
        with helper.lock:
            if helper.closed:  # it just ended
                return self._inline(text, now)
            helper.waiting[ident] = (loop, future, text, now)
        # if the helper is gone, its reader thread has this one parsed here
        with contextlib.suppress(OSError):
            helper.conn.send([(ident, text, now)])
        return await future

    async def _parse_here_soon(self, text: str | bytes, now: dt.datetime) -> Telegram:
        """``text`` parsed in this process once the loop has run the callbacks that are
        ready (reading the requests that came with this one)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Telegram] = loop.create_future()

        def parse() -> None:
            self._here -= 1
            if future.done():  # its request is gone
                return
            try:
                future.set_result(self._inline(text, now))
            except Exception as exc:  # noqa: BLE001 - the request's own error, as inline
                future.set_exception(exc)

        self._here += 1
        loop.call_soon(parse)
        return await future

    def _wanted(self) -> bool:
        if self._closed or self._starting or self.mode == "off":
            return False
        now = time.monotonic()
        if int(now) != self._second:
            self._second, self._pushes = int(now), 0
        self._pushes += 1
        return now >= self._retry_at and (self.mode == "on" or self._pushes >= AUTO_RATE)

    def _inline(self, text: str | bytes, now: dt.datetime) -> Telegram:
        settings = self.settings
        return read_pushed(text, now, settings.version, settings.device, settings.timezone)

    def _start(self) -> None:
        """Start the missing helpers from a thread (starting a process takes a while);
        telegrams are parsed here until one is up."""
        self._starting = True
        threading.Thread(target=self._start_helpers, name="meterhub-parser-start",
                         daemon=True).start()

    def _start_helpers(self) -> None:
        settings = self.settings
        try:
            context = multiprocessing.get_context("forkserver")
            context.set_forkserver_preload(["meterhub.dsmr.parse_helper"])
            while len(self.helpers) < self.count and not self._closed:
                conn, child = context.Pipe()
                process = context.Process(
                    target=serve_telegrams, name="meterhub-parser", daemon=True,
                    args=(child, settings.version, settings.device, settings.timezone))
                process.start()
                child.close()
                helper = _Helper(conn, process)
                self._started.append(helper)
                threading.Thread(target=_receive, args=(helper, weakref.ref(self)),
                                 name="meterhub-parser-answers", daemon=True).start()
                self.helpers = [*self.helpers, helper]
                log.info("parsing pushed telegrams in a helper process (pid %s)", process.pid)
        except Exception:  # parsing goes on in the server
            log.exception("could not start a telegram parsing helper")
            self._retry_at = time.monotonic() + RESTART_AFTER
        finally:
            self._starting = False
        if self._closed:
            _shut_all(self._started)

    def _helper_gone(self, helper: _Helper) -> None:
        """Called by a reader thread when its helper's pipe closed."""
        if helper in self.helpers:
            self.helpers = [other for other in self.helpers if other is not helper]
            if not self._closed and not helper.shutting:
                log.warning("a telegram parsing helper ended; starting one again in %.0f s",
                            RESTART_AFTER)
                self._retry_at = time.monotonic() + RESTART_AFTER

    def close(self) -> None:
        """End the helpers (telegrams still waiting for them are parsed here)."""
        self._closed = True
        self._finalizer()


def _shut_all(helpers: list[_Helper]) -> None:
    for helper in helpers:
        helper.shut()


def _receive(helper: _Helper, owner: weakref.ref[TelegramReader]) -> None:
    """A reader thread: settle each answered telegram on its own event loop; when the
    pipe closes, have whatever still waits parsed in the server."""
    while True:
        try:
            answers = helper.conn.recv()
        except (EOFError, OSError):
            break
        for ident, outcome in answers:
            with helper.lock:
                entry = helper.waiting.pop(ident, None)
            if entry is not None:
                _settle_soon(entry[0], entry[1], outcome)
    reader = owner()
    if reader is not None:
        reader._helper_gone(helper)
    with helper.lock:
        helper.closed = True
        left, helper.waiting = list(helper.waiting.values()), {}
    for loop, future, text, now in left:
        _settle_soon(loop, future, _Failed("the server is shutting down", "failed")
                     if reader is None else functools.partial(reader._inline, text, now))


def _settle_soon(loop: asyncio.AbstractEventLoop, future: asyncio.Future[Telegram],
                 outcome: Telegram | _Failed | Callable[[], Telegram]) -> None:
    with contextlib.suppress(RuntimeError):  # a loop that closed: nobody waits any more
        loop.call_soon_threadsafe(_settle, future, outcome)


def _settle(future: asyncio.Future[Telegram],
            outcome: Telegram | _Failed | Callable[[], Telegram]) -> None:
    """On the waiting request's loop: its result, or its parse here (helper gone)."""
    if future.done():
        return
    if isinstance(outcome, Telegram):
        future.set_result(outcome)
    elif isinstance(outcome, _Failed):
        future.set_exception(
            TelegramError(outcome.message) if outcome.kind == "rejected" else
            NoTelegram(outcome.message) if outcome.kind == "empty" else
            RuntimeError(f"the telegram parsing helper failed:\n{outcome.message}"))
    else:
        try:
            future.set_result(outcome())
        except Exception as exc:  # noqa: BLE001 - the request's own error, as inline
            future.set_exception(exc)

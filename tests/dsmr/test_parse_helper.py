"""Telegrams parsed in a helper process: the same answers as parsing here (readings,
status, serial, rejections), nothing lost when the helper dies, a new helper started,
and helpers started only when wanted."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import signal
import time
import urllib.parse
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meterhub.dsmr import parse_helper
from meterhub.dsmr.parse_helper import TelegramReader, form_field
from meterhub.dsmr.settings import DsmrSettings
from meterhub.dsmr.telegram import Telegram, TelegramError, read_telegram
from tests.dsmr.telegrams import v4, v5

NOW = dt.datetime(2024, 10, 28, tzinfo=dt.UTC)
TEXTS = [
    *(v5(stamp=f"241027{10 + m // 60:02d}{m % 60:02d}00W", t1=f"{1000 + m:010.3f}")
      for m in range(12)),
    v5().replace("001234.567", "001234.568"),  # damaged: its CRC no longer matches
    v5(stamp="241029120000W"),  # more than a day ahead of NOW
    "/ISK5\\2M550T-1012\r\n\r\n1-0:1.8.1(00",  # cut short
]


def outcome(result: Telegram | BaseException) -> Any:
    return (type(result).__name__, str(result)) if isinstance(result, BaseException) \
        else result


def here(text: str) -> Any:
    """What the server reads of a pushed ``text``: DSMR-reader's form trims whitespace,
    then NULs at either end."""
    try:
        return outcome(read_telegram(text.strip().strip("\x00"), now=NOW))
    except TelegramError as exc:
        return outcome(exc)


async def read_all(reader: TelegramReader, texts: list[str]) -> list[Any]:
    results = await asyncio.gather(*(reader.read(text, NOW) for text in texts),
                                   return_exceptions=True)
    return [outcome(result) for result in results]


async def helper_up(reader: TelegramReader, count: int = 1, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while len(reader.helpers) < count:
        assert time.monotonic() < deadline, "no helper came up"
        await reader.read(TEXTS[0], NOW)  # a read starts missing helpers when they are due
        await asyncio.sleep(0.02)


@pytest.fixture
def reader() -> Iterator[TelegramReader]:
    """A reader whose telegrams all go to its helper once it is up (none shared)."""
    reader = TelegramReader(DsmrSettings(parse_helper="on"), helpers=1, share=False)
    yield reader
    reader.close()


def parsed_here_fails(text: str, now: dt.datetime) -> Telegram:
    raise AssertionError("parsed in the server, not in the helper")


def test_the_helper_answers_as_parsing_here_does(reader: TelegramReader,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    async def run() -> list[Any]:
        await helper_up(reader)
        monkeypatch.setattr(reader, "_inline", parsed_here_fails)
        return await read_all(reader, TEXTS)

    got = asyncio.run(run())
    assert got == [here(text) for text in TEXTS]
    assert [kind for kind, *_ in got[-3:]] == ["TelegramError"] * 3
    assert reader.helpers[0].process.pid != os.getpid()


def test_a_forms_bytes_are_decoded_in_the_helper(reader: TelegramReader,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A urlencoded body's telegram field goes over as sent and is decoded there as a
    form's field is (latin-1, then + and %XX)."""
    texts = [TEXTS[0], f" \x00{TEXTS[1]}\x00 \t", TEXTS[-1]]
    forms = [urllib.parse.quote_plus(text).encode("ascii") for text in texts]

    async def run() -> list[Any]:
        await helper_up(reader)
        monkeypatch.setattr(reader, "_inline", parsed_here_fails)
        return await read_all(reader, [*forms, b"%00+%0D%0A%00", b""])

    got = asyncio.run(run())
    assert got[:3] == [here(text) for text in texts]
    assert isinstance(got[1], Telegram)
    assert [kind for kind, _ in got[3:]] == ["NoTelegram", "NoTelegram"]


@settings(max_examples=500, deadline=None)
@given(raw=st.one_of(
    st.binary(max_size=40),
    st.lists(st.sampled_from([b"%", b"%2", b"%25", b"%41", b"%4a", b"%4A", b"%aB", b"%0D%0A",
                              b"%C3%A9", b"%e9", b"%FF", b"%G1", b"+", b"%2B", b"\\", b"\\x41",
                              b"\\N{DASH}", b"\\u0041", b"a", b"(", b"\xe9", b"\x00", b"%00"]),
             max_size=12).map(b"".join),
    st.text(max_size=40).map(lambda text: urllib.parse.quote_plus(text).encode("ascii"))))
def test_a_forms_field_is_decoded_as_starlette_decodes_it(raw: bytes) -> None:
    """`form_field`'s fast path must read every field as the form parser would
    (``unquote_plus`` of its latin-1 text: Starlette's urlencoded form)."""
    assert form_field(raw) == urllib.parse.unquote_plus(raw.decode("latin-1"))


def test_a_busy_helper_shares_its_telegrams_with_the_server(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Telegrams that come while the helper has a queue are partly parsed here (once the
    loop ran what was ready), and read the same either way."""
    reader = TelegramReader(DsmrSettings(parse_helper="on"), helpers=1)
    parsed_here: list[str | bytes] = []
    inline = reader._inline

    def counted(text: str | bytes, now: dt.datetime) -> Telegram:
        parsed_here.append(text)
        return inline(text, now)

    async def run() -> tuple[list[Any], list[Any]]:
        await helper_up(reader)
        monkeypatch.setattr(reader, "_inline", counted)
        alone = [(await read_all(reader, [text]))[0] for text in TEXTS]  # one at a time
        assert parsed_here == [], "a helper with nothing waiting takes each telegram"
        pid = reader.helpers[0].process.pid
        os.kill(pid, signal.SIGSTOP)  # it answers none while the wave is handed out
        try:
            wave = asyncio.ensure_future(read_all(reader, TEXTS * 4))
            await asyncio.sleep(0)  # (the gather starts the reads)
            await asyncio.sleep(0)  # each read ran up to its wait
        finally:
            os.kill(pid, signal.SIGCONT)
        return alone, await wave

    try:
        alone, together = asyncio.run(run())
    finally:
        reader.close()
    assert alone == [here(text) for text in TEXTS]
    assert together == [here(text) for text in TEXTS * 4]
    # the helper is sent two, then every other one (it has more waiting than here + 1)
    assert len(parsed_here) == (4 * len(TEXTS) - 2) // 2


def test_a_share_whose_request_is_gone_is_not_parsed(monkeypatch: pytest.MonkeyPatch) -> None:
    reader = TelegramReader(DsmrSettings(parse_helper="on"), helpers=1)
    parsed_here: list[str | bytes] = []
    monkeypatch.setattr(reader, "_inline", lambda text, now: parsed_here.append(text))

    async def run() -> list[Any]:
        await helper_up(reader)
        parsed_here.clear()
        pid = reader.helpers[0].process.pid
        os.kill(pid, signal.SIGSTOP)  # it answers nothing meanwhile
        try:
            reads = [asyncio.ensure_future(reader.read(text, NOW)) for text in TEXTS[:3]]
            await asyncio.sleep(0)  # each read ran up to its wait: the helper has two waiting,
            assert reader._here == 1  # so the third is to be parsed here, when the loop gets to it
            reads[2].cancel()  # (its client went away)
        finally:
            os.kill(pid, signal.SIGCONT)
        return await asyncio.gather(*reads, return_exceptions=True)

    try:
        got = asyncio.run(run())
    finally:
        reader.close()
    assert [outcome(result) for result in got[:2]] == [here(text) for text in TEXTS[:2]]
    assert isinstance(got[2], asyncio.CancelledError)
    assert parsed_here == []
    assert reader._here == 0


def test_another_dialect_and_zone_go_to_the_helper() -> None:
    settings = DsmrSettings(parse_helper="on", version="4", device="meter",
                            timezone="Europe/Brussels")
    reader = TelegramReader(settings, helpers=1)

    async def run() -> Any:
        await helper_up(reader)
        return await reader.read(v4(), NOW)

    try:
        got = asyncio.run(run())
    finally:
        reader.close()
    assert got == read_telegram(v4().strip(), dialect="4", device="meter",
                                tz="Europe/Brussels", now=NOW)


def test_a_helper_that_dies_loses_nothing_and_is_replaced(
        reader: TelegramReader, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parse_helper, "RESTART_AFTER", 0.2)
    parsed_here: list[str] = []
    inline = reader._inline

    def counted(text: str, now: dt.datetime) -> Telegram:
        parsed_here.append(text)
        return inline(text, now)

    monkeypatch.setattr(reader, "_inline", counted)

    async def run() -> tuple[list[Any], int, int]:
        await helper_up(reader)
        first = reader.helpers[0].process
        reading = asyncio.gather(*(reader.read(text, NOW) for text in TEXTS * 4),
                                 return_exceptions=True)
        await asyncio.sleep(0)  # every read handed to the helper ...
        os.kill(first.pid, signal.SIGKILL)  # ... which dies with most of them unanswered
        results = [outcome(result) for result in await reading]
        await helper_up(reader)
        return results, first.pid, reader.helpers[0].process.pid

    results, old, new = asyncio.run(run())
    assert results == [here(text) for text in TEXTS * 4]
    assert parsed_here, "the telegrams the helper left were parsed here"
    assert new != old


def test_auto_starts_a_helper_only_under_load(monkeypatch: pytest.MonkeyPatch) -> None:
    reader = TelegramReader(DsmrSettings(), helpers=1)
    assert reader.mode == "auto"
    started: list[bool] = []

    def start() -> None:  # what starting does, without a process
        reader._starting = True
        started.append(True)

    monkeypatch.setattr(reader, "_start", start)

    async def run() -> None:
        for text in TEXTS[:3]:  # one meter pushing now and then
            await reader.read(text, NOW)
        assert not started
        for _ in range(parse_helper.AUTO_RATE):  # pushes faster than AUTO_RATE a second
            await reader.read(TEXTS[0], NOW)

    # the counts are per second of the clock: start at the beginning of one
    time.sleep(1 - time.monotonic() % 1)
    asyncio.run(run())
    assert started == [True]


@pytest.mark.parametrize(("settings", "helpers"), [(DsmrSettings(parse_helper="off"), 1),
                                               (DsmrSettings(parse_helper="on"), 0)])
def test_no_helper_when_off_or_on_one_core(settings: DsmrSettings, helpers: int) -> None:
    reader = TelegramReader(settings, helpers=helpers)

    async def run() -> list[Any]:
        got = await read_all(reader, TEXTS * 3)
        await asyncio.sleep(0.2)
        return got

    assert asyncio.run(run()) == [here(text) for text in TEXTS * 3]
    assert reader.helpers == []
    assert not reader._starting


def test_closing_ends_the_helper(reader: TelegramReader) -> None:
    asyncio.run(helper_up(reader))
    process = reader.helpers[0].process
    reader.close()
    assert not process.is_alive()

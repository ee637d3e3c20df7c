"""meterhub's CRC (crcmod-plus, in C) against dsmr-parser's own routine: the same value for
every telegram of the corpus and for damaged or odd texts, and the same accept/reject
verdict."""

from __future__ import annotations

import pytest
from dsmr_parser.exceptions import InvalidChecksumError, ParseError
from dsmr_parser.parsers import TelegramParser
from hypothesis import given
from hypothesis import strategies as st

from meterhub.dsmr.telegram import TelegramError, check_crc, crc16
from tests.dsmr import telegrams

CORPUS = [telegrams.v5(), telegrams.v5(stamp="240615120000S", gas_stamp="240615110000S"),
          telegrams.v4(), telegrams.belgium(), telegrams.v22(), telegrams.luxembourg()]


def library_accepts(text: str) -> bool:
    try:
        TelegramParser.validate_checksum(text)
    except (InvalidChecksumError, ParseError, ValueError):
        return False
    return True


def ours_accepts(text: str) -> bool:
    try:
        check_crc(text)
    except (TelegramError, ValueError):
        return False
    return True


@pytest.mark.parametrize("text", CORPUS)
def test_the_corpus_gets_the_librarys_crc_and_verdict(text: str) -> None:
    body = text[text.index("/"): text.rindex("!") + 1]
    assert crc16(body) == TelegramParser.crc16(body) == telegrams.crc16_arc(body)
    assert ours_accepts(text) == library_accepts(text)


def test_a_changed_digit_fails_both() -> None:
    text = telegrams.v5().replace("001234.567", "001234.568")
    assert not ours_accepts(text)
    assert not library_accepts(text)


@given(base=st.sampled_from(CORPUS), at=st.integers(0, 2000),
       insert=st.text(max_size=3), cut=st.integers(0, 3))
def test_damaged_telegrams_get_the_same_crc_and_verdict(base: str, at: int, insert: str,
                                                         cut: int) -> None:
    at %= len(base)
    text = base[:at] + insert + base[at + cut:]
    assert crc16(text) == TelegramParser.crc16(text)
    assert ours_accepts(text) == library_accepts(text)


@given(st.text(max_size=60))
def test_any_text_gets_the_librarys_crc(text: str) -> None:
    assert crc16(text) == TelegramParser.crc16(text)


def test_the_crc_runs_in_c() -> None:
    """crcmod falls back to a Python loop, slower than the table it replaced, without a
    word when its C extension does not load: that must not pass unnoticed."""
    import crcmod.crcmod

    assert crcmod.crcmod._usingExtension

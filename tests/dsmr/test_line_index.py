"""meterhub's line-indexed read (`LineIndexParser.read`) against dsmr-parser's own parse:
for every dialect, the same values under the same names (M-Bus devices and their order
too), or the same error, on telegrams built from each dialect's specification and on
damaged ones. Its stamp parser against the library's on any text."""

from __future__ import annotations

import copy
import re
from decimal import Decimal
from typing import Any

import pytest
from dsmr_parser.objects import CosemObject, DSMRObject, MBusObject
from dsmr_parser.parsers import (
    CosemParser,
    MaxDemandParser,
    MBusParser,
    ProfileGenericParser,
    TelegramParser,
)
from dsmr_parser.value_types import timestamp
from hypothesis import example, given, settings
from hypothesis import strategies as st

from meterhub.dsmr.line_index import Cosem, LineIndexParser, MBusReading, meter_stamp
from meterhub.dsmr.telegram import DIALECTS
from tests.dsmr import telegrams

PLAIN = [name for name, spec in DIALECTS.items() if not spec.get("general_global_cipher")]
ONE_LINE = re.compile(r"\^(.+)\.\+\?\\r\\n")


def shape(item: Any) -> Any:
    """What a parsed object says, comparable with ==."""
    if isinstance(item, list):
        return [shape(each) for each in item]
    assert isinstance(item, DSMRObject)
    return type(item).__name__, item.obis_id_code, item.values


def value_of(item: Any) -> Any:
    """What `read_telegram` reads of an object (its code, value and time, with their types:
    an error message quotes a value as text), or the library's whole object."""
    if isinstance(item, list):
        return [value_of(each) for each in item]
    if isinstance(item, MBusObject | MBusReading):
        return ("time and value", item.obis_id_code, repr(item.datetime), repr(item.value))
    if isinstance(item, CosemObject | Cosem):
        return ("value", item.obis_id_code, repr(item.value))
    return shape(item)


def values(telegram: Any) -> Any:
    """Every name a telegram has, with its value, in the order they were set; and each
    M-Bus channel's."""
    def named(thing: Any, *left_out: str) -> list[tuple[str, Any]]:
        return [(name, value_of(item)) for name, item in vars(thing).items()
                if not name.startswith("_") and name not in left_out]

    return (named(telegram, "MBUS_DEVICES"),
            [(device.channel_id, named(device, "channel_id"))
             for device in getattr(telegram, "MBUS_DEVICES", [])])


def same_values(dialect: str, text: str) -> Any:
    """The lean read against the library's parse (each with its own specification)."""
    library = TelegramParser(copy.deepcopy(DIALECTS[dialect]), apply_checksum_validation=False)
    ours = LineIndexParser(TelegramParser(copy.deepcopy(DIALECTS[dialect]),
                                          apply_checksum_validation=False))

    def read(parse: Any) -> Any:
        try:
            return values(parse(text))
        except Exception as exc:  # noqa: BLE001 - the error is the outcome compared
            # (its message names the parser object, each side's own)
            return type(exc).__name__, re.sub(r" at 0x[0-9a-f]+", "", str(exc))

    expected = read(lambda t: library.parse(t, throw_ex=True))
    assert read(ours.read) == expected
    return expected


def value_text(kind: str) -> str:
    return {"str": "4530303435", "Decimal": "001234.567*kWh", "int": "00004",
            "timestamp": "241027023000W"}[kind]


def spec_line(obj: dict[str, Any], digit: str) -> str | None:
    """A well-formed line for ``obj`` (None for a multi-line signature)."""
    match = ONE_LINE.fullmatch(obj["obis_reference"])
    if match is None:
        return None
    head = re.sub(r"\[(\d)[\d-]*\]", r"\1", match.group(1)).replace("\\d", digit)
    head = head.replace("\\.", ".")
    parser = obj["value_parser"]
    if isinstance(parser, ProfileGenericParser):
        values = "(2)(0-0:96.7.19)(240101000000W)(0000000240*s)(240102000000W)(0000000301*s)"
    elif isinstance(parser, MaxDemandParser):
        values = "(1)(1-0:1.6.0)(1-0:1.6.0)(240101000000W)(240102000000W)(01.234*kW)"
    elif isinstance(parser, MBusParser | CosemParser):
        values = "".join(f"({value_text(f.coerce_type.__name__)})"
                         for f in parser.value_formats)
    else:
        raise AssertionError(f"a parser this test does not know: {parser!r}")
    return head + values


def spec_lines(dialect: str) -> list[str]:
    lines = [spec_line(obj, "1" if n % 2 else "0")
             for n, obj in enumerate(DIALECTS[dialect]["objects"])]
    return [line for line in lines if line is not None]


def frame(lines: list[str]) -> str:
    return "/ISK5\\2M550T-1012\r\n\r\n" + "".join(f"{line}\r\n" for line in lines) + "!1A2B\r\n"


CORPUS = {"5": [telegrams.v5(), telegrams.v5(stamp="240615120000S")], "4": [telegrams.v4()],
          "belgium": [telegrams.belgium()], "2.2": [telegrams.v22()],
          "luxembourg": [telegrams.luxembourg()]}


@pytest.mark.parametrize("dialect", PLAIN)
def test_every_dialects_objects_read_as_the_library_parses_them(dialect: str) -> None:
    for text in [frame(spec_lines(dialect)), *CORPUS.get(dialect, [])]:
        named, devices = same_values(dialect, text)
        assert isinstance(named, list), named  # not an error
        assert len(named) >= 5, named
    if dialect in ("4", "5"):
        assert [channel for channel, _ in devices] == [1], devices
        assert "time and value" in [value[0] for _, value in devices[0][1]], devices


def test_the_lean_read_makes_the_common_lines_its_own_values() -> None:
    """Not the library's objects (which are what cost): every line of a DSMR 5 telegram but
    its power failure log (the library's own parser reads that one)."""
    ours = LineIndexParser(TelegramParser(DIALECTS["5"], apply_checksum_validation=False))
    telegram = ours.read(telegrams.v5())
    kinds = {type(item).__name__ for item in vars(telegram).values()
             if not isinstance(item, list)}
    assert kinds == {"Cosem", "MBusReading"}
    assert telegram.ELECTRICITY_USED_TARIFF_1.value == Decimal("1234.567")
    assert telegram.MBUS_DEVICES[0].MBUS_METER_READING.value == Decimal("456.789")


def test_dsmr_22s_two_line_gas_reading_is_still_found() -> None:
    text = frame(["1-0:1.8.1(00123.456*kWh)", "0-1:24.3.0(240101000000)(00)(60)(1)"
                  "(0-1:24.2.1)(m3)", "(00012.345)"])
    named, devices = same_values("2.2", text)
    assert [name for name, _ in named] == ["ELECTRICITY_USED_TARIFF_1", "GAS_METER_READING"]
    [(channel, [(name, (_, _, _, value))])] = devices
    assert (channel, name, value) == (1, "GAS_METER_READING", repr(Decimal("12.345")))


def test_a_longer_code_matches_as_in_the_library() -> None:
    """The library's signatures do not end at the code: ``1.8.10`` is read as ``1.8.1``."""
    text = frame(["1-0:1.8.10(001234.567*kWh)", "1-0:1.8.1(000001.000*kWh)"])
    assert same_values("5", text)[0][0][0] == "ELECTRICITY_USED_TARIFF_1"


@pytest.mark.parametrize("lines", [
    ["1-0:1.8.1", "(001234.567*kWh)"],  # a bare code: the library's match takes the next line
    ["1-0:1.8.1(001234.567*kWh)\n1-0:1.8.2(000001.000*kWh)"],  # a bare LF
    ["1-0:1.8.1(001234.567*kWh)\r1-0:1.8.2(000001.000*kWh)"],  # a bare CR
    ["1-0:1.8.1(001234.567*kWh)", "1-0:1.8.1(000009.000*kWh)"],  # twice
    ["0-1:24.2.1(241027023000W)(00100.000*m3)", "0-2:24.2.1(241027023000W)(00200.000*m3)",
     "0-1:24.1.0(003)"],  # two M-Bus channels, announced out of order
    ["1-0:1.8.1(00x234.567*kWh)"],  # unreadable value: the same error
])
def test_odd_texts_parse_or_fail_as_in_the_library(lines: list[str]) -> None:
    same_values("5", frame(lines))


@pytest.mark.parametrize("line", [
    "1-0:1.8.1(*kWh)", "1-0:1.8.1(1*2*kWh)", "1-0:1.8.1(1.2.3*kWh)", "1-0:1.8.1()",
    "1-0:1.8.1(1)(2)", "0-0:96.14.0(x)", "0-0:1.0.0(241027023000X)", "0-0:1.0.0(2410270230)",
    "0-0:1.0.0(241327023000W)", "0-1:24.2.1(241027023000W)(1*m3*x)",
    "0-1:24.2.1(241027023000W)", "x-0:1.8.1(00001.000*kWh)", "0-0:96.13.0()",
    "0-1:24.1.0(abc)", "0-0:96.7.21(NaN)", "1-0:1.8.1(Infinity*kWh)",
])
def test_odd_values_read_or_fail_as_in_the_library(line: str) -> None:
    same_values("5", frame(["1-0:1.8.2(000001.000*kWh)", line]))


ALPHABET = st.sampled_from(list("0123456789-:.()*!/\r\n ABSWkmh3"))


@settings(max_examples=300)
@given(data=st.data(), dialect=st.sampled_from(PLAIN))
def test_damaged_telegrams_parse_or_fail_as_in_the_library(data: st.DataObject,
                                                           dialect: str) -> None:
    lines = spec_lines(dialect)
    chosen = data.draw(st.lists(st.sampled_from(lines), min_size=1, max_size=12))
    text = frame(chosen)
    for _ in range(data.draw(st.integers(0, 3))):
        at = data.draw(st.integers(0, len(text)))
        cut = data.draw(st.integers(0, 3))
        text = text[:at] + data.draw(st.text(ALPHABET, max_size=4)) + text[at + cut:]
    same_values(dialect, text)


STAMP_CHARACTERS = st.sampled_from(list("0123456789SW X:-.٣"))


@settings(max_examples=500)
@given(st.text(STAMP_CHARACTERS, min_size=10, max_size=14) | st.from_regex(
    r"[0-9]{2}(0[0-9]|1[0-3])([0-2][0-9]|3[0-2])([01][0-9]|2[0-4])[0-6][0-9][0-6][0-9][SW]?",
    fullmatch=True))
@example("241027023000W")  # the autumn night's hour twice: winter is the second
@example("241027023000S")
@example("240331023000W")  # the spring night's hour that does not exist
@example("000229000000W")  # a leap day, and one that is not
@example("010229000000W")
@example("681231235959W")  # the last year of 20xx, the first of 19xx
@example("690101000000W")
@example("241027023060W")  # a 60th second
@example("241027240000W")
def test_stamps_read_as_the_librarys_timestamp(text: str) -> None:
    assert repr(meter_stamp(text)) == repr(timestamp(text))

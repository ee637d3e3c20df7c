"""`WriteResult` splits the keys a write wrote into new, replaced and unchanged ones, on the
short path (small writes of known channels), with the short path's key probe overflowing,
and on the general path. Every expectation is counted by hand from the rows written."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from meterhub.hub import Hub
from meterhub.store import WriteResult
from meterhub.store import clickhouse as clickhouse_store
from meterhub.store import duckdb as duckdb_store
from tests.store.conftest import GENERAL, OVERFLOWING, SHORT, take_path

T0 = dt.datetime(2024, 3, 1, tzinfo=dt.UTC)


@pytest.fixture(params=[SHORT, OVERFLOWING, GENERAL])
def path(request: pytest.FixtureRequest, backend: str, monkeypatch: pytest.MonkeyPatch) -> str:
    take_path(request.param, backend, monkeypatch)
    return str(request.param)


def row(minute: int, value: float | None, channel: str = "a", **extra: Any) -> dict[str, Any]:
    return {"source": "s", "device": "d", "channel": channel,
            "ts": T0 + dt.timedelta(minutes=minute), "value": value, "unit": "kW", **extra}


def split(result: WriteResult) -> tuple[int, int, int, int, int]:
    return result.rows, result.written, result.new, result.replaced, result.unchanged


def expected_path(path: str) -> str:
    return "general" if path == "general" else "short"


BASE = [row(0, 1.0), row(1, 2.0), row(2, 3.0), row(3, 4.0)]


def test_same_rows_again_are_unchanged_and_one_changed_value_is_replaced(
        hub: Hub, path: str, taken: list[str]) -> None:
    assert split(hub.write(BASE)) == (4, 4, 4, 0, 0)
    taken.clear()
    assert split(hub.write(BASE)) == (4, 4, 0, 0, 4)
    changed = [row(0, 1.0), row(1, 2.5), row(2, 3.0), row(3, 4.0)]
    assert split(hub.write(changed)) == (4, 4, 0, 1, 3)
    newest_changed = [row(0, 1.0), row(1, 2.5), row(2, 3.0), row(3, 4.5)]
    assert split(hub.write(newest_changed)) == (4, 4, 0, 1, 3)
    assert taken == [expected_path(path)] * 3
    assert hub.readings()["value"].tolist() == [1.0, 2.5, 3.0, 4.5]


def test_a_mix_of_new_replaced_and_unchanged_keys(hub: Hub, path: str,
                                                   taken: list[str]) -> None:
    hub.write(BASE)
    taken.clear()
    mix = [row(-2, 0.5),  # new, before every stored key
           row(0, 1.0),  # unchanged
           row(1, 2.0, quality="estimated"),  # replaced: quality differs
           row(2, 3.0),  # unchanged
           row(3, 4.0),  # unchanged (the newest stored row)
           row(5, 6.0), row(6, 7.0)]  # new, after the newest
    assert split(hub.write(mix)) == (7, 7, 3, 1, 3)
    assert taken == [expected_path(path)]
    assert hub.count() == 7


def test_every_content_field_counts_and_two_nulls_are_equal(hub: Hub, path: str) -> None:
    error = {"quality": "sensor_error", "error_code": "E1"}
    first = [row(0, None, **error), row(1, 2.0, seq=7), row(2, 3.0, validated=False),
             row(3, 4.0)]
    assert split(hub.write(first)) == (4, 4, 4, 0, 0)
    assert split(hub.write(first)) == (4, 4, 0, 0, 4)  # the NULL value compares equal
    other_code = [row(0, None, quality="sensor_error", error_code="E2"),
                  row(1, 2.0, seq=8), row(2, 3.0, validated=True), row(3, 4.0)]
    assert split(hub.write(other_code)) == (4, 4, 0, 3, 1)
    no_seq = [row(0, None, quality="sensor_error", error_code="E2"), row(1, 2.0),
              row(2, 3.0, validated=True), row(3, 4.0)]
    assert split(hub.write(no_seq)) == (4, 4, 0, 1, 3)
    value_again = [row(0, 1.0), row(1, 2.0), row(2, 3.0, validated=True), row(3, 4.0)]
    assert split(hub.write(value_again)) == (4, 4, 0, 1, 3)  # NULL -> 1.0


def test_a_key_twice_in_one_write_counts_once_with_its_last_row(hub: Hub, path: str) -> None:
    hub.write(BASE)
    again = [row(1, 9.0), row(1, 2.0),  # last row equals the stored one: unchanged
             row(2, 3.0), row(2, 9.0),  # last row differs: replaced
             row(7, 1.0), row(7, 2.0)]  # new
    assert split(hub.write(again)) == (6, 3, 1, 1, 1)
    assert hub.readings()["value"].tolist() == [1.0, 2.0, 9.0, 4.0, 2.0]


def test_a_new_channel_next_to_known_ones_goes_the_general_path(
        hub: Hub, path: str, taken: list[str]) -> None:
    hub.write(BASE)
    taken.clear()
    mix = [row(0, 1.0), row(1, 5.0), row(9, 1.0), row(0, 1.0, channel="b"),
           row(1, 1.0, channel="b")]
    assert split(hub.write(mix)) == (5, 5, 3, 1, 1)
    assert taken == ["general"]


def test_a_rewrite_of_a_large_write_is_counted_by_the_general_path(hub: Hub) -> None:
    n = duckdb_store.SHORT_WRITE_ROWS + 5
    assert n > clickhouse_store.SHORT_WRITE_ROWS
    rows = [row(i, float(i)) for i in range(n)]
    assert split(hub.write(rows)) == (n, n, n, 0, 0)
    rows[10] = row(10, -1.0)
    rows.append(row(n, 0.0))
    assert split(hub.write(rows)) == (n + 1, n + 1, 1, 1, n - 1)


def test_a_field_that_is_the_same_in_every_row_of_a_write_still_counts(
        hub: Hub, path: str) -> None:
    hub.write(BASE)  # quality ok, validated false, no seq, no error code in every row
    assert split(hub.write([{**r, "validated": True} for r in BASE])) == (4, 4, 0, 4, 0)
    assert split(hub.write([{**r, "validated": True, "seq": 1} for r in BASE])) == (
        4, 4, 0, 4, 0)
    assert split(hub.write([{**r, "validated": True, "seq": 1} for r in BASE])) == (
        4, 4, 0, 0, 4)
    estimated = [{**r, "validated": True, "seq": 1, "quality": "estimated"} for r in BASE]
    assert split(hub.write(estimated)) == (4, 4, 0, 4, 0)
    errors = [{**r, "value": None, "validated": True, "seq": 1, "quality": "sensor_error",
               "error_code": "E9"} for r in BASE]
    assert split(hub.write(errors)) == (4, 4, 0, 4, 0)
    assert split(hub.write(errors)) == (4, 4, 0, 0, 4)
    assert split(hub.write([{**r, "error_code": "E8"} for r in errors])) == (4, 4, 0, 4, 0)

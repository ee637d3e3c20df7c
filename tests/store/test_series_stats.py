"""Each channel's count, first and newest time and newest value (`Hub.channels`) after any
writes and deletes, on every write path, against the stored readings themselves; DuckDB
keeps them at write time (no scan of the readings), so also: a store made before it did."""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Callable
from typing import Any

import duckdb
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import meterhub
from meterhub.hub import Hub
from meterhub.store import duckdb as duckdb_store
from tests.store.conftest import GENERAL, OVERFLOWING, SHORT, take_path

T0 = dt.datetime(2024, 3, 1, tzinfo=dt.UTC)


@pytest.fixture(params=[SHORT, OVERFLOWING, GENERAL])
def path(request: pytest.FixtureRequest, backend: str, monkeypatch: pytest.MonkeyPatch) -> str:
    take_path(request.param, backend, monkeypatch)
    return str(request.param)


@pytest.fixture
def new_device() -> Callable[[], str]:
    numbers = itertools.count()
    return lambda: f"d{next(numbers)}"


def rows_of(batch: list[tuple[str, int, float | None]], device: str) -> list[dict[str, Any]]:
    """(channel, minute, value): a None value is a sensor error."""
    return [{"source": "s", "device": device, "channel": channel,
             "ts": T0 + dt.timedelta(minutes=minute), "value": value, "unit": "kW",
             "quality": "ok" if value is not None else "sensor_error",
             "error_code": None if value is not None else "E"}
            for channel, minute, value in batch]


def expected_stats(hub: Hub, device: str) -> dict[str, tuple[int, Any, Any, Any]]:
    """From the stored readings: count, first and last time, the last one's value."""
    out: dict[str, tuple[int, Any, Any, Any]] = {}
    if hub.channels(device=device).empty:  # nothing written yet
        return out
    frame = hub.readings(device=device)
    for channel, rows in frame.groupby("channel"):
        rows = rows.sort_values("ts")
        last = rows["value"].iloc[-1]
        out[str(channel)] = (len(rows), rows["ts"].iloc[0], rows["ts"].iloc[-1],
                             None if pd.isna(last) else float(last))
    return out


def stats(hub: Hub, device: str) -> dict[str, tuple[int, Any, Any, Any]]:
    table = hub.channels(device=device)
    assert str(table["readings"].dtype) == "int64"  # as JSON and every frame expect
    if table.empty:
        return {}
    return {row.channel: (row.readings, row.first_ts, row.last_ts,
                          None if pd.isna(row.last_value) else row.last_value)
            for row in table.itertuples() if row.readings}


step = st.one_of(
    st.lists(st.tuples(st.sampled_from(["a", "b"]), st.integers(0, 12),
                       st.sampled_from([1.0, 2.0, 3.5, None])), min_size=1, max_size=10),
    st.tuples(st.integers(0, 12), st.integers(1, 6), st.sampled_from(["a", None])))


def follow(steps: list[Any], hub: Hub, device: str) -> None:
    for item in steps:
        if isinstance(item, list):
            hub.write(rows_of(item, device))
        else:
            start, minutes, channel = item
            known = set(hub.channels(device=device)["channel"])
            if known and (channel is None or channel in known):
                hub.delete(device=device, channel=channel,
                           start=T0 + dt.timedelta(minutes=start),
                           end=T0 + dt.timedelta(minutes=start + minutes))
        assert stats(hub, device) == expected_stats(hub, device)


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(step, min_size=1, max_size=8))
def test_channel_stats_follow_any_writes_and_deletes(
        steps: list[Any], path: str, hub: Hub, new_device: Callable[[], str]) -> None:
    follow(steps, hub, new_device())  # the examples share the store, each its own device


@pytest.mark.parametrize("backend", ["duckdb"])
@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(step, min_size=1, max_size=8))
def test_duckdb_stats_folded_every_other_batch_follow_too(
        steps: list[Any], path: str, hub: Hub, new_device: Callable[[], str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(duckdb_store, "FOLD_BATCHES", 2)  # batches carry, then fold in
    follow(steps, hub, new_device())


def test_the_newest_value_is_the_newest_readings_even_a_sensor_errors(hub: Hub) -> None:
    hub.write(rows_of([("a", 0, 1.0), ("a", 5, 2.0)], "m"))
    hub.write(rows_of([("a", 3, 9.0)], "m"))  # late: not the newest
    assert stats(hub, "m") == {"a": (3, pd.Timestamp(T0), pd.Timestamp(T0) + pd.Timedelta(
        minutes=5), 2.0)}
    hub.write(rows_of([("a", 6, None)], "m"))
    assert stats(hub, "m")["a"][2:] == (pd.Timestamp(T0) + pd.Timedelta(minutes=6), None)
    hub.write(rows_of([("a", 6, 4.5)], "m"))  # the error replaced by a value
    assert stats(hub, "m")["a"] == (4, pd.Timestamp(T0), pd.Timestamp(T0) + pd.Timedelta(
        minutes=6), 4.5)


# -- DuckDB: kept at write time

@pytest.mark.parametrize("backend", ["duckdb"])
def test_duckdb_answers_without_reading_the_readings(store_url: str) -> None:
    with meterhub.open(store_url) as hub:
        hub.write(rows_of([("a", 0, 1.0), ("b", 2, 2.0)], "m"))
        before = hub.channels()
        hub.store._con.execute("ALTER TABLE readings RENAME TO readings_away")  # type: ignore[attr-defined]
        assert hub.channels().equals(before)
        hub.store._con.execute("ALTER TABLE readings_away RENAME TO readings")  # type: ignore[attr-defined]


@pytest.mark.parametrize("backend", ["duckdb"])
def test_stats_carried_by_batches_survive_a_restart_and_fold_in(
        store_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(duckdb_store, "FOLD_BATCHES", 4)
    with meterhub.open(store_url) as hub:
        for minute in range(6):  # a fold after the fourth write, two batches after it
            hub.write(rows_of([("a", minute, float(minute)), ("b", minute, None)], "m"))
        expected = stats(hub, "m")
    with meterhub.open(store_url) as hub:
        assert stats(hub, "m") == expected == expected_stats(hub, "m")
        assert expected["a"][0] == 6
        assert expected["a"][3] == 5.0
        hub.write(rows_of([("a", 2, 7.0)], "m"))  # replaced: the count stays
        assert stats(hub, "m")["a"][0] == 6
        hub.write(rows_of([("a", 5, 8.0)], "m"))  # the newest replaced: its value changes
        assert stats(hub, "m") == expected_stats(hub, "m")
        assert stats(hub, "m")["a"][3] == 8.0


@pytest.mark.parametrize("backend", ["duckdb"])
def test_a_fold_in_a_write_that_fails_goes_with_it(
        store_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(duckdb_store, "FOLD_BATCHES", 2)
    with meterhub.open(store_url) as hub:
        hub.write(rows_of([("a", 0, 1.0)], "m"))
        with pytest.raises(Exception, match="NOT NULL"):  # folds, then fails: rolled back
            hub.write(rows_of([("a", 1, 2.0)], "m"), state={"k": None})  # type: ignore[dict-item]
        hub.write(rows_of([("a", 2, 3.0)], "m"))
        assert stats(hub, "m") == expected_stats(hub, "m")
        assert stats(hub, "m")["a"][0] == 2


@pytest.mark.parametrize("backend", ["duckdb"])
def test_a_store_made_before_the_stats_were_kept_counts_them_once(store_url: str) -> None:
    with meterhub.open(store_url) as hub:
        hub.write(rows_of([("a", m, float(m)) for m in range(10)] + [("b", 4, None)], "m"))
        expected = hub.channels(as_="arrow")
    path = store_url.removeprefix("duckdb:///")
    with duckdb.connect(path) as con:  # as an older meterhub left it
        con.execute("DROP TABLE series_stats")
        con.execute("ALTER TABLE batches DROP COLUMN stats")
        con.execute("DELETE FROM meta WHERE key LIKE 'series_stats%'")
    with meterhub.open(store_url) as hub:
        assert hub.channels(as_="arrow").equals(expected)
        assert expected.column("readings").to_pylist() == [10, 1]
        assert expected.column("last_value").to_pylist() == [9.0, None]
        hub.write(rows_of([("a", 10, 5.0)], "m"))
        assert hub.channels(as_="arrow").column("readings").to_pylist() == [11, 1]

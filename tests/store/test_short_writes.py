"""Small writes take the store's short path (cached catalog, newest-row shortcut); large
ones the general path. Both must keep the same contract: one row per key, the last write
of a key wins, a failed write changes nothing, and state values commit with the rows."""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import meterhub
from meterhub.hub import Hub
from tests.store.conftest import GENERAL, OVERFLOWING, SHORT, take_path

T0 = dt.datetime(2024, 3, 1, tzinfo=dt.UTC)
Key = tuple[str, int]  # (channel, minute)
Row = tuple[str, int, float, str]  # (channel, minute, value, quality)


@pytest.fixture(params=[SHORT, OVERFLOWING, GENERAL])
def path(request: pytest.FixtureRequest, backend: str, monkeypatch: pytest.MonkeyPatch) -> str:
    take_path(request.param, backend, monkeypatch)
    return str(request.param)


def rows_of(batch: list[Row], device: str = "d") -> list[dict[str, object]]:
    return [{"source": "s", "device": device, "channel": channel,
             "ts": T0 + dt.timedelta(minutes=minute), "value": value, "unit": "kW",
             "quality": quality} for channel, minute, value, quality in batch]


def stored(hub: Hub, device: str | None = None) -> dict[Key, tuple[float, str]]:
    frame = hub.readings(device=device)
    if frame.empty:
        return {}
    found = {(row.channel, int((row.ts - T0).total_seconds() // 60)): (row.value, row.quality)
             for row in frame.itertuples()}
    assert len(found) == len(frame), "a key is stored twice"
    return found


@pytest.fixture
def new_device() -> Callable[[], str]:
    numbers = itertools.count()
    return lambda: f"d{next(numbers)}"


row = st.tuples(st.sampled_from(["a", "b", "c"]), st.integers(0, 12),
                st.sampled_from([1.0, 2.0, 3.5]), st.sampled_from(["ok", "estimated"]))


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(writes=st.lists(st.lists(row, min_size=1, max_size=12), min_size=1, max_size=8))
def test_any_sequence_of_writes_leaves_the_last_value_of_each_key(
        writes: list[list[Row]], path: str, hub: Hub, new_device: Callable[[], str]) -> None:
    expected: dict[Key, tuple[float, str]] = {}
    device = new_device()  # the examples share the test's store, each with its own device
    for batch in writes:
        result = hub.write(rows_of(batch, device))
        last = {(channel, minute): (value, quality)
                for channel, minute, value, quality in batch}  # the last row of a key
        new = sum(key not in expected for key in last)
        unchanged = sum(expected.get(key) == content for key, content in last.items())
        assert (result.rows, result.written, result.new, result.replaced,
                result.unchanged) == (len(batch), len(last), new,
                                      len(last) - new - unchanged, unchanged)
        expected.update(last)
        assert stored(hub, device) == expected


def test_a_repeated_newest_row_is_kept_once_and_a_changed_one_replaces_it(
        hub: Hub, path: str) -> None:
    hub.write(rows_of([("gas", 0, 10.0, "ok")]))
    hub.write(rows_of([("gas", 0, 10.0, "ok"), ("a", 1, 1.0, "ok")]))  # the meter repeats
    assert stored(hub) == {("gas", 0): (10.0, "ok"), ("a", 1): (1.0, "ok")}
    hub.write(rows_of([("gas", 0, 10.0, "estimated")]))  # same time, another quality
    hub.write(rows_of([("a", 1, 2.0, "ok")]))  # same time, another value
    assert stored(hub) == {("gas", 0): (10.0, "estimated"), ("a", 1): (2.0, "ok")}


def test_a_rolled_back_write_leaves_no_trace_for_the_next_one(hub: Hub, path: str) -> None:
    hub.write(rows_of([("a", 0, 1.0, "ok")]))
    with pytest.raises(Exception, match="NOT NULL"):  # in its transaction, or before it
        # the rows pass, the state value does not: the whole transaction goes
        hub.write(rows_of([("a", 5, 7.0, "ok")]), state={"k": None})  # type: ignore[dict-item]
    assert stored(hub) == {("a", 0): (1.0, "ok")}
    assert hub.get_state("k") is None
    hub.write(rows_of([("a", 5, 7.0, "ok")]))  # the same row again: now it lands
    assert stored(hub) == {("a", 0): (1.0, "ok"), ("a", 5): (7.0, "ok")}


def test_state_values_commit_with_the_rows_and_survive_a_restart(store_url: str) -> None:
    url = store_url
    with meterhub.open(url) as hub:
        hub.write(None, state={"dsmr.rejected": "3"})
        hub.write(rows_of([("a", 0, 1.0, "ok")]), state={"dsmr.rejected": "4", "x": "y"})
        assert hub.count() == 1
    with meterhub.open(url) as hub:
        assert (hub.get_state("dsmr.rejected"), hub.get_state("x")) == ("4", "y")
        assert hub.get_state("never") is None

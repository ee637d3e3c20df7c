"""Keyset pages: every reading exactly once, in scan order, for any page size (hypothesis)."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meterhub.errors import InputError
from meterhub.hub import Hub
from meterhub.store import Selection


@pytest.fixture
def new_prefix() -> Callable[[], str]:
    """Device names of its own for each example: the examples share the test's store."""
    numbers = itertools.count()
    return lambda: f"e{next(numbers)}"


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sizes=st.lists(st.integers(0, 40), min_size=1, max_size=4),
       limit=st.integers(1, 60), one=st.booleans(),
       window=st.tuples(st.integers(0, 40), st.integers(0, 40)))
def test_pages_cover_the_scan_exactly_once(hub: Hub, new_prefix: Callable[[], str],
                                           sizes: list[int], limit: int, one: bool,
                                           window: tuple[int, int]) -> None:
    prefix = new_prefix()
    frames = [pd.DataFrame({"device": f"{prefix}d{i // 2}", "channel": f"c{i % 2}",
                            "ts": pd.date_range("2024-01-01", periods=n, freq="1min",
                                                tz="UTC"),
                            "value": np.arange(n, dtype=float), "unit": "W"})
              for i, n in enumerate(sizes) if n]
    if frames:
        hub.write(pd.concat(frames), source="s")
    first = next((i for i, n in enumerate(sizes) if n), 0)
    devices = ([f"{prefix}d{first // 2}"] if one else
               sorted({f"{prefix}d{i // 2}" for i, n in enumerate(sizes) if n}))
    channels = [f"c{first % 2}"] if one and frames else None
    lo, hi = sorted(window)
    start = pd.Timestamp("2024-01-01", tz="UTC") + pd.Timedelta(minutes=lo)
    end = pd.Timestamp("2024-01-01", tz="UTC") + pd.Timedelta(minutes=hi + 1)
    selection = Selection(devices=devices, channels=channels, start=start, end=end)
    expected = hub.store.scan(selection).read_all() if frames else None
    pages, after = [], None
    for _ in range(1000):
        if not frames:
            break
        reader, after = hub.store.page(selection, after=after, limit=limit)
        table = reader.read_all()
        assert table.num_rows <= limit
        # only the last page may be short, and a full page says whether more follow
        assert after is None or table.num_rows == limit
        pages.append(table)
        if after is None:
            break
    if expected is None:
        return
    assert pa.concat_tables(pages).equals(expected)


def test_a_limit_below_one_is_refused(hub: Hub) -> None:
    with pytest.raises(InputError, match="at least 1"):
        hub.store.page(Selection(), after=None, limit=0)


def test_a_write_between_planning_and_streaming_never_doubles_a_row(hub: Hub) -> None:
    """The sync may write while a page streams (meterhub run): the page is one snapshot
    (DuckDB), or bounded per series when planned (ClickHouse)."""
    for device in ("a", "b"):
        hub.write(pd.DataFrame({"device": device, "channel": "c",
                                "ts": pd.date_range("2024-01-01", periods=3, freq="1min",
                                                    tz="UTC"),
                                "value": [1.0, 2.0, 3.0], "unit": "W"}), source="s")
    seen, after, sizes = [], None, []
    for number in range(10):
        reader, after = hub.store.page(Selection(), after=after, limit=4)
        if number == 0:  # planned: a's 3 rows and b's first; now the sync adds to a
            hub.write(pd.DataFrame({"device": "a", "channel": "c",
                                    "ts": [pd.Timestamp("2024-01-01T00:05Z")],
                                    "value": [9.0], "unit": "W"}), source="s")
        table = reader.read_all()
        sizes.append(table.num_rows)
        seen += list(zip(table.column("device").to_pylist(),
                         table.column("ts").to_pylist(), strict=True))
        if after is None:
            break
    assert max(sizes) <= 4
    assert len(seen) == len(set(seen))
    assert len(seen) == 6  # the late row sorts before the page's key: next sync's job


def test_a_channel_written_after_a_read_is_found_at_once(hub: Hub) -> None:
    """The catalog is cached between reads; a write that adds a channel refreshes it."""
    frame = pd.DataFrame({"device": "a", "channel": "c", "value": [1.0], "unit": "kW",
                          "ts": [pd.Timestamp("2024-01-01T00:00Z")]})
    hub.write(frame, source="s")
    assert hub.count(device="a") == 1  # caches the catalog
    hub.write(frame.assign(value=2.0), source="s")  # same channel: nothing new
    hub.write(frame.assign(device="b"), source="s")  # a new device and channel
    assert hub.count(device="b") == 1
    assert list(hub.readings(device="a")["value"]) == [2.0]

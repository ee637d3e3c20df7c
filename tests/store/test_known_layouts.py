"""`KnownLayouts` answers as `known_series` would, whatever it was asked before: a kept
answer holds only for the same keys checked against the same catalog index."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import meterhub
from meterhub.errors import InputError
from meterhub.store.catalog import KnownLayouts, known_series

Index = dict[tuple[str, str], tuple[int, str, str]]
T0 = dt.datetime(2024, 3, 1, tzinfo=dt.UTC)

#: catalogs as a store's cache gives them: each a new object after any change
INDEXES: list[Index] = [
    {("p1", "a"): (1, "kWh", "counter"), ("p1", "b"): (2, "kW", "instant")},
    {("p1", "a"): (1, "kWh", "counter"), ("p1", "b"): (2, "kW", "instant"),
     ("p2", "a"): (3, "kWh", "counter")},
    {("p1", "a"): (1, "Wh", "counter"), ("p1", "b"): (2, "kW", "instant"),
     ("p2", "a"): (3, "kWh", "counter")},  # a unit changed
    {("p1", "a"): (1, "kWh", "counter"), ("p1", "b"): (2, "kW", "instant"),
     ("p2", "a"): (3, "kWh", "counter")},  # equal to the second, another object
]

key = st.tuples(st.sampled_from(["p1", "p2"]), st.sampled_from(["a", "b"]),
                st.sampled_from(["kWh", "kW", "Wh"]),
                st.sampled_from([None, "counter", "instant"]))


def table_of(keys: list[tuple[str, str, str, str | None]], hinted: bool) -> pa.Table:
    columns = {"device": [k[0] for k in keys], "channel": [k[1] for k in keys],
               "unit": [k[2] for k in keys], "value": [1.0] * len(keys)}
    if hinted:
        columns["kind"] = [k[3] for k in keys]
    return pa.table(columns, schema=pa.schema(
        [(name, pa.float64() if name == "value" else pa.string()) for name in columns]))


def answer(check: object, table: pa.Table, index: Index) -> bool | str:
    try:
        return bool(check(table, index))  # type: ignore[operator]
    except InputError as exc:
        return f"refused: {exc}"


@settings(max_examples=300, deadline=None)
@given(asks=st.lists(st.tuples(st.lists(key, min_size=1, max_size=4), st.booleans(),
                               st.integers(0, len(INDEXES) - 1)), min_size=1, max_size=12))
def test_known_layouts_answer_as_a_lookup_of_every_row(
        asks: list[tuple[list[tuple[str, str, str, str | None]], bool, int]]) -> None:
    layouts = KnownLayouts()
    for keys, hinted, which in asks:
        table, index = table_of(keys, hinted), INDEXES[which]
        assert answer(layouts.known, table, index) == answer(
            lambda t, i: known_series(t, i) is not None, table, index)


def test_a_kind_changed_in_the_store_is_checked_again(tmp_path: Path) -> None:
    """The store's catalog gives a new index after a change (here `set_kind`), so keys
    known before it are looked up again: a journaled write's kind hint is refused."""
    def rows(minute: int, kind: str) -> list[dict[str, object]]:
        return [{"source": "s", "device": "d", "channel": "c", "unit": "kWh", "kind": kind,
                 "ts": T0 + dt.timedelta(minutes=minute), "value": float(minute)}]

    with meterhub.open(f"duckdb:///{tmp_path / 'store.duckdb'}") as hub:
        hub.write(rows(0, "counter"))  # a new channel: the store's write makes it
        journal_write = hub.store.journal_write  # type: ignore[attr-defined]
        assert journal_write(rows(1, "counter")) is not None  # known: journaled
        assert journal_write(rows(2, "counter")) is not None
        hub.set_kind("d", "c", "delta")
        with pytest.raises(InputError, match="delta"):
            journal_write(rows(3, "counter"))
        assert journal_write(rows(3, "delta")) is not None
        assert hub.count(device="d") == 4  # minutes 0 to 3


def test_a_kept_answer_does_not_outlive_its_catalog() -> None:
    """The same keys, known in one catalog, are new after a change of it (a unit)."""
    layouts = KnownLayouts()
    table = table_of([("p1", "a", "kWh", None), ("p1", "b", "kW", None)], hinted=False)
    assert layouts.known(table, INDEXES[1])
    assert not layouts.known(table, INDEXES[2])
    assert layouts.known(table, INDEXES[3])
    with pytest.raises(InputError, match="kind"):
        layouts.known(table_of([("p1", "a", "kWh", "instant")], hinted=True), INDEXES[3])

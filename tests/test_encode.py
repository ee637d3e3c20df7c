"""The JSON encoder against orjson over Python rows, on random batches (hypothesis)."""

from __future__ import annotations

import datetime as dt
import io
import math

import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meterhub.encode import json_objects, stream, stream_json

UTC = dt.UTC
times = st.datetimes(min_value=dt.datetime(1900, 1, 1), max_value=dt.datetime(2200, 1, 1))
floats = st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True))


@st.composite
def batches(draw: st.DrawFn) -> pa.RecordBatch:
    n = draw(st.integers(1, 40))
    constant = draw(st.text())  # a column with one value: folded into the row text
    return pa.RecordBatch.from_pydict({
        "text": pa.array(draw(st.lists(st.one_of(st.none(), st.text()), min_size=n,
                                       max_size=n)), pa.string()),
        "same": pa.array([constant] * n, pa.string()),
        "value": pa.array(draw(st.lists(floats, min_size=n, max_size=n)), pa.float64()),
        "seq": pa.array(draw(st.lists(st.one_of(st.none(), st.integers(-2**63, 2**63 - 1)),
                                      min_size=n, max_size=n)), pa.int64()),
        "flag": pa.array(draw(st.lists(st.one_of(st.none(), st.booleans()), min_size=n,
                                       max_size=n)), pa.bool_()),
        "ts": pa.array([t.replace(tzinfo=UTC) for t in draw(st.lists(
            times, min_size=n, max_size=n))], pa.timestamp("us", tz="UTC")),
        "local": pa.array([t.replace(tzinfo=UTC) if t else None for t in draw(st.lists(
            st.one_of(st.none(), times), min_size=n, max_size=n))],
            pa.timestamp("us", tz="UTC")).cast(pa.timestamp("us", tz="Europe/Amsterdam")),
        "nothing": pa.nulls(n),
    })


@pytest.mark.parametrize("small", [0, 10**9], ids=["arrow-kernels", "orjson-rows"])
@settings(max_examples=200, deadline=None)
@given(batch=batches())
def test_json_objects_equal_orjson_over_python_rows(small: int, batch: pa.RecordBatch) -> None:
    got = orjson.loads(b"[" + bytes(json_objects(batch, small=small)) + b"]")
    expected = batch.to_pylist()
    instants = batch.column("local").cast(pa.timestamp("us", tz="UTC")).to_pylist()
    assert len(got) == len(expected)
    for row, want, instant in zip(got, expected, instants, strict=True):
        assert list(row) == batch.schema.names
        for name in ("text", "same", "seq", "flag", "nothing"):
            assert row[name] == want[name]
        value = want["value"]
        assert row["value"] == (None if value is None or not math.isfinite(value) else value)
        assert pd.Timestamp(row["ts"]) == pd.Timestamp(want["ts"])
        assert row["ts"].endswith("Z")
        if want["local"] is None:
            assert row["local"] is None
        else:
            # the same instant (aware datetimes of different zones never compare equal
            # inside a repeated hour, so compare in UTC), written with the local offset
            assert dt.datetime.fromisoformat(row["local"]).astimezone(UTC) == instant
            assert row["local"] == want["local"].isoformat()


def test_whole_second_times_are_written_without_fractions() -> None:
    batch = pa.RecordBatch.from_pydict({"ts": pa.array(
        [dt.datetime(2024, 3, 31, 1, 0, tzinfo=UTC), dt.datetime(2024, 3, 31, 1, 15, tzinfo=UTC)],
        pa.timestamp("us", tz="UTC"))})
    for small in (0, 10**9):
        assert bytes(json_objects(batch, small=small)) == (b'{"ts":"2024-03-31T01:00:00Z"},'
                                                           b'{"ts":"2024-03-31T01:15:00Z"}')
    fine = pa.RecordBatch.from_pydict({"ts": pa.array(
        [dt.datetime(2024, 3, 31, 1, 0, 0, 250000, tzinfo=UTC)], pa.timestamp("us", tz="UTC"))})
    assert bytes(json_objects(fine, small=0)) == b'{"ts":"2024-03-31T01:00:00.250Z"}'


def test_streams_join_batches_into_one_document() -> None:
    table = pa.table({"a": [1, 2, 3], "b": ["x", "y", "z"]})
    reader = pa.RecordBatchReader.from_batches(table.schema, table.to_batches(max_chunksize=1))
    body = b"".join(bytes(c) for c in stream_json(reader, key="data", tail=lambda: {"n": 3}))
    assert orjson.loads(body) == {"data": [{"a": 1, "b": "x"}, {"a": 2, "b": "y"},
                                           {"a": 3, "b": "z"}], "n": 3}
    assert orjson.loads(b"".join(bytes(c) for c in stream(table, "json"))) == \
        table.to_pylist()
    csv = b"".join(bytes(c) for c in stream(table, "csv"))
    assert pacsv.read_csv(io.BytesIO(csv)).equals(table)


def test_the_repeated_hour_keeps_both_offsets() -> None:
    """02:00 happens twice in Amsterdam on 29 Oct 2000: +02:00, then +01:00."""
    utc = [dt.datetime(2000, 10, 29, 0, tzinfo=UTC), dt.datetime(2000, 10, 29, 1, tzinfo=UTC)]
    local = pa.array(utc, pa.timestamp("us", tz="UTC")).cast(
        pa.timestamp("us", tz="Europe/Amsterdam"))
    batch = pa.RecordBatch.from_pydict({"local": local})
    for small in (0, 10**9):
        assert bytes(json_objects(batch, small=small)) == (
            b'{"local":"2000-10-29T02:00:00+02:00"},{"local":"2000-10-29T02:00:00+01:00"}')

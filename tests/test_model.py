from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa
import pytest

from meterhub.errors import InputError
from meterhub.model import READING_SCHEMA, to_readings


def rows(**changes: object) -> list[dict[str, object]]:
    base = [
        {"device": "d1", "channel": "t", "ts": "2024-03-31T00:00:00Z", "value": "1.5",
         "unit": "°C"},
        {"device": "d1", "channel": "t", "ts": "2024-03-31T03:00:00+02:00", "value": "2",
         "unit": "degC"},
        {"device": "d1", "channel": "t", "ts": "2024-03-31 02:00:00", "value": 3,
         "unit": "C"},
    ]
    for key, value in changes.items():
        index, column = key.split("__")
        base[int(index)][column] = value
    return base


def test_canonical_schema_and_utc_times() -> None:
    table = to_readings(rows(), source="s")
    assert table.schema == READING_SCHEMA
    assert table.column("ts").to_pylist() == [
        dt.datetime(2024, 3, 31, 0, tzinfo=dt.UTC),
        dt.datetime(2024, 3, 31, 1, tzinfo=dt.UTC),  # +02:00 offset honoured
        dt.datetime(2024, 3, 31, 2, tzinfo=dt.UTC),  # naive means UTC
    ]
    assert table.column("unit").to_pylist() == ["°C", "°C", "°C"]
    assert table.column("value").to_pylist() == [1.5, 2.0, 3.0]
    assert table.column("quality").to_pylist() == ["ok"] * 3
    assert table.column("source").to_pylist() == ["s"] * 3


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"1__value": "abc"}, "row 2: value 'abc' is not a number"),
        ({"2__ts": "yesterday"}, "row 3: timestamp 'yesterday' is not ISO 8601"),
        ({"0__unit": "bananas"}, "row 1: unknown unit 'bananas'"),
        ({"1__device": ""}, "row 2: device is empty"),
        ({"2__value": None}, "row 3: value is empty"),
        ({"0__quality": "great"}, "row 1: quality 'great' is not one of"),
    ],
)
def test_bad_rows_are_named(change: dict[str, object], message: str) -> None:
    with pytest.raises(InputError, match=message) as info:
        to_readings(rows(**change), source="s")
    assert info.value.row == int(message.split()[1].rstrip(":"))


def test_sensor_error_keeps_the_code_never_as_a_value() -> None:
    data = rows(**{"1__quality": "sensor_error", "1__value": "-9999",
                   "1__error_code": "Sensor Error"})
    table = to_readings(data, source="s")
    assert table.column("value").to_pylist() == [1.5, None, 3.0]
    assert table.column("error_code").to_pylist() == [None, "Sensor Error", None]


def test_missing_columns_are_listed() -> None:
    with pytest.raises(InputError, match="missing column\\(s\\) ts, value"):
        to_readings([{"device": "d", "channel": "c", "unit": "kWh"}], source="s")


def test_accepts_pandas_polars_and_arrow() -> None:
    import pandas as pd
    import polars as pl

    frame = pd.DataFrame(rows()).astype({"value": float})
    expected = to_readings(rows(), source="s")
    assert to_readings(frame, source="s").equals(expected)
    assert to_readings(pl.from_pandas(frame), source="s").equals(expected)
    assert to_readings(pa.Table.from_pandas(frame.astype(str)), source="s").equals(expected)


@pytest.mark.parametrize(("ts", "shown"), [
    ("0001-01-01T00:00:00+01:00", "0001-01-01T00:00:00+01:00"),
    ("1799-12-31T23:59:59.999999Z", "1799-12-31T23:59:59.999999Z"),
    ("2200-01-01 00:00:00", "2200-01-01 00:00:00"),
    (pa.scalar(-62135600400000000, pa.timestamp("us", "UTC")), "0000-12-31 23:00:00.000000Z"),
    (pa.scalar(253402300799000000, pa.timestamp("us")), "9999-12-31 23:59:59.000000Z"),
])
def test_times_outside_the_kept_range_are_refused_naming_the_row(ts: object,
                                                                 shown: str) -> None:
    data: object = rows(**{"1__ts": ts})
    if isinstance(ts, pa.Scalar):  # a time column of Arrow's, beyond Python's datetime
        times = pa.array([1711843200000000, ts.value, 1711850400000000], ts.type)
        data = pa.table({"device": ["d1"] * 3, "channel": ["t"] * 3, "ts": times,
                         "value": [1.0, 2.0, 3.0], "unit": ["°C"] * 3})
    with pytest.raises(InputError) as info:
        to_readings(data, source="s")
    assert str(info.value) == (f"row 2: ts {shown} is outside the times meterhub keeps: "
                               "1800-01-01 to 2199-12-31 (UTC)")
    assert info.value.row == 2


def test_the_first_bad_name_of_many_rows_is_the_one_named() -> None:
    n = 200_000
    devices = np.array([f"d{i % 7}" for i in range(n)], dtype=object)
    devices[123_456] = devices[150_000] = "bad\nname"
    devices[160_000] = "x" * 129
    table = pa.table({"device": devices, "channel": ["c"] * n,
                      "ts": pa.array(np.full(n, 1711843200000000), pa.timestamp("us")),
                      "value": np.ones(n), "unit": ["W"] * n})
    with pytest.raises(InputError) as info:
        to_readings(table, source="s", first_row=2)
    assert str(info.value) == ("row 123458: device 'bad\\nname' holds the control character "
                               "'\\n': use printable characters only")
    with pytest.raises(InputError, match=r"row 10000: device 'x+'\.\.\. \(129 characters\)"):
        to_readings(table.slice(150_001), source="s")
    with pytest.raises(InputError, match="source 'a\\\\tb' holds the control character"):
        to_readings(table.slice(0, 10), source="a\tb")


def test_catalog_records_keep_their_unit_in_canonical_spelling() -> None:
    from meterhub.model import Channel, ChannelKind, check_catalog

    checked = check_catalog(Channel("d", "c", "precipitation", "inch", "delta"))
    assert (checked.unit, checked.kind) == ("in", ChannelKind.DELTA)
    with pytest.raises(InputError, match="channel d/c: kind 'level' is not one of"):
        check_catalog(Channel("d", "c", "other", "m", "level"))  # type: ignore[arg-type]
    with pytest.raises(InputError, match="channel d/c: unit pc does not fit precipitation"):
        check_catalog(Channel("d", "c", "precipitation", "parsec"))

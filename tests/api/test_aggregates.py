"""GET /api/v1/aggregates and /gaps: per-kind semantics, DST buckets, formats."""

from __future__ import annotations

import io

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.api.conftest import Api


def test_daily_counter_consumption_over_the_25_hour_day(api: Api) -> None:
    response = api.client.get("/api/v1/aggregates", params={
        "device": "m1", "every": "1d", "tz": "Europe/Amsterdam",
        "start": "2024-10-27", "end": "2024-10-28"})
    assert response.status_code == 200
    rows = response.json()["data"]
    assert len(rows) == 1
    day = rows[0]
    assert day["bucket"] == "2024-10-27T00:00:00+02:00"
    assert day["bucket_end"] == "2024-10-28T00:00:00+01:00"
    # 25 hours of 15-minute readings, 0.25 kWh apart: 100 rises of 0.25 kWh
    assert day["consumption"] == pytest.approx(25.0)
    assert day["count"] == 100
    assert set(day) == {"device", "channel", "kind", "bucket", "bucket_end", "consumption",
                        "count", "unit"}


def test_instant_hourly_aggregates_equal_a_pandas_reference(api: Api) -> None:
    response = api.client.get("/api/v1/aggregates", params={
        "device": "ws1", "every": "1h", "tz": "UTC", "fn": ["mean", "max", "count"]})
    got = pd.DataFrame(response.json()["data"])
    readings = api.hub.readings(device="ws1")
    reference = readings.set_index("ts")["value"].resample("1h").agg(
        ["mean", "max", "count"]).reset_index()
    assert list(got.columns) == ["device", "channel", "kind", "bucket", "bucket_end", "mean",
                                 "max", "count", "unit"]
    assert len(got) == len(reference) == 72
    assert list(pd.to_datetime(got["bucket"], utc=True)) == list(reference["ts"])
    assert got["mean"].to_numpy() == pytest.approx(reference["mean"].to_numpy())
    assert got["max"].to_numpy() == pytest.approx(reference["max"].to_numpy())
    assert list(got["count"]) == list(reference["count"])


def test_aggregates_convert_units_and_come_in_every_format(api: Api) -> None:
    params = {"device": "m1", "every": "1d", "tz": "Europe/Amsterdam", "unit": "MJ"}
    rows = api.client.get("/api/v1/aggregates", params=params).json()["data"]
    kwh = api.client.get("/api/v1/aggregates", params={**params, "unit": "kWh"}).json()["data"]
    assert [r["consumption"] for r in rows] == pytest.approx(
        [r["consumption"] * 3.6 for r in kwh])
    arrow = api.client.get("/api/v1/aggregates", params={**params, "format": "arrow"})
    table = pa.ipc.open_stream(arrow.content).read_all()
    assert table.column("consumption").to_pylist() == pytest.approx(
        [r["consumption"] for r in rows])
    assert str(table.schema.field("bucket").type) == "timestamp[us, tz=Europe/Amsterdam]"
    parquet = api.client.get("/api/v1/aggregates", params={**params, "format": "parquet"})
    assert parquet.headers["content-type"] == "application/vnd.apache.parquet"
    assert pq.read_table(io.BytesIO(parquet.content)).equals(table)
    csv = pd.read_csv(io.StringIO(api.client.get(
        "/api/v1/aggregates", params={**params, "format": "csv"}).text))
    assert list(csv["bucket"]) == [r["bucket"] for r in rows]


@pytest.mark.parametrize(("query", "words"), [
    ("every=3parsecs", "bucket size"),
    ("device=ws1&fn=consumption", "does not apply"),
    ("tz=Not/AZone", "unknown time zone"),
])
def test_bad_aggregate_queries_are_400_problems(api: Api, query: str, words: str) -> None:
    response = api.client.get(f"/api/v1/aggregates?{query}")
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"
    assert words in response.json()["detail"]


def test_gaps_lists_what_the_store_finds(api: Api) -> None:
    # take out an hour of the weather station: a gap of six readings and a seq jump
    kept = api.hub.readings(device="ws1", as_="arrow")
    ts = kept.column("ts").to_pandas()
    hole = (ts >= pd.Timestamp("2024-10-26T10:00Z")) & (ts < pd.Timestamp("2024-10-26T11:00Z"))
    # simulate readings that never arrived (through the store, whichever its backend)
    assert api.hub.delete(device="ws1", start="2024-10-26T10:00Z",
                          end="2024-10-26T11:00Z") == 6
    assert int(hole.sum()) == 6
    body = api.client.get("/api/v1/gaps", params={"device": "ws1"}).json()["data"]
    kinds = {g["kind"]: g for g in body}
    assert kinds["interval"]["start"] == "2024-10-26T10:00:00Z"
    assert kinds["interval"]["end"] == "2024-10-26T11:00:00Z"
    assert kinds["interval"]["missing"] == 6
    assert kinds["seq"]["missing"] == 6


# -- late data: a repeated question (answered from memory where the store allows it) must
#    see every write into its range

DAY_26 = {"device": "ws1", "every": "1d", "fn": ["max", "count"],
          "start": "2024-10-26T00:00:00Z", "end": "2024-10-27T00:00:00Z"}


def test_a_late_reading_changes_a_repeated_aggregate(api: Api) -> None:
    before = api.client.get("/api/v1/aggregates", params=DAY_26).json()["data"]
    assert api.client.get("/api/v1/aggregates", params=DAY_26).json()["data"] == before
    assert before[0]["count"] == 144
    assert before[0]["max"] < 12
    late = [{"device": "ws1", "channel": "temp", "ts": "2024-10-26T00:05:00Z",
             "value": 30.5, "unit": "degC", "source": "lab"}]
    assert api.client.post("/api/v1/readings", json=late, key=api.keys["write"]
                           ).status_code == 200
    after = api.client.get("/api/v1/aggregates", params=DAY_26).json()["data"]
    assert (after[0]["max"], after[0]["count"]) == (30.5, 145)
    # a stored reading replaced: the same key, another value
    late[0]["value"] = 20.25
    api.client.post("/api/v1/readings", json=late, key=api.keys["write"])
    again = api.client.get("/api/v1/aggregates", params=DAY_26).json()["data"]
    assert (again[0]["max"], again[0]["count"]) == (20.25, 145)


def test_a_reading_before_the_range_changes_a_counters_first_bucket(api: Api) -> None:
    # the day of 27 Oct in Amsterdam starts at 22:00Z on the 26th, where the reading
    # 1000 + 0.25 * 88 = 1022 is the base of the day's first rise
    params = {"device": "m1", "every": "1d", "tz": "Europe/Amsterdam",
              "start": "2024-10-27", "end": "2024-10-28"}
    assert api.client.get("/api/v1/aggregates", params=params).json()["data"][0][
        "consumption"] == pytest.approx(25.0)
    base = [{"device": "m1", "channel": "energy", "ts": "2024-10-26T22:00:00Z",
             "value": 1020.0, "unit": "kWh", "source": "lab"}]
    assert api.client.post("/api/v1/readings", json=base, key=api.keys["write"]
                           ).status_code == 200
    # the first rise is now 1022.25 - 1020
    assert api.client.get("/api/v1/aggregates", params=params).json()["data"][0][
        "consumption"] == pytest.approx(27.0)


def test_deleted_readings_and_a_changed_kind_change_a_repeated_aggregate(api: Api) -> None:
    params = {"device": "m1", "every": "1d", "start": "2024-10-26T00:00:00Z",
              "end": "2024-10-27T00:00:00Z"}
    first = api.client.get("/api/v1/aggregates", params=params).json()["data"][0]
    # readings in (start, end]: 00:15 to 00:00 the next day, 96 rises of 0.25
    assert (first["consumption"], first["count"]) == (pytest.approx(24.0), 96)
    assert api.client.delete("/api/v1/readings", params={
        "device": "m1", "start": "2024-10-26T12:00:00Z", "end": "2024-10-27T00:00:00Z"},
        key=api.keys["admin"]).json() == {"deleted": 48}
    half = api.client.get("/api/v1/aggregates", params=params).json()["data"][0]
    # 47 readings to 11:45 and the one at the end: the same rise in 48 steps
    assert (half["consumption"], half["count"]) == (pytest.approx(24.0), 48)
    api.hub.set_kind("m1", "energy", "instant")
    instant = api.client.get("/api/v1/aggregates", params=params).json()["data"][0]
    assert instant["kind"] == "instant"
    assert instant["min"] == 1000.0

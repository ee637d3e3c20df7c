"""GET /api/v1/readings: content against the Python API, keyset paging, formats, errors."""

from __future__ import annotations

import io

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.api.conftest import Api


def frame_from_json(rows: list[dict[str, object]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows)
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True).astype("datetime64[us, UTC]")
    return frame


def test_json_page_equals_the_python_api(api: Api) -> None:
    response = api.client.get("/api/v1/readings", params={
        "device": "ws1", "start": "2024-10-26T06:00:00Z", "end": "2024-10-26T07:00:00Z"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["next"] is None
    assert "link" not in response.headers
    expected = api.hub.readings(device="ws1", start="2024-10-26T06:00:00Z",
                                end="2024-10-26T07:00:00Z")
    assert len(body["data"]) == 6  # every 10 minutes, end exclusive
    assert body["data"][0]["ts"] == "2024-10-26T06:00:00Z"
    assert body["data"][0]["unit"] == "°C"
    got = frame_from_json(body["data"])[list(expected.columns)]
    pd.testing.assert_frame_equal(got.astype(expected.dtypes.to_dict()), expected)


def test_naive_times_are_read_in_tz(api: Api) -> None:
    # 08:00 local in Amsterdam on 26 Oct 2024 (CEST, +02:00) is 06:00 UTC
    response = api.client.get("/api/v1/readings", params={
        "device": "ws1", "start": "2024-10-26T08:00", "end": "2024-10-26T08:30",
        "tz": "Europe/Amsterdam"})
    assert [r["ts"] for r in response.json()["data"]] == [
        "2024-10-26T06:00:00Z", "2024-10-26T06:10:00Z", "2024-10-26T06:20:00Z"]


def test_paging_with_next_returns_every_row_once_across_series(api: Api) -> None:
    total = api.hub.count()
    seen: list[tuple[str, str, str]] = []
    url: str | None = "/api/v1/readings?limit=97"
    pages = 0
    while url is not None:
        response = api.client.get(url)
        assert response.status_code == 200
        body = response.json()
        assert len(body["data"]) <= 97
        seen += [(r["device"], r["channel"], r["ts"]) for r in body["data"]]
        link = response.headers.get("link")
        assert (link is None) == (body["next"] is None)
        if link is not None:
            assert link == f'<{body["next"]}>; rel="next"'
        url = body["next"]
        pages += 1
    assert len(seen) == total == 72 * 6 + 72 * 4
    assert len(set(seen)) == total
    assert pages == -(-total // 97)
    # scan order: device, channel, then time
    assert seen == sorted(seen, key=lambda k: (k[0], k[1], pd.Timestamp(k[2])))


def test_a_page_that_ends_a_series_exactly_links_to_the_next_series(api: Api) -> None:
    first = api.client.get("/api/v1/readings", params={"limit": 72 * 4}).json()
    assert {r["device"] for r in first["data"]} == {"m1"}
    second = api.client.get(first["next"]).json()
    assert [r["device"] for r in second["data"]] == ["ws1"] * 72 * 4
    third = api.client.get(second["next"]).json()
    assert len(third["data"]) == 72 * 6 - 72 * 4
    assert third["next"] is None


def test_csv_parquet_and_arrow_of_one_range_load_as_identical_frames(api: Api) -> None:
    params = {"start": "2024-10-26T12:00:00Z", "end": "2024-10-27T12:00:00Z"}
    csv = api.client.get("/api/v1/readings", params={**params, "format": "csv"})
    parquet = api.client.get("/api/v1/readings", params={**params, "format": "parquet"})
    arrow = api.client.get("/api/v1/readings", params={**params, "format": "arrow"})
    assert csv.headers["content-type"] == "text/csv; charset=utf-8"
    assert parquet.headers["content-type"] == "application/vnd.apache.parquet"
    assert arrow.headers["content-type"] == "application/vnd.apache.arrow.stream"
    from_parquet = pq.read_table(io.BytesIO(parquet.content)).to_pandas()
    from_arrow = pa.ipc.open_stream(arrow.content).read_all().to_pandas()
    from_csv = pd.read_csv(io.StringIO(csv.text), dtype={"seq": "Int64",
                                                         "error_code": "object"})
    from_csv["ts"] = pd.to_datetime(from_csv["ts"], utc=True).astype("datetime64[us, UTC]")
    from_arrow["seq"] = from_arrow["seq"].astype("Int64")
    from_parquet["seq"] = from_parquet["seq"].astype("Int64")
    assert len(from_arrow) == 24 * 6 + 24 * 4
    pd.testing.assert_frame_equal(from_parquet, from_arrow)
    pd.testing.assert_frame_equal(from_csv, from_arrow, check_dtype=False)
    expected = api.hub.readings(**params)
    pd.testing.assert_frame_equal(from_arrow.drop(columns="seq"),
                                  expected.drop(columns="seq"))


@pytest.mark.parametrize(("accept", "media"), [
    ("text/csv", "text/csv; charset=utf-8"),
    ("application/vnd.apache.arrow.stream", "application/vnd.apache.arrow.stream"),
    ("application/vnd.apache.parquet;q=0.9, application/json", "application/json"),
    ("application/json;q=0.5, application/vnd.apache.parquet", "application/vnd.apache.parquet"),
    ("text/csv;q=0, application/vnd.apache.arrow.stream;q=0.2",
     "application/vnd.apache.arrow.stream"),
    ("text/html, */*", "application/json"),
])
def test_accept_header_picks_the_format(api: Api, accept: str, media: str) -> None:
    response = api.client.get("/api/v1/readings?limit=5", headers={"Accept": accept})
    assert response.status_code == 200
    assert response.headers["content-type"] == media


def test_format_parameter_wins_over_accept(api: Api) -> None:
    response = api.client.get("/api/v1/readings?limit=5&format=csv",
                              headers={"Accept": "application/json"})
    assert response.headers["content-type"].startswith("text/csv")


def test_units_are_converted_on_request(api: Api) -> None:
    celsius = api.client.get("/api/v1/readings?device=ws1&limit=3").json()["data"]
    fahrenheit = api.client.get("/api/v1/readings?device=ws1&limit=3&unit=degF").json()["data"]
    for c, f in zip(celsius, fahrenheit, strict=True):
        assert f["unit"] == "°F"
        assert f["value"] == pytest.approx(c["value"] * 9 / 5 + 32)
    energy = api.client.get("/api/v1/readings?device=m1&limit=1&unit=MJ").json()["data"]
    assert energy[0]["value"] == pytest.approx(1000 * 3.6)


@pytest.mark.parametrize(("query", "status", "words"), [
    ("start=yesterday-ish", 400, "cannot read start 'yesterday-ish'"),
    ("start=0001-01-01", 400, "start 0001-01-01 is outside the times meterhub keeps: "
                              "1800-01-01 to 2199-12-31 (UTC)"),
    ("start=1799-12-31T23:59:59Z", 400, "start 1799-12-31T23:59:59Z is outside"),
    ("end=9999-12-31", 400, "end 9999-12-31 is outside the times meterhub keeps"),
    ("end=2200-01-01T00:00:01Z", 400, "end 2200-01-01T00:00:01Z is outside"),
    ("start=0001-01-01T00:00:00%2B01:00", 400, "start 0001-01-01T00:00:00+01:00 is outside"),
    ("start=2024-10-27&end=2024-10-26", 400, "is not after start"),
    ("limit=0", 400, "limit"),
    ("limit=abc", 400, "limit"),
    ("cursor=not-a-cursor", 400, "cursor"),
    ("device=nope", 404, "no channel matches device nope"),
    ("unit=furlong_per_fortnight_squared", 400, "unit"),
    ("device=ws1&unit=kWh", 400, "°C"),
    ("tz=Mars/Olympus", 400, "unknown time zone"),
    ("format=xml", 400, "format"),
])
def test_bad_queries_are_problems_a_user_can_act_on(api: Api, query: str, status: int,
                                                    words: str) -> None:
    response = api.client.get(f"/api/v1/readings?{query}")
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == status
    assert problem["instance"] == "/api/v1/readings"
    assert words in problem["detail"]
    assert "Traceback" not in response.text


@pytest.mark.parametrize("forged", [["ws1", "temp", True], ["ws1", "temp", 2**63],
                                    ["ws1", 5, 0], {"device": "ws1"}])
def test_forged_cursors_are_400_not_500(api: Api, forged: object) -> None:
    import base64

    import orjson

    cursor = base64.urlsafe_b64encode(orjson.dumps(forged)).decode().rstrip("=")
    response = api.client.get(f"/api/v1/readings?cursor={cursor}")
    assert response.status_code == 400
    assert "cursor" in response.json()["detail"]


def test_gaps_check_the_zone_even_without_times(api: Api) -> None:
    response = api.client.get("/api/v1/gaps?tz=Nope/Nowhere")
    assert response.status_code == 400
    assert "unknown time zone" in response.json()["detail"]

"""No input breaks the API: rows stored outside the kept times (before writes were checked)
are left out of every read on a real uvicorn, also after a restart; query bounds, pushed
times, values, units and names outside the rules are 400 problems; DELETE /readings removes
what should not be there."""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
import pytest

import meterhub
from meterhub.api import create_app
from meterhub.keys import new_key
from meterhub.model import TS_MAX, TS_MIN
from meterhub.store.clickhouse_http import ClickHouseClient
from meterhub.store.duckdb import path_from_url
from meterhub.timebase import epoch_us
from tests.api.conftest import Client, sample_frame
from tests.api.live import served
from tests.clickhouse_fixtures import BACKENDS, NewURL
from tests.store.hostile import HOSTILE_TIMES, plant

READS = [
    "/api/v1/devices",
    "/api/v1/channels",
    "/api/v1/sources",
    "/api/v1/gaps",
    "/api/v1/gaps?tz=Europe/Amsterdam&start=2024-10-26T12:00",
    "/api/v1/readings",
    "/api/v1/readings?format=csv",
    "/api/v1/readings?format=parquet",
    "/api/v1/readings?format=arrow",
    "/api/v1/readings?limit=5",
    "/api/v1/readings?device=m1&limit=3",
    "/api/v1/readings?device=ws1&unit=degF&limit=50000",
    "/api/v1/readings?tz=America/New_York&start=2024-10-26T00:00&end=2024-10-27",
    "/api/v1/readings?start=1800-01-01&end=2200-01-01",
    *(f"/api/v1/aggregates?every={every}&tz={tz}"
      for tz in ("UTC", "Europe/Amsterdam", "America/New_York", "Asia/Kolkata")
      for every in ("15min", "1h", "1d", "1w", "1mo", "1y")),
    "/api/v1/aggregates?every=1d&tz=Europe/Amsterdam&format=csv",
    "/api/v1/aggregates?every=1d&tz=America/New_York&format=parquet",
    "/api/v1/aggregates?every=1h&format=arrow&device=m1",
    "/api/v1/aggregates?every=1mo&start=1800-01-02&end=2200-01-01&tz=Europe/Amsterdam",
    "/api/v1/aggregates?every=1d&fn=consumption&device=m1&unit=MJ",
]


@dataclass
class Served:
    clean: str  #: base URL of a store with the sample only
    hostile: str  #: base URL of a store with the sample and rows outside the kept times
    key: str


#: `HOSTILE_TIMES` as the ClickHouse store keeps times, in Int64 µs since the epoch (year 0,
#: year 1, the last second of 9999, far beyond any calendar, the two instants just outside
#: the range); the ends of Int64 stand for DuckDB's infinities
HOSTILE_US = (-62135600400000000, epoch_us(dt.datetime(1, 1, 1, tzinfo=dt.UTC)),
              epoch_us(dt.datetime(9999, 12, 31, 23, 59, 59, tzinfo=dt.UTC)),
              6000000000000000000, 2**63 - 1, -2**63, epoch_us(TS_MIN) - 1, epoch_us(TS_MAX))


def plant_in(url: str) -> int:
    """`plant` for a store of any backend (no process may hold a DuckDB file): one ok
    reading per hostile time in every channel, inserted past the store's checks."""
    if url.startswith("duckdb:"):
        return plant(Path(path_from_url(url)))
    with ClickHouseClient(url) as client:
        ids = [int(row[0]) for row in client.query_rows("SELECT series_id FROM channels FINAL")]
        rows = ", ".join(f"({series_id}, {us}, 1.0, 'ok', 0, NULL, NULL, 1)"
                         for series_id in ids for us in HOSTILE_US)
        # through the Distributed table on a cluster: each row to its series' shard, at once
        client.execute("INSERT INTO readings (series_id, ts, value, quality, validated, seq, "
                       f"error_code, version) VALUES {rows}", {"insert_distributed_sync": 1})
    return len(ids) * len(HOSTILE_US)


@pytest.fixture(scope="module", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def live(module_store_url: NewURL) -> Iterator[Served]:
    """Both stores written, the rows planted while no process held the store, then each
    opened again (a restart) and served by uvicorn on loopback, with the same read key."""
    record, key = new_key("reader", "read", "1000000/minute")
    urls = {}
    for name in ("clean", "hostile"):
        urls[name] = module_store_url()
        with meterhub.open(urls[name]) as hub:
            hub.write(sample_frame(), source="lab")
            hub.store.add_key(record)
            hub.store.record_sync("lab", "ws1", readings=1)
    plant_in(urls["hostile"])
    with meterhub.open(urls["clean"]) as clean, meterhub.open(urls["hostile"]) as hostile, \
            served(create_app(clean)) as clean_base, served(create_app(hostile)) as base:
        yield Served(clean_base, base, key)


def body(response: httpx.Response, base: str) -> Any:
    """A response's content, decoded by its type, without what differs between two
    servers of the same data (their address, the time of the last write, and a source's
    lag, which is the time of the answer less its newest reading, itself compared)."""
    kind = response.headers["content-type"]
    if kind.startswith("application/json"):
        data = orjson.loads(response.content.replace(base.encode(), b""))
        for row in data.get("data", []):
            for name in ("written_at", "last_attempt", "last_success", "lag_seconds"):
                row.pop(name, None)
        return data
    if kind.startswith("application/vnd.apache.parquet"):
        return pq.read_table(io.BytesIO(response.content))
    if kind.startswith("application/vnd.apache.arrow"):
        return ipc.open_stream(response.content).read_all()
    return response.text


def test_every_read_leaves_out_rows_outside_the_kept_times(live: Served) -> None:
    """Each read answers, and as the same URL does on a store that never held those rows."""
    wrong = []
    with httpx.Client(headers={"X-API-Key": live.key}, timeout=60) as client:
        for url in READS:
            try:
                got = client.get(live.hostile + url)
            except httpx.TransportError as exc:  # a dropped connection
                wrong.append(f"{url}: {type(exc).__name__}")
                continue
            expected = client.get(live.clean + url)
            assert expected.status_code == 200, (url, expected.text)
            if got.status_code != 200:
                wrong.append(f"{url}: {got.status_code} {got.text[:200]}")
                continue
            want, have = body(expected, live.clean), body(got, live.hostile)
            if not (have.equals(want) if isinstance(want, pa.Table) else have == want):
                wrong.append(f"{url}: differs from the clean store's answer")
            elif "readings" in url and "format" not in url:
                assert all(1800 <= int(row["ts"][:4]) < 2200 for row in have["data"])
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("query", [
    "/api/v1/aggregates?start=0001-01-01&tz=Europe/Amsterdam",
    "/api/v1/aggregates?end=9999-12-31&tz=America/New_York&every=1d",
    "/api/v1/readings?start=0001-01-01",
    "/api/v1/readings?end=9999-12-31",
    "/api/v1/readings?start=1799-12-31T23:59:59Z&format=arrow",
    "/api/v1/gaps?start=0001-01-01",
    "/api/v1/gaps?end=2200-01-01T00:00:01Z",
])
def test_query_bounds_outside_the_kept_times_are_400(live: Served, query: str) -> None:
    with httpx.Client(headers={"X-API-Key": live.key}, timeout=60) as client:
        response = client.get(live.hostile + query)
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert "is outside the times meterhub keeps: 1800-01-01 to 2199-12-31 (UTC)" in \
        response.json()["detail"]


@dataclass
class Admin:
    hub: meterhub.Hub
    client: Client  #: with the admin key
    keys: dict[str, str]


@pytest.fixture
def admin(store_url: str) -> Iterator[Admin]:
    with meterhub.open(store_url) as hub:
        hub.write(sample_frame(), source="lab")
    assert plant_in(store_url) == 2 * len(HOSTILE_TIMES)
    with meterhub.open(store_url) as hub:
        keys = {}
        for scope in ("read", "write", "admin"):
            record, text = new_key(f"{scope}-key", scope)
            hub.store.add_key(record)
            keys[scope] = text
        app = create_app(hub, rate_limit="10000/minute")
        yield Admin(hub, Client(app, keys["admin"]), keys)


def test_delete_readings_removes_rows_outside_the_kept_times(admin: Admin) -> None:
    total = len(sample_frame())
    url = "/api/v1/readings?device=m1&outside_range=true"
    for scope in ("read", "write"):
        assert admin.client.delete(url, key=admin.keys[scope]).status_code == 403
    assert admin.hub.count_outside_range() == 2 * len(HOSTILE_TIMES)
    response = admin.client.delete(url)
    assert response.status_code == 200, response.text
    assert response.json() == {"deleted": len(HOSTILE_TIMES)}
    assert admin.hub.count_outside_range() == len(HOSTILE_TIMES)
    assert admin.hub.count() == total
    # bounds anywhere in years 1 to 9999 reach what is stored there
    response = admin.client.delete("/api/v1/readings?device=ws1&start=0001-01-01"
                                   "&end=1800-01-01")
    assert response.json() == {"deleted": 2}  # year 1 and the last moment of 1799
    response = admin.client.delete("/api/v1/readings?device=ws1&channel=temp"
                                   "&start=2024-10-26T00:00:00Z&end=2024-10-26T01:00:00Z")
    assert response.json() == {"deleted": 6}  # every 10 minutes
    assert admin.hub.count() == total - 6


@pytest.mark.parametrize(("query", "status", "words"), [
    ("", 400, "query parameter device"),
    ("device=nope", 404, "no channel matches device nope"),
    ("device=m1&start=later", 400, "cannot read start 'later'"),
    ("device=m1&start=2024-10-27&end=2024-10-26", 400, "is not after start"),
    ("device=m1&end=10000-01-01", 400, "cannot read end '10000-01-01'"),
    ("device=m1&tz=Mars/Olympus", 400, "unknown time zone"),
])
def test_delete_readings_refusals_are_problems(admin: Admin, query: str, status: int,
                                               words: str) -> None:
    response = admin.client.delete(f"/api/v1/readings?{query}")
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert words in response.json()["detail"]
    assert admin.hub.count() == len(sample_frame())


GOOD = {"device": "ws9", "channel": "temp", "ts": "2024-10-26T00:00:00Z", "value": 1.0,
        "unit": "degC", "kind": "instant"}


@pytest.mark.parametrize(("item", "words"), [
    ({"ts": "0001-01-01T00:00:00+01:00"},
     "ts 0001-01-01T00:00:00+01:00 is outside the times meterhub keeps"),
    ({"ts": "9999-12-31T23:59:59Z"}, "ts 9999-12-31T23:59:59Z is outside"),
    ({"device": "m1", "channel": "energy", "unit": "MWh", "value": 1.7e308,
      "kind": "counter"}, "value 1.7e+308 MWh is inf kWh in channel m1/energy's unit: not a "
                          "finite number"),
    ({"channel": "rain", "unit": "parsec", "quantity": "precipitation", "kind": "delta"},
     "unit pc does not fit precipitation"),
    ({"device": "d" * 1_000_000}, "is 1,000,000 characters long: at most 128"),
    ({"device": "a\u0000b"}, r"holds the control character '\x00'"),
    ({"channel": "a\nb"}, r"holds the control character '\n'"),
])
def test_a_push_that_breaks_the_rules_is_400_and_writes_nothing(
        admin: Admin, item: dict[str, Any], words: str) -> None:
    before = admin.hub.count()
    response = admin.client.post("/api/v1/readings", content=orjson.dumps(
        [GOOD, {**GOOD, "ts": "2024-10-26T00:10:00Z", **item}]),
        headers={"Content-Type": "application/json"})
    assert response.status_code == 400, response.text[:500]
    detail = response.json()["detail"]
    assert "item 1" in detail
    assert words in detail
    assert admin.hub.count() == before
    assert "ws9" not in {d.device for d in admin.hub.store.devices()}

"""The API on a real uvicorn over loopback: a 1 M-row range paged with next links."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import numpy as np
import pyarrow as pa
import pytest

import meterhub
from meterhub.api import create_app
from meterhub.keys import new_key
from meterhub.model import READING_SCHEMA
from tests.api.live import served
from tests.clickhouse_fixtures import BACKENDS, NewURL

ROWS_PER_SERIES = 250_000


def million_rows() -> pa.Table:
    """Four channels of 250,000 one-minute readings each."""
    start = np.datetime64("2024-01-01T00:00:00", "us")
    ts = start + np.arange(ROWS_PER_SERIES) * np.timedelta64(60, "s")
    parts = []
    for device, channel in (("a", "p"), ("a", "q"), ("b", "p"), ("c", "t")):
        n = ROWS_PER_SERIES
        parts.append(pa.table({
            "source": pa.array(["bulk"] * n), "device": pa.array([device] * n),
            "channel": pa.array([channel] * n), "ts": pa.array(ts).cast(READING_SCHEMA.field(
                "ts").type), "value": pa.array(np.arange(n, dtype=np.float64)),
            "unit": pa.array(["W"] * n)}))
    return pa.concat_tables(parts)


@pytest.fixture(scope="module", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def live(module_store_url: NewURL) -> Iterator[tuple[str, str]]:
    with meterhub.open(module_store_url()) as hub:
        hub.write(million_rows())
        record, text = new_key("pager", "read")
        hub.store.add_key(record)
        with served(create_app(hub)) as base:
            yield base, text


def test_paging_a_million_rows_returns_every_row_exactly_once(live: tuple[str, str]) -> None:
    base, key = live
    url: str | None = f"{base}/api/v1/readings?limit=300000&format=arrow"
    keys, pages = [], 0
    with httpx.Client(headers={"X-API-Key": key}, timeout=60) as client:
        while url is not None:
            response = client.get(url)
            assert response.status_code == 200
            # streamed batch by batch: chunked, no length known up front
            assert response.headers["transfer-encoding"] == "chunked"
            assert "content-length" not in response.headers
            table = pa.ipc.open_stream(response.content).read_all()
            assert table.num_rows <= 300_000
            ts = table.column("ts").cast(pa.int64()).to_numpy()
            series = [f"{d}/{c}" for d, c in zip(table.column("device").to_pylist(),
                                                  table.column("channel").to_pylist(),
                                                  strict=True)]
            keys.append(np.char.add(np.array(series), ts.astype(str)))
            link = response.headers.get("link")
            url = link[1:link.index(">")] if link else None
            pages += 1
    every = np.concatenate(keys)
    assert pages == 4
    assert len(every) == 1_000_000
    assert len(np.unique(every)) == 1_000_000


def test_json_pages_over_http_carry_next_in_body_and_header(live: tuple[str, str]) -> None:
    base, key = live
    with httpx.Client(headers={"Authorization": f"Bearer {key}"}, timeout=60) as client:
        first = client.get(f"{base}/api/v1/readings", params={"limit": 100_000, "device": "c"})
        body = first.json()
        assert len(body["data"]) == 100_000
        assert first.headers["link"] == f'<{body["next"]}>; rel="next"'
        assert first.headers["x-ratelimit-limit"] == "600"
        second = client.get(body["next"]).json()
        # row 100,000 of the channel: 100,000 W, stored in the canonical kW
        assert second["data"][0]["ts"] == "2024-03-10T10:40:00Z"
        assert (second["data"][0]["value"], second["data"][0]["unit"]) == (100.0, "kW")
        assert client.get(f"{base}/api/v1/health").json()["status"] == "ok"
        assert client.get(f"{base}/openapi.json").json()["info"]["title"] == "meterhub"
        docs = client.get(f"{base}/docs")
        assert docs.status_code == 200
        assert "swagger" in docs.text.lower()


def test_every_answer_says_its_server_time(live: tuple[str, str]) -> None:
    base, key = live
    with httpx.Client(base_url=base, headers={"X-API-Key": key}) as client:
        for path, status in (("/api/v1/health", 200), ("/api/v1/channels", 200),
                             ("/api/v1/readings?device=nope", 404)):
            began = time.perf_counter()
            response = client.get(path)
            elapsed_ms = (time.perf_counter() - began) * 1000
            assert response.status_code == status
            name, _, duration = response.headers["Server-Timing"].partition(";dur=")
            assert name == "app"
            # the server's part of what the client waited
            assert 0 < float(duration) <= elapsed_ms
        refused = client.get("/api/v1/channels", headers={"X-API-Key": "mh_wrong"})
        assert refused.status_code == 401
        assert refused.headers["Server-Timing"].startswith("app;dur=")

"""An API over a new store of every backend (a DuckDB file, a ClickHouse server, a two-shard
ClickHouse cluster: `tests.clickhouse_fixtures`), keys of every scope, and a client that calls
it in-process. tests/dsmr use the `api` fixture too, over the DuckDB `store_url` of
tests/conftest.py."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from fastapi import FastAPI

import meterhub
from meterhub.api import create_app
from meterhub.hub import Hub
from meterhub.keys import new_key
from tests.clickhouse_fixtures import BACKENDS, NewURL
from tests.clickhouse_servers import CLUSTER, ClickHouseServer

START = pd.Timestamp("2024-10-26T00:00:00Z")


def sample_frame() -> pd.DataFrame:
    """Two days and a bit around the end of DST in Europe/Amsterdam (27 Oct 2024)."""
    temps = pd.date_range(START, periods=72 * 6, freq="10min")
    energy = pd.date_range(START, periods=72 * 4, freq="15min")
    return pd.concat([
        pd.DataFrame({"device": "ws1", "channel": "temp", "ts": temps,
                      "value": 10 + np.sin(np.arange(len(temps)) / 20), "unit": "degC",
                      "kind": "instant", "seq": np.arange(len(temps)) + 1}),
        pd.DataFrame({"device": "m1", "channel": "energy", "ts": energy,
                      "value": 1000 + 0.25 * np.arange(len(energy)), "unit": "kWh",
                      "kind": "counter", "seq": None}),
    ], ignore_index=True)


class Client:
    """Calls the ASGI app through httpx in-process (a fresh event loop per call)."""

    def __init__(self, app: FastAPI, key: str | None = None) -> None:
        self.app = app
        self.key = key

    def request(self, method: str, url: str, *, key: str | None = None,
                headers: dict[str, str] | None = None, **kwargs: Any) -> httpx.Response:
        sent = dict(headers or {})
        chosen = key if key is not None else self.key
        if chosen and "Authorization" not in sent and "X-API-Key" not in sent:
            sent["Authorization"] = f"Bearer {chosen}"

        async def call() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://meterhub.test"
                                         ) as client:
                response = await client.request(method, url, headers=sent, **kwargs)
                await response.aread()
                return response

        return asyncio.run(call())

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", url, **kwargs)

    def delete(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("DELETE", url, **kwargs)


@dataclass
class Api:
    hub: Hub
    app: FastAPI
    keys: dict[str, str]  # scope -> key text
    client: Client  # with the read key


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def store_url(new_store_url: NewURL) -> str:
    return new_store_url()


@pytest.fixture(scope="module")
def module_store_url(backend: str, request: pytest.FixtureRequest,
                     tmp_path_factory: pytest.TempPathFactory) -> Iterator[NewURL]:
    """`new_store_url` for module-scoped fixtures (a live server over one store for all of
    a module's tests): the module parametrises a module-scoped ``backend`` of its own; the
    ClickHouse databases are dropped when the module's tests of that backend are done."""
    if backend == "duckdb":
        folder = tmp_path_factory.mktemp("store")
        numbers = iter(range(1_000_000))
        yield lambda: f"duckdb:///{folder / f'store{next(numbers)}.duckdb'}"
        return
    if backend not in BACKENDS:
        raise ValueError(f"no store backend {backend!r}: one of {', '.join(BACKENDS)}")
    servers: list[ClickHouseServer] = (
        [request.getfixturevalue("clickhouse_single")] if backend == "clickhouse"
        else request.getfixturevalue("clickhouse_cluster"))
    query = "" if backend == "clickhouse" else f"?cluster={CLUSTER}"
    made: list[str] = []

    def url() -> str:
        name = f"meterhub_test_{uuid.uuid4().hex[:12]}"
        made.append(name)
        for server in servers:
            server.query(f"CREATE DATABASE IF NOT EXISTS {name}")
        return f"clickhouse://{servers[0].host}:{servers[0].http_port}/{name}{query}"

    yield url
    for name in made:
        for server in servers:
            server.query(f"DROP DATABASE IF EXISTS {name}")


@pytest.fixture
def api(store_url: str) -> Iterator[Api]:
    with meterhub.open(store_url) as hub:
        hub.write(sample_frame(), source="lab")
        keys = {}
        for scope in ("read", "write", "admin"):
            record, text = new_key(f"{scope}-key", scope)
            hub.store.add_key(record)
            keys[scope] = text
        app = create_app(hub, rate_limit="10000/minute")
        yield Api(hub, app, keys, Client(app, keys["read"]))

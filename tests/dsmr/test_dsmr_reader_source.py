"""The `dsmr_reader` pull source against meterhub's own DSMR-reader-compatible API on a real
loopback server: a remote instance's readings arrive once, and later syncs add only news."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pandas as pd

import meterhub
from meterhub.api import create_app
from meterhub.clock import RealClock
from meterhub.config import parse
from meterhub.sync import sync_source
from tests.api.conftest import Api, Client
from tests.api.live import served
from tests.dsmr.telegrams import v5


def push(api: Api, minutes: range) -> None:
    client = Client(api.app)
    for m in minutes:
        telegram = v5(stamp=f"2410261{2 + m // 60}{m % 60:02d}00S",
                      t1=f"{1234.567 + m / 1000:010.3f}", gas_stamp="241026110000S")
        assert client.post("/api/v1/datalogger/dsmrreading", data={"telegram": telegram},
                           headers={"X-AUTHKEY": api.keys["write"]}).status_code == 201


def test_a_remote_instance_is_pulled_once_and_then_only_its_news(api: Api,
                                                                 tmp_path: Path) -> None:
    push(api, range(0, 30, 5))  # six telegrams on the "remote" instance
    with served(create_app(api.hub)) as base, \
            meterhub.open(f"duckdb:///{tmp_path / 'local.duckdb'}") as local:
        config = parse({"source": [{"name": "home", "type": "dsmr_reader", "base_url": base,
                                    "api_key": api.keys["read"], "device": "meter"}]},
                       environ={}).sources[0]
        first = asyncio.run(sync_source(local, config, clock=RealClock()))
        assert first.error is None, first
        assert first.failed == 0, first
        remote = api.hub.readings(device="p1")
        mine = local.readings(device="meter")
        columns = ["channel", "ts", "value", "unit"]
        key = ["channel", "ts"]
        pd.testing.assert_frame_equal(
            mine[columns].sort_values(key).reset_index(drop=True),
            remote[columns].sort_values(key).reset_index(drop=True))
        assert set(mine["source"]) == {"home"}
        cursor = local.store.get_cursor("home", "meter")
        assert cursor == "2024-10-26T10:25:00+00:00"
        # nothing new: one call a stream (readings, hours, days; the last hour read
        # again), nothing counted
        again = asyncio.run(sync_source(local, config, clock=RealClock()))
        assert (again.calls, again.readings) == (3, 0)
        push(api, range(30, 40, 5))
        news = asyncio.run(sync_source(local, config, clock=RealClock()))
        assert local.count(device="meter", channel="electricity_delivered_1") == 8
        assert news.readings > 0
        assert local.store.get_cursor("home", "meter") == "2024-10-26T10:35:00+00:00"


def test_a_wrong_key_stops_the_source_with_an_auth_error(api: Api, tmp_path: Path) -> None:
    with served(create_app(api.hub)) as base, \
            meterhub.open(f"duckdb:///{tmp_path / 'local.duckdb'}") as local:
        config = parse({"source": [{"name": "home", "type": "dsmr_reader", "base_url": base,
                                    "api_key": "wrong"}]}, environ={}).sources[0]
        result = asyncio.run(sync_source(local, config, clock=RealClock()))
    assert result.error is not None
    assert "refused the credentials" in result.error

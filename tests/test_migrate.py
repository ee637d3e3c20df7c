"""`meterhub migrate`: a whole store copied between backends, both ways, resumed after an
interruption, verified by counts and checksums."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import meterhub
from meterhub.keys import new_key
from meterhub.migrate import checksum, migrate
from meterhub.model import Channel, ChannelKind, Device, Site
from meterhub.store import Selection, Store, SyncCursor, open_store
from tests.clickhouse_fixtures import store_urls

T0 = pd.Timestamp("2024-03-30T00:00Z")


def fill(url: str) -> None:
    """A store with every kind of thing a store keeps."""
    with meterhub.open(url) as hub:
        minutes = pd.date_range(T0, periods=3000, freq="1min")
        hub.write(pd.DataFrame({
            "source": "lab", "device": "ws1", "channel": "temp", "ts": minutes,
            "value": np.where(np.arange(3000) % 97 == 0, np.nan, np.sin(np.arange(3000))),
            "unit": "°C", "quality": np.where(np.arange(3000) % 97 == 0, "sensor_error", "ok"),
            "error_code": np.where(np.arange(3000) % 97 == 0, "E7", None),
            "seq": np.arange(3000)}))
        hub.write(pd.DataFrame({
            "source": "p1", "device": "meter", "channel": "energy",
            "ts": pd.date_range(T0, periods=500, freq="15min"),
            "value": 1000 + 0.25 * np.arange(500), "unit": "kWh", "kind": "counter",
            "quality": "estimated", "validated": True}))
        hub.write([{"source": "p1", "device": "meter", "channel": "old", "unit": "kWh",
                    "kind": "delta", "ts": "1950-01-01T00:00Z", "value": 1.5}])
        store = hub.store
        store.upsert_sites([Site("home", "Home", "Europe/Amsterdam", 52.1, 5.1)])
        store.upsert_devices([Device("ws1", "lab", site="home", name="Roof", model="WS",
                                     serial="123", timezone="Europe/Amsterdam",
                                     latitude=52.1, longitude=5.1)])
        store.upsert_channels([Channel("ws1", "temp", "temperature", "°C",
                                       ChannelKind.INSTANT, 60)])
        hub.write(None, cursors=[SyncCursor("lab", "ws1", "page-7")],
                  state={"dsmr.rejected": "3", "sync.quota.lab": "{\"left\": 9}"})
        active, _ = new_key("reader", "read")
        revoked, _ = new_key("old", "admin")
        store.add_key(active)
        store.add_key(revoked)
        store.revoke_key(revoked.key_id)


def contents(store: Store) -> dict[str, Any]:
    channels = store.channels()
    return {
        "readings": store.scan(Selection()).read_all().to_pylist(),
        "channels": channels,
        "devices": store.devices(),
        "sites": store.sites(),
        "cursors": store.cursors(),
        "state": store.state_values(),
        "keys": [(k.key_id, k.name, k.scope, k.hash, k.rate_limit, k.created_at,
                  k.revoked_at is not None) for k in store.api_keys()],
        "checksums": [checksum(store.scan(Selection(devices=[c.device], channels=[c.channel])))
                      for c in channels],
    }


@pytest.fixture
def urls(request: pytest.FixtureRequest) -> dict[str, str]:
    return {backend: store_urls(backend, request)()
            for backend in ("duckdb", "clickhouse-2shards", "clickhouse")}


def test_a_store_goes_to_clickhouse_and_back_whole(urls: dict[str, str]) -> None:
    fill(urls["duckdb"])
    back = urls["duckdb"].replace(".duckdb", "-back.duckdb")
    with open_store(urls["duckdb"]) as source:
        want = contents(source)
    hops = [(urls["duckdb"], urls["clickhouse-2shards"]),
            (urls["clickhouse-2shards"], urls["clickhouse"]), (urls["clickhouse"], back)]
    for origin, destination in hops:
        with open_store(origin) as source, open_store(destination) as target:
            result = migrate(source, target, batch_rows=700)  # several writes a series
            assert result.mismatched == []
            assert (result.series_copied, result.readings_copied) == (3, 3501)
            assert (result.cursors, result.state_values, result.keys_copied) == (1, 2, 2)
            assert contents(target) == want, destination
    assert sum(r["ts"].year == 1950 for r in want["readings"]) == 1
    assert sum(r["quality"] == "sensor_error" for r in want["readings"]) == 31


class Interrupted(Exception):
    pass


def test_an_interrupted_migration_resumes_without_loss_or_double(
        urls: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    fill(urls["duckdb"])
    with open_store(urls["duckdb"]) as source, open_store(urls["clickhouse"]) as target:
        writes = []
        original = target.write

        def failing(data: Any, **kwargs: Any) -> Any:
            writes.append(data)
            if len(writes) == 4:  # the second series, half copied
                raise Interrupted
            return original(data, **kwargs)

        monkeypatch.setattr(target, "write", failing)
        with pytest.raises(Interrupted):
            migrate(source, target, batch_rows=1000)
        monkeypatch.undo()
        assert 0 < target.count(Selection()) < source.count(Selection())
        result = migrate(source, target, batch_rows=1000)
        assert result.mismatched == []
        assert result.series_present == 2  # the two series copied before the interruption
        assert result.series_copied == 1
        assert result.readings_present + result.readings_copied == 3501
        assert contents(target) == contents(source)


def test_a_series_that_differs_in_the_target_is_reported(urls: dict[str, str]) -> None:
    fill(urls["duckdb"])
    with meterhub.open(urls["clickhouse"]) as hub:  # a reading the source does not hold
        hub.write([{"source": "p1", "device": "meter", "channel": "energy", "unit": "kWh",
                    "kind": "counter", "ts": "2030-01-01T00:00Z", "value": 1.0}])
    with open_store(urls["duckdb"]) as source, open_store(urls["clickhouse"]) as target:
        result = migrate(source, target)
    assert result.mismatched == ["meter/energy"]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "meterhub.cli", "migrate", *args],
                          capture_output=True, text=True, timeout=120)


def test_the_command_copies_verifies_and_resumes(urls: dict[str, str], tmp_path: Path) -> None:
    fill(urls["duckdb"])
    first = run("--from", urls["duckdb"], "--to", urls["clickhouse"])
    assert first.returncode == 0, first.stderr
    assert "3 series copied (3,501 readings" in first.stdout
    assert "verified: every series has the same count and checksum" in first.stdout
    again = run("--from", urls["duckdb"], "--to", urls["clickhouse"])
    assert again.returncode == 0, again.stderr
    assert "0 series copied" in again.stdout
    assert "3 already there and verified (3,501 readings)" in again.stdout
    same = run("--from", urls["duckdb"], "--to", urls["duckdb"])
    assert same.returncode == 1
    assert "name the same store" in same.stderr
    # the same file by another spelling of its URL: a parameter, a bare path
    bare = urls["duckdb"].removeprefix("duckdb:///")
    for other in (f"{urls['duckdb']}?memory_limit=2GB", bare):
        same = run("--from", urls["duckdb"], "--to", other)
        assert same.returncode == 1
        assert "name the same store" in same.stderr
    missing = run("--from", f"duckdb:///{tmp_path / 'none.duckdb'}", "--to", urls["clickhouse"])
    assert missing.returncode == 1
    assert "no store at" in missing.stderr

"""GET /metrics on a real server, read with Prometheus' own parser (prometheus_client):
what it says is what the store holds and what the process did, and who may read it is
what ``[api] metrics`` says."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families

import meterhub
from meterhub.api import create_app
from meterhub.api.metrics import _loopback
from meterhub.config import ApiSettings, Settings
from meterhub.errors import AuthError
from meterhub.keys import new_key
from meterhub.mqtt import health
from meterhub.source_health import quota_state
from tests.api.conftest import sample_frame
from tests.api.live import served
from tests.dsmr.telegrams import v5

WEIRD = 'a "quoted" \\ source'  #: a source name the text format must escape


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """(name, labels) -> value, as Prometheus reads the text."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_the_metrics_say_what_the_store_holds_and_the_process_did(tmp_path: Path) -> None:
    store = tmp_path / "hub.duckdb"
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    with meterhub.open(f"duckdb:///{store}") as hub:
        frame = sample_frame()
        hub.write(frame, source="lab")  # 2024: stale
        hub.store.record_sync("lab", "ws1", calls=7, readings=10)
        hub.store.record_sync("lab", "m1", calls=2, error=AuthError("login refused"))
        hub.write(None, state={quota_state("lab"): json.dumps(
            {"as_of": "2024-10-29T00:00:05Z", "calls_left": 17, "calls_limit": 20,
             "window_seconds": 60.0, "wait_until": None})})
        hub.write(None, state=health.report(
            client_id="meterhub", broker="broker:1883", connected=True, since=now,
            last_error=None, published=12, taken=5, rejected=1, now=now))
        record, key = new_key("writer", "write")
        hub.store.add_key(record)
        with served(create_app(hub, settings=Settings())) as base, httpx.Client(
                base_url=base, headers={"X-API-Key": key}) as client:
            pushed = [{"device": "x", "channel": "t", "ts": (now - dt.timedelta(
                minutes=m)).isoformat(), "value": 1.5, "unit": "°C", "source": WEIRD}
                for m in (2, 1, 0)]
            assert client.post("/api/v1/readings", json=pushed).status_code == 200
            assert client.post("/api/v1/readings", json=[{"device": "x"}]).status_code == 400
            telegram = "/api/v1/datalogger/dsmrreading"
            assert client.post(telegram, data={"telegram": v5()},
                               headers={"X-AUTHKEY": key}).status_code == 201
            assert client.post(telegram, data={"telegram": "hello"},
                               headers={"X-AUTHKEY": key}).status_code == 500
            # a client on this machine reads it without a key
            answer = httpx.get(f"{base}/metrics")
            size = sum(f.stat().st_size for f in tmp_path.iterdir()
                       if f.name.startswith("hub.duckdb"))
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    got = samples(answer.text)

    def value(name: str, **labels: str) -> float:
        return got[(name, tuple(sorted(labels.items())))]

    assert value("meterhub_readings", source="lab") == len(frame)
    assert value("meterhub_readings", source=WEIRD) == 3  # escaped, and read back whole
    assert value("meterhub_rows_written_total") == 3 + 19  # the telegram's 19 too
    assert value("meterhub_pushes_total", path="telegram", outcome="stored") == 1
    assert value("meterhub_dsmr_rejected_telegrams_total") == 1
    assert value("meterhub_pushes_total", path="readings", outcome="stored") == 1
    assert value("meterhub_pushes_total", path="readings", outcome="rejected") == 1
    assert value("meterhub_source_stale", source="lab") == 1
    assert value("meterhub_source_stale", source=WEIRD) == 0  # a reading a minute
    newest = frame["ts"].max().to_pydatetime()
    assert abs(value("meterhub_source_lag_seconds", source="lab")
               - (dt.datetime.now(dt.UTC) - newest).total_seconds()) < 60
    assert value("meterhub_source_failing_devices", source="lab") == 1
    assert value("meterhub_source_last_sync_calls", source="lab") == 9  # 7 + 2
    assert value("meterhub_source_calls_left", source="lab") == 17
    assert value("meterhub_mqtt_connected", client_id="meterhub") == 1
    assert value("meterhub_mqtt_published_total", client_id="meterhub") == 12
    assert value("meterhub_mqtt_rejected_total", client_id="meterhub") == 1
    assert value("meterhub_store_bytes") == size
    assert ("meterhub_source_last_success_timestamp_seconds", (("source", "lab"),)) in got


def get_metrics(app: FastAPI, host: str, key: str | None = None) -> int:
    """The status of GET /metrics from a client at ``host`` (in process)."""
    async def run() -> int:
        transport = httpx.ASGITransport(app=app, client=(host, 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://hub") as client:
            headers = {"X-API-Key": key} if key else {}
            return (await client.get("/metrics", headers=headers)).status_code
    return asyncio.run(run())


@pytest.mark.parametrize(("access", "keyless_here", "keyless_elsewhere"), [
    ("loopback", True, False), ("open", True, True), ("key", False, False)])
def test_who_may_read_the_metrics_without_a_key(tmp_path: Path, access: str,
                                                keyless_here: bool,
                                                keyless_elsewhere: bool) -> None:
    with meterhub.open(f"duckdb:///{tmp_path / 'hub.duckdb'}") as hub:
        record, key = new_key("reader", "read")
        hub.store.add_key(record)
        app = create_app(hub, settings=Settings(api=ApiSettings(metrics=access)))  # type: ignore[arg-type]
        assert get_metrics(app, "127.0.0.1") == (200 if keyless_here else 401)
        assert get_metrics(app, "10.0.0.7") == (200 if keyless_elsewhere else 401)
        assert get_metrics(app, "10.0.0.7", key) == 200
        assert get_metrics(app, "10.0.0.7", "mh_unknown") == (200 if keyless_elsewhere else 401)


def test_a_key_is_asked_of_a_client_on_this_machine_when_so_configured(
        tmp_path: Path) -> None:
    with meterhub.open(f"duckdb:///{tmp_path / 'hub.duckdb'}") as hub:
        app = create_app(hub, settings=Settings(api=ApiSettings(metrics="key")))
        with served(app) as base:
            assert httpx.get(f"{base}/metrics").status_code == 401


@pytest.mark.parametrize(("host", "loopback"), [
    ("127.0.0.1", True), ("127.8.9.1", True), ("::1", True), ("10.0.0.1", False),
    ("192.168.1.5", False), ("::ffff:10.0.0.1", False), ("testclient", False), ("", False)])
def test_what_counts_as_this_machine(host: str, loopback: bool) -> None:
    assert _loopback(host) is loopback

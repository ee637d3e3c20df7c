"""GET /api/v1/devices, /channels, /sources."""

from __future__ import annotations

from meterhub.api import create_app
from meterhub.config import parse
from meterhub.errors import AuthError
from tests.api.conftest import Api, Client


def test_devices_and_their_source_filter(api: Api) -> None:
    data = api.client.get("/api/v1/devices").json()["data"]
    assert {d["device"]: d["source"] for d in data} == {"m1": "lab", "ws1": "lab"}
    assert api.client.get("/api/v1/devices?source=elsewhere").json()["data"] == []


def test_channels_with_counts_times_and_filters(api: Api) -> None:
    data = api.client.get("/api/v1/channels").json()["data"]
    by_name = {(c["device"], c["channel"]): c for c in data}
    temp = by_name[("ws1", "temp")]
    assert temp["kind"] == "instant"
    assert temp["unit"] == "°C"
    assert temp["quantity"] == "temperature"
    assert temp["readings"] == 72 * 6
    assert temp["first_ts"] == "2024-10-26T00:00:00Z"
    assert temp["last_ts"] == "2024-10-28T23:50:00Z"
    assert by_name[("m1", "energy")]["kind"] == "counter"
    only_energy = api.client.get("/api/v1/channels?quantity=energy").json()["data"]
    assert [c["channel"] for c in only_energy] == ["energy"]
    only_ws1 = api.client.get("/api/v1/channels?device=ws1").json()["data"]
    assert [c["device"] for c in only_ws1] == ["ws1"]


def test_sources_report_health(api: Api) -> None:
    settings = parse({"source": [
        {"name": "tahmo", "type": "zentra", "token": "t", "devices": ["z6-1"],
         "base_url": "http://127.0.0.1:9"},
        {"name": "lab", "type": "tandd", "api_key": "k", "login_id": "l", "login_pass": "p",
         "base_url": "http://127.0.0.1:9"},
    ]}, environ={})
    api.hub.store.record_sync("lab", "ws1", calls=3, readings=10)
    api.hub.store.record_sync("lab", "m1", error=AuthError("login refused"))
    client = Client(create_app(api.hub, settings=settings), api.keys["read"])
    data = {s["name"]: s for s in client.get("/api/v1/sources").json()["data"]}
    assert data["tahmo"]["health"] == "never synced"
    assert data["tahmo"]["configured"] is True
    assert data["tahmo"]["type"] == "zentra"
    lab = data["lab"]
    assert lab["health"] == "failing"
    assert lab["devices"] == 2
    assert lab["failing_devices"] == 1
    assert lab["last_error"] == "AuthError: login refused"
    assert lab["last_success"] is not None
    api.hub.store.record_sync("lab", "m1")
    data = {s["name"]: s for s in client.get("/api/v1/sources").json()["data"]}
    assert data["lab"]["health"] == "ok"
    api.client.post("/api/v1/readings", key=api.keys["write"], json=[
        {"device": "pushed", "channel": "c", "ts": "2024-01-01T00:00:00Z", "value": 1,
         "unit": "W"}])
    data = {s["name"]: s for s in client.get("/api/v1/sources").json()["data"]}
    assert data["api"]["health"] == "push"
    assert data["api"]["configured"] is False

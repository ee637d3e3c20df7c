"""GET /api/v1/devices, /channels, /sources."""

from __future__ import annotations

from meterhub.api import create_app
from meterhub.config import parse
from meterhub.errors import AuthError
from tests.api.conftest import Api, Client
from tests.clickhouse_fixtures import NewURL


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


def test_sources_say_how_fresh_they_are_and_when_they_are_stale(api: Api) -> None:
    import datetime as dt

    now = dt.datetime.now(dt.UTC).replace(microsecond=0)

    def push(source: str, device: str, minutes_ago: list[int]) -> None:
        rows = [{"source": source, "device": device, "channel": "p", "unit": "W",
                 "kind": "instant", "ts": (now - dt.timedelta(minutes=m)).isoformat(),
                 "value": 1.0} for m in minutes_ago]
        response = api.client.post("/api/v1/readings", key=api.keys["write"], json=rows)
        assert response.status_code in (200, 201), response.text

    push("fresh", "f1", [3, 2, 1])  # a reading a minute, the newest a minute ago
    push("quiet", "q1", [12, 11, 10])  # a reading a minute, none for ten minutes
    data = {s["name"]: s for s in api.client.get("/api/v1/sources").json()["data"]}
    fresh, quiet, lab = data["fresh"], data["quiet"], data["lab"]
    assert fresh["newest_reading"] == (now - dt.timedelta(minutes=1)).isoformat().replace(
        "+00:00", "Z")
    assert fresh["interval_seconds"] == 60.0
    assert 60 <= fresh["lag_seconds"] < 60 + 30
    assert fresh["stale"] is False  # 60 s behind: within three intervals (180 s)
    assert 600 <= quiet["lag_seconds"] < 600 + 30
    assert quiet["stale"] is True  # 600 s behind: more than 180 s
    # the fixture's lab: temperatures every 10 min, energy every 15: the shorter counts;
    # its newest reading is 2024-10-28 23:50, long ago
    assert lab["interval_seconds"] == 600.0
    assert lab["newest_reading"] == "2024-10-28T23:50:00Z"
    assert lab["stale"] is True


def test_channel_times_are_utc_whatever_the_hosts_zone(new_store_url: NewURL) -> None:
    # stored times are UTC; a server in Amsterdam once read them as Amsterdam times, an
    # hour off, and every source's lag with them
    import os
    import subprocess
    import sys

    script = """
import sys, pandas as pd, meterhub
with meterhub.open(sys.argv[1]) as hub:
    hub.write(pd.DataFrame({"device": ["d"], "channel": ["c"], "unit": ["W"],
                            "ts": [pd.Timestamp("2024-10-28T23:50:00Z")], "value": [1.0],
                            "kind": ["instant"]}), source="s")
    print(hub.channels(as_="arrow").column("last_ts")[0].as_py().isoformat())
"""
    for zone in ("Europe/Amsterdam", "America/New_York", "UTC"):
        done = subprocess.run([sys.executable, "-c", script, new_store_url()],
                              env={**os.environ, "TZ": zone}, capture_output=True, text=True,
                              timeout=60, check=True)
        assert done.stdout.strip() == "2024-10-28T23:50:00+00:00", (zone, done.stdout)


def test_a_pulled_source_is_judged_at_its_last_sync_not_at_now(api: Api) -> None:
    import datetime as dt

    from meterhub.source_health import stale as _stale

    now = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)
    minutes = [now - dt.timedelta(minutes=m) for m in range(30)]
    # synced ten minutes ago (a 15-minute schedule), its newest reading a minute before
    # that: 11 minutes behind now, but only one interval behind its sync: fresh
    assert not _stale("ok", minutes[11], 60.0, minutes[10], now, pulled=True)
    # the same reading pushed: 11 minutes behind now, more than three minutes: stale
    assert _stale("push", minutes[11], 60.0, None, now, pulled=False)
    # synced just now and the vendor had nothing for six minutes: stale
    assert _stale("ok", minutes[6], 60.0, now, now, pulled=True)
    assert _stale("failing", minutes[0], 60.0, now, now, pulled=True)
    # nothing to judge by: no readings, or a single one
    assert not _stale("never synced", None, None, None, now, pulled=False)
    assert not _stale("ok", minutes[20], None, now, now, pulled=True)
    # and through the API: a source synced now whose newest reading is 6 minutes old
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    rows = [{"source": "vendor", "device": "v1", "channel": "p", "unit": "W",
             "kind": "instant", "ts": (now - dt.timedelta(minutes=m)).isoformat(),
             "value": 1.0} for m in (8, 7, 6)]
    assert api.client.post("/api/v1/readings", key=api.keys["write"],
                           json=rows).status_code in (200, 201)
    api.hub.store.record_sync("vendor", "v1", calls=1, readings=3)
    vendor = {s["name"]: s for s in api.client.get("/api/v1/sources").json()["data"]}["vendor"]
    assert (vendor["health"], vendor["interval_seconds"], vendor["stale"]) == ("ok", 60.0, True)


def test_a_reading_ahead_of_the_clock_is_no_negative_lag(api: Api) -> None:
    import datetime as dt

    ahead = dt.datetime.now(dt.UTC) + dt.timedelta(hours=2)
    assert api.client.post("/api/v1/readings", key=api.keys["write"], json=[
        {"source": "clocky", "device": "c1", "channel": "p", "unit": "W", "kind": "instant",
         "ts": ahead.isoformat(), "value": 1.0}]).status_code in (200, 201)
    clocky = {s["name"]: s for s in api.client.get("/api/v1/sources").json()["data"]}["clocky"]
    assert clocky["lag_seconds"] == 0

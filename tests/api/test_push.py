"""POST /api/v1/readings: JSON and CSV batches, idempotent, all-or-nothing."""

from __future__ import annotations

import pytest

from tests.api.conftest import Api

BATCH = [
    {"device": "p1", "channel": "power", "ts": "2024-01-01T00:00:00Z", "value": 1.5,
     "unit": "kW"},
    {"device": "p1", "channel": "power", "ts": "2024-01-01T00:00:10Z", "value": 1.7,
     "unit": "kW"},
    {"device": "p1", "channel": "meter", "ts": "2024-01-01T00:00:00+01:00", "value": 12.5,
     "unit": "kWh", "kind": "counter", "source": "home"},
]


def test_a_json_batch_is_stored_and_read_back(api: Api) -> None:
    response = api.client.post("/api/v1/readings", json=BATCH, key=api.keys["write"])
    assert response.status_code == 200, response.text
    assert response.json()["received"] == 3
    assert response.json()["written"] == 3
    power = api.hub.readings(device="p1", channel="power")
    assert list(power["value"]) == [1.5, 1.7]
    assert set(power["source"]) == {"api"}
    meter = api.hub.readings(device="p1", channel="meter")
    assert str(meter["ts"][0]) == "2023-12-31 23:00:00+00:00"
    channels = api.hub.channels(device="p1")
    assert dict(zip(channels["channel"], channels["kind"], strict=True)) == {
        "meter": "counter", "power": "instant"}


def test_pushing_the_same_batch_twice_changes_nothing(api: Api) -> None:
    for _ in range(2):
        assert api.client.post("/api/v1/readings", json=BATCH,
                               key=api.keys["write"]).status_code == 200
    before = api.hub.readings(device="p1")
    changed = [dict(BATCH[0], value=9.0)]
    assert api.client.post("/api/v1/readings", json=changed,
                           key=api.keys["write"]).status_code == 200
    after = api.hub.readings(device="p1")
    assert len(before) == len(after) == 3
    assert after.loc[after["channel"] == "power", "value"].tolist() == [9.0, 1.7]


@pytest.mark.parametrize(("item", "reason"), [
    ({"device": "p1", "channel": "power", "ts": "noon", "value": 1, "unit": "kW"}, "noon"),
    ({"device": "p1", "channel": "power", "ts": "2024-01-01T00:00:00Z", "value": "high",
      "unit": "kW"}, "high"),
    ({"device": "p1", "channel": "power", "ts": "2024-01-01T00:00:00Z", "value": 1,
      "unit": "glorps"}, "glorps"),
    ({"device": "p1", "ts": "2024-01-01T00:00:00Z", "value": 1, "unit": "kW"}, "channel"),
    ("just a string", "object"),
    ({"device": {"id": 1}, "channel": "c", "ts": "2024-01-01T00:00:00Z", "value": 1,
      "unit": "kW"}, "device is an object"),
    ({"device": "p1", "channel": "c", "ts": "2024-01-01T00:00:00Z", "value": [1],
      "unit": "kW"}, "value is an array"),
    ({"device": "p1", "channel": "c", "ts": "2024-01-01T00:00:00Z", "value": 1,
      "unit": "kW", "seq": 18446744073709551615}, "seq"),
])
def test_a_bad_item_names_its_index_and_nothing_is_written(api: Api, item: object,
                                                           reason: str) -> None:
    batch = [*BATCH, item]
    response = api.client.post("/api/v1/readings", json=batch, key=api.keys["write"])
    assert response.status_code == 400, response.text
    problem = response.json()
    assert response.headers["content-type"] == "application/problem+json"
    assert problem["detail"].startswith("nothing was written: item 3")
    assert problem["errors"][0]["index"] == 3
    assert reason in problem["errors"][0]["reason"]
    assert "p1" not in set(api.hub.devices()["device"])


def test_a_unit_the_channel_cannot_take_rejects_the_batch(api: Api) -> None:
    batch = [{"device": "ws1", "channel": "temp", "ts": "2030-01-01T00:00:00Z", "value": 1,
              "unit": "kWh"}]
    response = api.client.post("/api/v1/readings", json=batch, key=api.keys["write"])
    assert response.status_code == 400
    assert response.json()["errors"][0]["index"] == 0
    assert api.hub.count(device="ws1", start="2030-01-01") == 0


def test_a_csv_batch_is_stored_and_a_bad_row_is_named_by_line(api: Api) -> None:
    good = ("device,channel,ts,value,unit\n"
            "c1,temp,2024-01-01T00:00:00Z,20.5,degC\n"
            "c1,temp,2024-01-01T00:10:00Z,20.7,degC\n")
    response = api.client.post("/api/v1/readings", content=good.encode(),
                               headers={"Content-Type": "text/csv"}, key=api.keys["write"])
    assert response.status_code == 200, response.text
    assert list(api.hub.readings(device="c1")["value"]) == [20.5, 20.7]
    bad = good.replace("c1", "c2") + "c2,temp,later,1,degC\n"
    response = api.client.post("/api/v1/readings", content=bad.encode(),
                               headers={"Content-Type": "text/csv"}, key=api.keys["write"])
    assert response.status_code == 400
    assert "row 3 (line 4)" in response.json()["detail"]
    assert response.json()["errors"][0]["index"] == 2
    assert "c2" not in set(api.hub.devices()["device"])


@pytest.mark.parametrize(("body", "ctype", "status", "words"), [
    (b"{not json", "application/json", 400, "not JSON"),
    (b'{"device": "x"}', "application/json", 400, "array"),
    (b"<xml/>", "application/xml", 415, "application/json"),
    (b"", "text/csv", 400, "empty"),
])
def test_unreadable_bodies_are_problems(api: Api, body: bytes, ctype: str, status: int,
                                        words: str) -> None:
    response = api.client.post("/api/v1/readings", content=body,
                               headers={"Content-Type": ctype}, key=api.keys["write"])
    assert response.status_code == status, response.text
    assert words in response.json()["detail"]


def test_an_empty_array_writes_nothing_and_succeeds(api: Api) -> None:
    before = api.hub.count()
    response = api.client.post("/api/v1/readings", json=[], key=api.keys["write"])
    assert response.status_code == 200
    assert response.json()["written"] == 0
    assert api.hub.count() == before


def test_a_batch_over_the_size_limit_is_413(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    import meterhub.api.app as app_module

    monkeypatch.setattr(app_module, "MAX_PUSH_BYTES", 100)
    response = api.client.post("/api/v1/readings", json=BATCH, key=api.keys["write"])
    assert response.status_code == 413
    assert "smaller batches" in response.json()["detail"]
    assert "p1" not in set(api.hub.devices()["device"])

"""POST /api/v1/readings: JSON and CSV batches, idempotent, all-or-nothing."""

from __future__ import annotations

import csv
import datetime as dt
import io
import socket
from collections.abc import Callable, Iterator

import httpx
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meterhub.api import push
from meterhub.model import to_readings
from tests.api.conftest import Api
from tests.api.live import served

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
    # what the links to the reads of the written data select (meterhub.api.links)
    assert {k: response.json()[k] for k in ("devices", "channels", "sources")} == {
        "devices": ["p1"], "channels": ["meter", "power"], "sources": ["api", "home"]}
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
    assert response.json() == {"received": 0, "written": 0, "batch": None, "devices": [],
                               "channels": [], "sources": []}
    assert api.hub.count() == before


# The limits as the README states them: bodies of each format, readings in one batch.
LIMITS = {"application/json": 8_000_000, "text/csv": 4_000_000}
MOST_READINGS = 60_000
NAMES = ["plain", 'q"uote', 'br},{"ace":[1]}', "back\\slash\\", "sq[uare]{curly},"]


@pytest.fixture
def live(api: Api) -> Iterator[httpx.Client]:
    """A client with the write key for the api fixture's app on a real uvicorn."""
    with served(api.app) as base, httpx.Client(
            base_url=base, timeout=60, headers={"X-API-Key": api.keys["write"]}) as client:
        yield client


def readings(n: int, names: list[str] = NAMES) -> list[dict[str, object]]:
    """``n`` readings over ``names`` (quotes, brackets and backslashes in them), each
    device's at distinct times."""
    start = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
    return [{"device": names[i % len(names)], "channel": "power",
             "ts": (start + dt.timedelta(seconds=i)).isoformat().replace("+00:00", "Z"),
             "value": i / 2, "unit": "W"} for i in range(n)]


def as_csv(items: list[dict[str, object]]) -> bytes:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(items[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(items)
    return out.getvalue().encode()


def stored(api: Api, names: list[str] = NAMES) -> dict[str, tuple[int, float]]:
    """Per device of ``names``: how many readings the store holds and their sum."""
    known = set(api.hub.devices()["device"])
    out = {}
    for name in names:
        if name in known:
            frame = api.hub.readings(device=name, unit="W")
            out[name] = (len(frame), float(frame["value"].sum()))
    return out


def expected(items: list[dict[str, object]]) -> dict[str, tuple[int, float]]:
    out: dict[str, tuple[int, float]] = {}
    for item in items:
        count, total = out.get(str(item["device"]), (0, 0.0))
        out[str(item["device"])] = (count + 1, total + float(item["value"]))  # type: ignore[arg-type]
    return out


def padded(media: str, size: int) -> bytes:
    """A valid body of exactly ``size`` bytes: two readings, then blank space."""
    body = (orjson.dumps(readings(2)) + b" " if media == "application/json"
            else as_csv(readings(2)) + b"\n")
    return body + (b" " if media == "application/json" else b"\n") * (size - len(body))


def whole_answer(raw: socket.socket) -> str:
    """An HTTP answer read to the end of its body: one recv may hold only the head (the
    body came in a packet of its own once in CI, under load)."""
    data = b""
    while b"\r\n\r\n" not in data or len(data) < body_end(data):
        chunk = raw.recv(65536)
        if not chunk:
            break
        data += chunk
    return data.decode()


def body_end(data: bytes) -> int:
    head, _, _ = data.partition(b"\r\n\r\n")
    length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length:")), 0)
    return len(head) + 4 + length


@pytest.mark.parametrize("media", list(LIMITS))
def test_the_size_limit_holds_to_the_byte(api: Api, live: httpx.Client, media: str) -> None:
    limit = LIMITS[media]
    headers = {"Content-Type": media}
    # one byte over, announced by Content-Length: refused before the body is read
    host, port = live.base_url.host, live.base_url.port
    assert port is not None
    with socket.create_connection((host, port), timeout=10) as raw:
        raw.sendall(f"POST /api/v1/readings HTTP/1.1\r\nHost: x\r\nContent-Type: {media}\r\n"
                    f"X-API-Key: {api.keys['write']}\r\nContent-Length: {limit + 1}\r\n"
                    "\r\n".encode())
        answer = whole_answer(raw)
    assert answer.startswith("HTTP/1.1 413 "), answer
    assert f"{limit / 1e6:g} MB" in answer
    assert "60,000 readings" in answer
    # one byte over, chunked (no Content-Length): refused once the byte arrives
    over = padded(media, limit + 1)
    pieces = (over[i:i + 65536] for i in range(0, len(over), 65536))
    refused = live.post("/api/v1/readings", content=pieces, headers=headers)
    assert refused.status_code == 413, refused.text
    assert "smaller batches" in refused.json()["detail"]
    assert stored(api) == {}
    # exactly the limit, chunked too: taken
    body = padded(media, limit)
    taken = live.post("/api/v1/readings", content=(body[i:i + 65536] for i in range(
        0, len(body), 65536)), headers=headers)
    assert taken.status_code == 200, taken.text
    assert stored(api) == expected(readings(2))


@pytest.mark.parametrize("media", list(LIMITS))
def test_a_batch_of_a_few_mb_is_stored_whole(api: Api, live: httpx.Client,
                                              media: str) -> None:
    items = readings(50_000)
    body = orjson.dumps(items) if media == "application/json" else as_csv(items)
    assert len(body) > 2_000_000
    response = live.post("/api/v1/readings", content=body, headers={"Content-Type": media})
    assert response.status_code == 200, response.text
    assert response.json()["received"] == response.json()["written"] == 50_000
    assert stored(api) == expected(items)


@pytest.mark.parametrize("media", list(LIMITS))
def test_a_bad_reading_late_in_a_large_batch_rejects_all_of_it(api: Api, live: httpx.Client,
                                                               media: str) -> None:
    items = readings(50_000)
    items[45_678]["ts"] = "noon"
    body = orjson.dumps(items) if media == "application/json" else as_csv(items)
    response = live.post("/api/v1/readings", content=body, headers={"Content-Type": media})
    assert response.status_code == 400, response.text
    problem = response.json()
    assert problem["errors"][0]["index"] == 45_678
    where = "item 45678" if media == "application/json" else "row 45679 (line 45680)"
    assert problem["detail"].startswith(f"nothing was written: {where}: timestamp 'noon'")
    assert stored(api) == {}


def test_a_ragged_csv_row_late_in_a_batch_is_named_by_its_line(api: Api,
                                                               live: httpx.Client) -> None:
    lines = as_csv(readings(30_000)).split(b"\n")
    lines[25_001] += b",extra"  # data row 25,001 (line 25,002)
    response = live.post("/api/v1/readings", content=b"\n".join(lines),
                         headers={"Content-Type": "text/csv"})
    assert response.status_code == 400, response.text
    assert response.json()["detail"].startswith(
        "nothing was written: row 25001 (line 25002): expected 5 columns, got 6")
    assert stored(api) == {}


def _in_second_half(old: bytes, new: bytes) -> Callable[[bytes], bytes]:
    """Replace the first ``old`` past the middle of a body (past its first slices)."""
    return lambda body: body[:len(body) // 2] + body[len(body) // 2:].replace(old, new, 1)


@pytest.mark.parametrize(("broken", "words"), [
    (_in_second_half(b"},{", b"},,{"), "not JSON"),  # an empty item
    (lambda body: body[:-1] + b",]", "not JSON"),  # a trailing comma
    (lambda body: body + b" []", "not JSON"),  # something after the array
    (lambda body: body[:-1], "not JSON"),  # the array never ends
    (_in_second_half(b"},{", b"}{"), "not JSON"),  # a comma missing
    (_in_second_half(b'"W"}', b'"W"'), "not JSON"),  # an object never closed
])
def test_broken_json_anywhere_in_a_large_batch_is_400(api: Api, live: httpx.Client,
                                                      broken: Callable[[bytes], bytes],
                                                      words: str) -> None:
    body = broken(orjson.dumps(readings(20_000)))
    response = live.post("/api/v1/readings", content=body,
                         headers={"Content-Type": "application/json"})
    assert response.status_code == 400, response.text
    assert words in response.json()["detail"]
    assert stored(api) == {}


@pytest.mark.parametrize("media", list(LIMITS))
def test_more_readings_than_a_batch_holds_is_413(api: Api, live: httpx.Client,
                                                 media: str) -> None:
    items = readings(MOST_READINGS + 1, ["m"])
    body = orjson.dumps(items) if media == "application/json" else as_csv(items)
    assert len(body) < LIMITS[media]
    response = live.post("/api/v1/readings", content=body, headers={"Content-Type": media})
    assert response.status_code == 413, response.text
    assert "60,000 readings" in response.json()["detail"]
    assert "m" not in set(api.hub.devices()["device"])
    ok = live.post("/api/v1/readings", content=orjson.dumps(items[:MOST_READINGS])
                   if media == "application/json" else as_csv(items[:MOST_READINGS]),
                   headers={"Content-Type": media})
    assert ok.status_code == 200, ok.text
    assert stored(api, ["m"]) == expected(items[:MOST_READINGS])


NAME = st.text(st.sampled_from(list('ab"\\,{}[]: é€\'\t')), min_size=1, max_size=12).map(
    lambda text: "x" + text.replace("\t", "t") + "x")


@settings(max_examples=100, deadline=None)
@given(names=st.lists(NAME, min_size=1, max_size=40), indent=st.booleans(),
       braces=st.booleans(), chunk=st.integers(1, 300),
       slice_bytes=st.sampled_from([16, 64, 256]))
def test_slices_cut_between_items_whatever_the_text(
        names: list[str], indent: bool, braces: bool, chunk: int, slice_bytes: int) -> None:
    """The body is cut into slices where it is read a slice at a time: whatever quotes,
    backslashes, brackets and commas the values hold and however the bytes arrive, the
    readings are the ones sent, in order (JSON, pretty or not, and CSV)."""
    if braces:  # many `},` in strings: guessed cuts fail, the exact scan finds them
        names = [f"{name}}},}},}},x" for name in names]
    items = readings(len(names), names)
    for i, item in enumerate(items):
        item["device"] = names[i]
    json_body = orjson.dumps(items, option=orjson.OPT_INDENT_2 if indent else 0)
    for batch, body in ((push._JsonBatch("api"), json_body),
                        (push._CsvBatch("api"), as_csv(items))):
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(push, "SLICE_BYTES", slice_bytes)
            for start in range(0, len(body), chunk):
                batch.feed(body[start:start + chunk])
            table = to_readings(batch.finish(), source="api")
        assert table.column("device").to_pylist() == names
        assert table.column("value").to_pylist() == [item["value"] for item in items]

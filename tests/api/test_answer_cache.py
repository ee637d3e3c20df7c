"""Repeated aggregates and pages answered from memory (DuckDB: one process sees every
write), and never an answer a write has changed (tests/api/test_aggregates.py checks late
data on every backend; here: that the memory is used, and against an app that never keeps
answers)."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meterhub.api import create_app
from meterhub.hub import Hub
from tests.api.conftest import Api, Client


@pytest.fixture
def backend() -> str:
    return "duckdb"


DAY = {"device": "ws1", "every": "1h", "fn": ["mean", "max", "count"],
       "start": "2024-10-26T00:00:00Z", "end": "2024-10-27T00:00:00Z"}


def test_a_repeated_aggregate_is_answered_from_memory(api: Api) -> None:
    answers = api.hub.answers
    assert answers is not None
    first = api.client.get("/api/v1/aggregates", params=DAY)
    hits = answers.hits
    again = api.client.get("/api/v1/aggregates", params=DAY)
    assert answers.hits == hits + 1
    assert again.content == first.content
    assert again.status_code == 200
    assert again.headers["content-type"] == "application/json"
    assert "x-ratelimit-remaining" in again.headers  # the key's limit still counts
    # another format is another answer
    arrow = api.client.get("/api/v1/aggregates", params={**DAY, "format": "arrow"})
    assert arrow.headers["content-type"] == "application/vnd.apache.arrow.stream"
    assert pa.ipc.open_stream(arrow.content).read_all().num_rows == 24
    # a key is still needed
    assert api.client.get("/api/v1/aggregates", params=DAY, key="wrong").status_code == 401


def ask_at_once(api: Api, params: dict[str, Any], n: int) -> list[httpx.Response]:
    """``n`` requests of the aggregate in flight together."""
    async def ask() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=api.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://meterhub.test",
                                     headers={"X-API-Key": api.keys["read"]}) as client:
            return list(await asyncio.gather(*(client.get("/api/v1/aggregates", params=params)
                                               for _ in range(n))))

    return asyncio.run(ask())


def test_a_question_asked_many_times_at_once_is_computed_once(
        api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    computed: list[int] = []
    aggregate = api.hub.aggregate

    def counted(**kwargs: Any) -> Any:
        computed.append(1)
        return aggregate(**kwargs)

    monkeypatch.setattr(api.hub, "aggregate", counted)

    answers = ask_at_once(api, DAY, 12)
    assert len(computed) == 1
    assert {a.status_code for a in answers} == {200}
    assert len({a.content for a in answers}) == 1
    assert len(answers[0].json()["data"]) == 24
    # a question that fails is not kept: each asker hears why
    assert {a.status_code for a in ask_at_once(api, {**DAY, "every": "7h"}, 4)} == {400}


def test_a_write_after_the_end_or_to_another_channel_keeps_the_answer(api: Api) -> None:
    answers = api.hub.answers
    assert answers is not None
    first = api.client.get("/api/v1/aggregates", params=DAY).content
    later = [{"device": "ws1", "channel": "temp", "ts": "2024-10-27T00:00:01Z", "value": 99.0,
              "unit": "degC", "source": "lab"},
             {"device": "m1", "channel": "energy", "ts": "2024-10-26T01:00:00Z",
              "value": 1004.0, "unit": "kWh", "source": "lab"}]
    assert api.client.post("/api/v1/readings", json=later, key=api.keys["write"]
                           ).status_code == 200
    hits = answers.hits
    assert api.client.get("/api/v1/aggregates", params=DAY).content == first
    assert answers.hits == hits + 1


def test_a_journaled_write_drops_the_answer_before_it_is_acknowledged(api: Api) -> None:
    """A push the store only journaled (folded in later) is read by the next request: the
    kept answer goes when the journal takes the write, not when it is folded in."""
    first = api.client.get("/api/v1/aggregates", params=DAY).json()
    stored = api.hub.readings(device="ws1", channel="temp", as_="arrow")
    late = stored.slice(0, 1).set_column(
        stored.schema.get_field_index("value"), "value", pa.array([1000.0]))
    assert api.hub.write_soon(late, origin="push") is False
    store = Path(api.hub.url.removeprefix("duckdb:///"))
    assert list(store.parent.glob(f"{store.name}.journal.*"))  # held, not folded in yet
    again = api.client.get("/api/v1/aggregates", params=DAY).json()
    assert again != first
    assert max(row["max"] for row in again["data"] if row["channel"] == "temp") == 1000.0


def test_channels_are_answered_from_memory_until_a_write_to_their_devices(api: Api) -> None:
    answers = api.hub.answers
    assert answers is not None
    first = api.client.get("/api/v1/channels")
    api.client.get("/api/v1/channels", params={"device": "ws1"})
    hits = answers.hits
    again = api.client.get("/api/v1/channels")
    assert answers.hits == hits + 1
    assert again.content == first.content
    assert again.headers["content-type"] == "application/json"
    # a write to another device keeps ws1's answer and drops the whole list's
    other = [{"device": "m1", "channel": "energy", "ts": "2024-11-05T00:00:00Z",
              "value": 2010.0, "unit": "kWh", "source": "lab"}]
    assert api.client.post("/api/v1/readings", json=other, key=api.keys["write"]
                           ).status_code == 200
    hits = answers.hits
    api.client.get("/api/v1/channels", params={"device": "ws1"})
    assert answers.hits == hits + 1
    everything = api.client.get("/api/v1/channels").json()["data"]
    assert answers.hits == hits + 1  # computed again
    energy = next(c for c in everything if c["device"] == "m1" and c["channel"] == "energy")
    assert energy["last_ts"].startswith("2024-11-05T00:00:00")
    assert energy["last_value"] == 2010.0
    # a push the journal took drops ws1's answer before it is acknowledged
    stored = api.hub.readings(device="ws1", channel="temp", as_="arrow")
    late = stored.slice(stored.num_rows - 1, 1)
    late = late.set_column(late.schema.get_field_index("ts"), "ts", pa.array(
        [dt.datetime(2024, 11, 6, tzinfo=dt.UTC)], late.schema.field("ts").type))
    api.hub.write_soon(late, origin="push")
    hits = answers.hits
    temp = next(c for c in api.client.get("/api/v1/channels", params={"device": "ws1"}
                                          ).json()["data"] if c["channel"] == "temp")
    assert answers.hits == hits
    assert temp["last_ts"].startswith("2024-11-06T00:00:00")
    # so does a catalog change
    api.client.get("/api/v1/channels", params={"device": "ws1"})
    api.hub.set_kind("ws1", "temp", "delta")
    hits = answers.hits
    temp = next(c for c in api.client.get("/api/v1/channels", params={"device": "ws1"}
                                          ).json()["data"] if c["channel"] == "temp")
    assert answers.hits == hits
    assert temp["kind"] == "delta"


PAGE = {"device": "ws1", "channel": "temp", "limit": 10}


def test_a_repeated_page_is_answered_from_memory_until_a_write_changes_it(api: Api) -> None:
    answers = api.hub.answers
    assert answers is not None
    first = api.client.get("/api/v1/readings", params=PAGE)
    assert first.json()["data"][-1]["ts"] == "2024-10-26T01:30:00Z"  # 10 minutes apart
    hits = answers.hits
    again = api.client.get("/api/v1/readings", params=PAGE)
    assert answers.hits == hits + 1
    assert again.content == first.content
    assert again.headers["link"] == first.headers["link"]
    # a reading after the page's last one belongs to a later page: the page stays
    later = {"device": "ws1", "channel": "temp", "ts": "2024-10-26T01:35:00Z", "value": 1.0,
             "unit": "degC", "source": "lab"}
    api.client.post("/api/v1/readings", json=[later], key=api.keys["write"])
    assert api.client.get("/api/v1/readings", params=PAGE).content == first.content
    assert answers.hits == hits + 2
    # one inside it changes it: it comes in, the last one goes to the next page
    inside = {**later, "ts": "2024-10-26T00:05:00Z", "value": 42.0}
    api.client.post("/api/v1/readings", json=[inside], key=api.keys["write"])
    page = api.client.get("/api/v1/readings", params=PAGE).json()
    assert page["data"][1]["value"] == 42.0
    assert page["data"][-1]["ts"] == "2024-10-26T01:20:00Z"
    # the same page asked of another host name names that host in its next link
    other = api.client.get("/api/v1/readings", params=PAGE, headers={"Host": "other.test"})
    assert other.json()["next"].startswith("http://other.test/")


def test_a_page_changes_with_its_last_reading_and_with_any_of_a_channel_it_holds_whole(
        api: Api) -> None:
    page = api.client.get("/api/v1/readings", params=PAGE).json()
    last = {"device": "ws1", "channel": "temp", "ts": page["data"][-1]["ts"], "value": -5.0,
            "unit": "degC", "source": "lab"}
    api.client.post("/api/v1/readings", json=[last], key=api.keys["write"])
    assert api.client.get("/api/v1/readings", params=PAGE).json()["data"][-1]["value"] == -5.0
    # m1 (288 readings) comes whole before ws1's first 12: a reading of m1 later than the
    # page's last (a ws1 reading) still lands in the page
    both = {"device": ["m1", "ws1"], "limit": 300}
    before = api.client.get("/api/v1/readings", params=both).json()
    assert before["data"][-1]["ts"] == "2024-10-26T01:50:00Z"
    late = {"device": "m1", "channel": "energy", "ts": "2024-10-29T00:00:00Z",
            "value": 1072.0, "unit": "kWh", "source": "lab"}
    api.client.post("/api/v1/readings", json=[late], key=api.keys["write"])
    after = api.client.get("/api/v1/readings", params=both).json()
    assert after["data"][288] == {**before["data"][287], "ts": "2024-10-29T00:00:00Z",
                                  "value": 1072.0, "seq": None}
    assert after["data"][-1]["ts"] == "2024-10-26T01:40:00Z"


def test_an_answer_whose_range_depends_on_when_it_is_read_is_never_kept(api: Api) -> None:
    """"now", "today" and a time of day alone mean another time at each request."""
    now = dt.datetime.now(dt.UTC)
    params = {"device": "ws1", "every": "1d", "fn": "count",
              "start": (now - dt.timedelta(days=1)).isoformat(), "end": "now"}
    page = {"device": "ws1", "start": (now - dt.timedelta(hours=1)).isoformat(),
            "end": "now"}
    assert api.client.get("/api/v1/aggregates", params=params).json()["data"] == []
    assert api.client.get("/api/v1/readings", params=page).json()["data"] == []
    soon = now + dt.timedelta(seconds=2)  # after the first answer's end, before the next's
    api.client.post("/api/v1/readings", key=api.keys["write"], json=[
        {"device": "ws1", "channel": "temp", "ts": soon.isoformat(), "value": 1.0,
         "unit": "degC", "source": "lab"}])
    time.sleep(max(0.0, (soon - dt.datetime.now(dt.UTC)).total_seconds()) + 0.05)
    assert [r["count"] for r in api.client.get("/api/v1/aggregates", params=params).json()[
        "data"]] == [1]
    assert len(api.client.get("/api/v1/readings", params=page).json()["data"]) == 1


# -- a property: whatever the writes, the app that keeps answers says what one that never
#    keeps them says

AGGREGATES, READINGS = "/api/v1/aggregates", "/api/v1/readings"
QUESTIONS: list[tuple[str, dict[str, Any]]] = [
    (AGGREGATES, {"device": "ws1", "every": "1h", "start": "2024-10-26T00:00:00Z",
                  "end": "2024-10-26T06:00:00Z"}),
    (AGGREGATES, {"device": "m1", "every": "1d", "tz": "Europe/Amsterdam",
                  "start": "2024-10-26", "end": "2024-10-28"}),
    (AGGREGATES, {"device": "m1", "every": "1d", "fn": ["consumption", "errors"]}),
    (AGGREGATES, {"channel": "temp", "every": "1d", "start": "2024-10-26T00:00:00Z",
                  "end": "2024-10-27T00:00:00Z", "format": "csv"}),
    # a full page of one channel (kept up to its last reading), and of two devices
    (READINGS, {"device": "m1", "channel": "energy", "limit": 50}),
    (READINGS, {"device": "m1", "channel": "energy", "limit": 50,
                "start": "2024-10-27T00:00:00Z", "end": "2024-10-27T12:00:00Z"}),
    (READINGS, {"device": ["m1", "ws1"], "limit": 400, "format": "arrow"}),
    (READINGS, {"limit": 20, "start": "2024-10-28T23:00:00Z"}),  # the last page
]
MINUTES = 4 * 24 * 60  # writes fall anywhere in the 26th to the 29th


def reading(device: str, minute: int, value: float, error: bool) -> dict[str, Any]:
    channel, unit = ("temp", "degC") if device == "ws1" else ("energy", "kWh")
    ts = dt.datetime(2024, 10, 26, tzinfo=dt.UTC) + dt.timedelta(minutes=minute)
    row = {"device": device, "channel": channel, "ts": ts.isoformat(), "value": value,
           "unit": unit, "source": "lab"}
    if error:
        row.update(value=None, quality="sensor_error", error_code="E1")
    return row


steps = st.lists(st.one_of(
    st.tuples(st.just("ask"), st.integers(0, len(QUESTIONS) - 1)),
    st.tuples(st.just("write"), st.lists(st.tuples(
        st.sampled_from(["ws1", "m1"]), st.integers(0, MINUTES),
        st.floats(0, 2000, allow_nan=False), st.booleans()), min_size=1, max_size=4)),
    st.tuples(st.just("delete"), st.integers(0, MINUTES))), min_size=1, max_size=12)


@settings(max_examples=25, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=steps)
def test_kept_answers_always_equal_fresh_ones(api: Api, steps: list[Any]) -> None:
    fresh_hub = Hub(api.hub.store)
    fresh_hub.answers = None  # this app computes every answer
    fresh = Client(create_app(fresh_hub, rate_limit="10000/minute"), api.keys["read"])
    write = api.keys["write"]
    for action, arg in steps:
        if action == "write":
            rows = [reading(*item) for item in arg]
            assert api.client.post("/api/v1/readings", json=rows, key=write
                                   ).status_code == 200
        elif action == "delete":
            start = dt.datetime(2024, 10, 26, tzinfo=dt.UTC) + dt.timedelta(minutes=arg)
            api.client.delete("/api/v1/readings", params={
                "device": "m1", "start": start.isoformat(),
                "end": (start + dt.timedelta(hours=3)).isoformat()}, key=api.keys["admin"])
        else:
            path, question = QUESTIONS[arg]
            kept = api.client.get(path, params=question)
            assert kept.status_code == 200, (question, kept.text)
            answer = fresh.get(path, params=question)
            assert content(kept) == content(answer)
            assert kept.headers.get("link") == answer.headers.get("link")
    for path, question in QUESTIONS:  # and at the end, every question
        assert (content(api.client.get(path, params=question))
                == content(fresh.get(path, params=question)))


def content(response: httpx.Response) -> Any:
    """The answer's content (Arrow: its rows; the stream's batches may be cut otherwise)."""
    if response.headers["content-type"] == "application/vnd.apache.arrow.stream":
        return pa.ipc.open_stream(response.content).read_all().to_pylist()
    return response.content

"""Repeated aggregates answered from memory (DuckDB: one process sees every write), and
never an answer a write has changed (tests/api/test_aggregates.py checks late data on every
backend; here: that the memory is used, and against an app that never keeps answers)."""

from __future__ import annotations

import datetime as dt
from typing import Any

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


# -- a property: whatever the writes, the app that keeps answers says what one that never
#    keeps them says

QUESTIONS = [
    {"device": "ws1", "every": "1h", "start": "2024-10-26T00:00:00Z",
     "end": "2024-10-26T06:00:00Z"},
    {"device": "m1", "every": "1d", "tz": "Europe/Amsterdam", "start": "2024-10-26",
     "end": "2024-10-28"},
    {"device": "m1", "every": "1d", "fn": ["consumption", "errors"]},  # no bounds
    {"channel": "temp", "every": "1d", "start": "2024-10-26T00:00:00Z",
     "end": "2024-10-27T00:00:00Z", "format": "csv"},
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
            question = QUESTIONS[arg]
            kept = api.client.get("/api/v1/aggregates", params=question)
            assert kept.status_code == 200, (question, kept.text)
            assert kept.content == fresh.get("/api/v1/aggregates", params=question).content
    for question in QUESTIONS:  # and at the end, every question
        assert (api.client.get("/api/v1/aggregates", params=question).content
                == fresh.get("/api/v1/aggregates", params=question).content)

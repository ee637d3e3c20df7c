"""schemathesis' state machine over meterhub's OpenAPI links, against a real uvicorn.

The links (`meterhub.api.links`) chain a push to the reads of what it wrote (readings,
aggregates, gaps, channels, devices) and to its delete, and a new key to its revocation.
Every answer is held to the spec with every response check, as in test_openapi.py; and every
push the server accepted must read back: each reading it stored is in GET /readings for its
device and channel at its time, with its value (converted from the unit it was sent in to
its channel's unit), quality, seq, error code and validated flag, the later of two items
with the same key winning.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest
import schemathesis
from hypothesis import strategies as st
from schemathesis import checks
from schemathesis.core.transport import Response

import meterhub
from meterhub.api import create_app
from meterhub.keys import new_key
from meterhub.units import convert, normalize_unit
from tests.api.conftest import sample_frame
from tests.api.live import served
from tests.api.stateful import run_seeded
from tests.api.test_openapi import _malformed
from tests.clickhouse_fixtures import BACKENDS, NewURL

PUSH = "POST /api/v1/readings"
SCENARIOS, STEPS, RUNS = 40, 8, 6  #: scenarios in all, steps in each, runs at most
AUTH: dict[str, str] = {}
BASE: dict[str, str] = {}
SERVED: dict[str, Any] = {}  #: the app, and the id of the key the test calls with
#: scenarios run, accepted pushes read back, readings found
COUNTS = {"scenarios": 0, "pushes": 0, "readings": 0}

with meterhub.open("duckdb:///:memory:") as _spec_hub:
    schema = schemathesis.openapi.from_dict(create_app(_spec_hub).openapi())

#: channels a valid push writes: (device, channel) -> (units it may be sent in, kind hint)
CHANNELS: dict[tuple[str, str], tuple[list[str], str | None]] = {
    ("ws1", "temp"): (["degC", "degF", "K"], None),  # in the sample data, in degC
    ("st-a", "temp"): (["degF", "degC"], "instant"),
    ("st-a", "power"): (["kW", "W"], None),
    ("st-b", "energy"): (["kWh", "Wh", "MJ"], "delta"),
}


@st.composite
def _reading(draw: st.DrawFn) -> dict[str, Any]:
    device, channel = draw(st.sampled_from(sorted(CHANNELS)))
    units, kind = CHANNELS[device, channel]
    moment = draw(st.datetimes(dt.datetime(1990, 1, 1), dt.datetime(2100, 1, 1),
                               timezones=st.sampled_from([dt.UTC, dt.timezone(
                                   dt.timedelta(hours=2)), dt.timezone(-dt.timedelta(hours=5))])))
    item: dict[str, Any] = {
        "device": device, "channel": channel, "ts": moment.isoformat(),
        "value": draw(st.floats(-1e6, 1e6, allow_nan=False) | st.integers(-1000, 1000)),
        "unit": draw(st.sampled_from(units))}
    if kind is not None and draw(st.booleans()):
        item["kind"] = kind
    for name, values in (("quality", st.sampled_from(["ok", "estimated", "sensor_error"])),
                         ("seq", st.none() | st.integers(0, 2**40)),
                         ("error_code", st.none() | st.sampled_from(["E1", "lost"])),
                         ("validated", st.booleans()), ("source", st.just("lab"))):
        if draw(st.booleans()):
            item[name] = draw(values)
    if item.get("quality") == "sensor_error" and draw(st.booleans()):
        item["value"] = None
    return item


#: pushes the server accepts: a few readings of `CHANNELS`, sometimes with a repeated key
VALID_PUSHES = st.lists(_reading(), min_size=1, max_size=6).flatmap(
    lambda items: st.sampled_from([items, [*items, {**items[0], "value": 1.5}]]))


#: the query parameters a read keeps when its random ones are dropped: those links fill
SELECTING = {"device", "channel"}


@schema.hook
def flatmap_case(context: Any, case: Any) -> Any:
    """Half of the generated pushes are valid batches, and half of the reads and deletes
    select by device and channel alone (the devices by source): random times, zones,
    units, sources and cursors are mostly refused or match nothing, and the reads along the
    links should mostly find what was written."""
    label = context.operation.label if context.operation is not None else ""
    if label == PUSH:
        def valid(items: list[dict[str, Any]]) -> Any:
            case.body, case.media_type = items, "application/json"
            return case

        return st.just(case) | VALID_PUSHES.map(valid)
    if label.startswith(("GET ", "DELETE ")) and case.query:
        def selecting(_: None) -> Any:
            keep = {"source"} if label == "GET /api/v1/devices" else SELECTING
            case.query = {k: v for k, v in case.query.items() if k in keep}
            return case

        return st.just(case) | st.just(None).map(selecting)
    return st.just(case)


@pytest.fixture(scope="module", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module", autouse=True)
def live_server(module_store_url: NewURL) -> Iterator[None]:
    with meterhub.open(module_store_url()) as hub:
        hub.write(sample_frame(), source="lab")
        COUNTS.update(scenarios=0, pushes=0, readings=0)  # each backend's run counts anew
        app = create_app(hub)
        SERVED.update(app=app, hub=hub)
        _new_admin_key()
        with served(app) as base:
            BASE["url"] = base
            yield


def _new_admin_key() -> None:
    """A key for the test's calls, added as `POST /api/v1/keys` adds one."""
    record, text = new_key("fuzz", "admin", "1000000/minute")
    SERVED["app"].state.keys.add(record)
    SERVED["key_id"] = record.key_id
    AUTH["Authorization"] = f"Bearer {text}"


def _utc(text: str) -> dt.datetime | None:
    """An ISO 8601 time as UTC (naive means UTC), or None for a form this test does not read."""
    try:
        moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment.astimezone(dt.UTC)


def _expected(items: list[Any]) -> dict[tuple[str, str, dt.datetime], dict[str, Any]] | None:
    """What a push of ``items`` stores, by key (the later item wins); None for items this test
    does not interpret (times in forms it does not read, values that are not numbers)."""
    out: dict[tuple[str, str, dt.datetime], dict[str, Any]] = {}
    for item in items:
        moment = _utc(item["ts"]) if isinstance(item.get("ts"), str) else None
        value = item.get("value")
        if moment is None or isinstance(value, bool) or not isinstance(value, int | float | None):
            return None
        quality = item.get("quality") or "ok"
        out[item["device"], item["channel"], moment] = {
            "value": None if quality == "sensor_error" else value, "unit": item["unit"],
            "quality": quality, "seq": item.get("seq"),
            "error_code": item.get("error_code") or None,
            "validated": bool(item.get("validated", False))}
    return out


def _stored(device: str, channel: str, low: dt.datetime, high: dt.datetime
            ) -> dict[dt.datetime, dict[str, Any]]:
    params = {"device": device, "channel": channel, "start": low.isoformat(),
              "end": (high + dt.timedelta(microseconds=1)).isoformat(), "limit": 10_000}
    answer = httpx.get(f"{BASE['url']}/api/v1/readings", params=params, headers=AUTH, timeout=30)
    assert answer.status_code == 200, answer.text
    return {_utc(row["ts"]): row for row in answer.json()["data"]}  # type: ignore[misc]


def stored_reads_back(ctx: Any, response: Response, case: Any) -> bool | None:
    """A push the server accepted reads back, as the module's docstring says."""
    if case.operation.label != PUSH or response.status_code != 200:
        return None
    if not isinstance(case.body, list) or "json" not in (case.media_type or ""):
        return None
    expected = _expected(case.body)
    if expected is None:
        return None
    summary = response.json()
    assert (summary["received"], summary["written"]) == (len(case.body), len(expected))
    assert summary["devices"] == sorted({item["device"] for item in case.body})
    assert summary["channels"] == sorted({item["channel"] for item in case.body})
    series: dict[tuple[str, str], list[dt.datetime]] = {}
    for device, channel, moment in expected:
        series.setdefault((device, channel), []).append(moment)
    for (device, channel), moments in series.items():
        rows = _stored(device, channel, min(moments), max(moments))
        for moment in moments:
            want, row = expected[device, channel, moment], rows.get(moment)
            assert row is not None, (device, channel, moment, "not read back")
            for name in ("quality", "seq", "error_code", "validated"):
                assert row[name] == want[name], (device, channel, moment, name, row, want)
            if want["value"] is None:
                assert row["value"] is None, row
            else:
                value = float(convert(np.array([float(want["value"])]), want["unit"],
                                      row["unit"])[0])
                assert math.isclose(row["value"], value, rel_tol=1e-9, abs_tol=1e-9), (
                    device, channel, moment, normalize_unit(want["unit"]), row, want)
            COUNTS["readings"] += 1
    COUNTS["pushes"] += 1
    return True


class Workflow(schema.as_state_machine()):  # type: ignore[misc]
    def setup(self) -> None:
        # keys made by earlier scenarios are revoked, so that their names are free again:
        # a scenario's answers depend on its own steps, not on what ran before it
        COUNTS["scenarios"] += 1
        for key in SERVED["hub"].store.api_keys():
            if key.revoked_at is None and key.key_id != SERVED["key_id"]:
                SERVED["app"].state.keys.revoke(key.key_id)

    def get_call_kwargs(self, case: Any) -> dict[str, Any]:
        return {"base_url": BASE["url"], "headers": dict(AUTH)}

    def after_call(self, response: Response, case: Any) -> None:
        super().after_call(response, case)
        if (case.operation.label == "DELETE /api/v1/keys/{key_id}"
                and response.status_code == 204
                and (case.path_parameters or {}).get("key_id") == SERVED["key_id"]):
            # the run revoked the test's own key (GET /keys lists it, and schemathesis
            # infers a link from that list to the revocation): its answer was checked;
            # an operator would make a new key, and so does the test
            _new_admin_key()

    def validate_response(self, response: Response, case: Any,
                          additional_checks: Any = None, **kwargs: Any) -> None:
        if response.status_code == 400 and response.content == b"Invalid HTTP request received.":
            # uvicorn refused a request that is not valid HTTP (test_openapi.py says more)
            assert _malformed(case.headers or {}), case.headers
            return
        # every response check; not the two that ask whether the request schema encodes
        # every rule (times, units and zones are strings the server parses)
        case.validate_response(
            response, additional_checks=[stored_reads_back],
            excluded_checks=[checks.positive_data_acceptance, checks.negative_data_rejection],
            transport_kwargs=kwargs or None, recorder=self.recorder)


def test_pushes_read_back_and_keys_revoke_along_the_links() -> None:
    run_seeded(Workflow, COUNTS, scenarios=SCENARIOS, steps=STEPS, runs=RUNS)
    assert COUNTS["scenarios"] >= SCENARIOS // 2, COUNTS
    assert COUNTS["pushes"] >= 10, COUNTS
    assert COUNTS["readings"] >= 30, COUNTS

"""schemathesis against the DSMR-reader paths' own OpenAPI document, on a real uvicorn.

Every operation statelessly, and statefully along the document's links (a posted reading
read back through the list's time filters, an added contract removed by its id): no 5xx
but the documented 500 `Failed to parse telegram` of the v1 push, and every answer as the
document says (status, content type, schema, headers; auth enforced), with every response
check. A posted reading must read back with the values its 201 answer showed.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis import checks
from schemathesis.core.transport import Response

import meterhub
from meterhub.api import create_app
from meterhub.api.dsmr_reader.openapi import SPEC_PATH, V1_PUSH, document
from meterhub.config import parse
from meterhub.dsmr.settings import DsmrSettings
from meterhub.keys import new_key
from tests.api.live import served
from tests.api.stateful import run_seeded
from tests.api.test_openapi import _malformed
from tests.dsmr.telegrams import v5

AUTH: dict[str, str] = {}
BASE: dict[str, str] = {}
#: a contract of meterhub.toml (id 1: removing it is a 409), as the prices tests have one
SETTINGS = parse({"dsmr": {"prices": [{"start": dt.date(2023, 1, 1), "end": dt.date(2023, 12, 31),
                                       "description": "from the file", "gas_price": 0.9}]}})
V2 = "/api/v2"
PRICES = f"{V2}/consumption/energy-supplier-prices"
CREATE = "POST /api/v2/datalogger/dsmrreading"
ADD_PRICE = "POST /api/v2/consumption/energy-supplier-prices"
SCENARIOS, STEPS, RUNS = 24, 6, 4  #: stateful scenarios in all, steps in each, runs at most
COUNTS = {"scenarios": 0, "read back": 0}

schema = schemathesis.openapi.from_dict(document(DsmrSettings()))


@pytest.fixture(scope="module", autouse=True)
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    path: Path = tmp_path_factory.mktemp("dsmr-openapi") / "api.duckdb"
    with meterhub.open(f"duckdb:///{path}") as hub:
        record, text = new_key("fuzz", "write", "1000000/minute")
        hub.store.add_key(record)
        AUTH["X-AUTHKEY"] = text
        with served(create_app(hub, settings=SETTINGS)) as base:
            BASE["url"] = base
            # a few telegrams, so that lists, statistics and live answers have data
            for minute in range(0, 30, 10):
                answer = httpx.post(f"{base}{V1_PUSH}", headers=AUTH, data={
                    "telegram": v5(stamp=f"2410261200{minute:02d}S")})
                assert answer.status_code == 201, answer.text
            yield


# -- valid bodies, half of the time: random ones are mostly refused -----------------------

#: times on a few days, so that statistics (computed per day when asked) stay quick: one in
#: local mean time (Amsterdam was +00:19:32), the last day of summer time and its 25 hours
_DAYS = [dt.date(1850, 6, 1), dt.date(2024, 10, 26), dt.date(2024, 10, 27)]
_MOMENTS = st.builds(
    lambda day, seconds, zone: (dt.datetime.combine(day, dt.time(), dt.UTC)
                                + dt.timedelta(seconds=seconds)).astimezone(zone),
    st.sampled_from(_DAYS), st.integers(0, 86_399),
    st.sampled_from([dt.UTC, dt.timezone(dt.timedelta(hours=2)),
                     dt.timezone(dt.timedelta(minutes=19, seconds=32))]))


def _kwh(draw: st.DrawFn) -> str:
    return f"{draw(st.integers(0, 999_999_999)) / 1000:.3f}"


@st.composite
def _new_reading(draw: st.DrawFn) -> dict[str, Any]:
    body: dict[str, Any] = {"timestamp": draw(_MOMENTS).isoformat()}
    for name in ("electricity_delivered_1", "electricity_returned_1", "electricity_delivered_2",
                 "electricity_returned_2", "electricity_currently_delivered",
                 "electricity_currently_returned"):
        body[name] = _kwh(draw)
    if draw(st.booleans()):
        body |= {"phase_voltage_l1": "230.1", "phase_power_current_l1": draw(st.integers(0, 999)),
                 "extra_device_timestamp": draw(_MOMENTS).isoformat(),
                 "extra_device_delivered": _kwh(draw)}
    return body


@st.composite
def _new_price(draw: st.DrawFn) -> dict[str, Any]:
    start = draw(st.dates(dt.date(2000, 1, 1), dt.date(2040, 1, 1)))
    end = start + dt.timedelta(days=draw(st.integers(0, 800)))
    return {"start": start.isoformat(), "end": end.isoformat(),
            "description": draw(st.text(max_size=20)),
            "gas_price": f"{draw(st.integers(0, 10**7)) / 10**6:.6f}"}


VALID = {CREATE: _new_reading(), ADD_PRICE: _new_price(),
         f"POST {V1_PUSH}": st.sampled_from([v5(), v5(stamp="241026130000S")]).map(
             lambda text: {"telegram": text})}


@schema.hook
def flatmap_case(context: Any, case: Any) -> Any:
    label = context.operation.label if context.operation is not None else ""
    if label not in VALID:
        return st.just(case)

    def valid(body: dict[str, Any]) -> Any:
        case.body = body
        if case.media_type not in ("application/json", "application/x-www-form-urlencoded"):
            case.media_type = "application/x-www-form-urlencoded"
        return case

    return st.just(case) | VALID[label].map(valid)


# -- the checks ----------------------------------------------------------------------------

EXCLUDED = [checks.positive_data_acceptance, checks.negative_data_rejection]


def _validate(case: Any, response: Any, **kwargs: Any) -> None:
    if response.status_code == 400 and response.content == b"Invalid HTTP request received.":
        # uvicorn refused a request that is not valid HTTP before any app saw it
        assert _malformed(case.headers or {}), case.headers
        return
    # every response check (not_a_server_error among them) and the document: the one 5xx
    # it names is the v1 push's 500 for a rejected telegram, and it holds to that
    case.validate_response(response, excluded_checks=[checks.not_a_server_error, *EXCLUDED],
                           **kwargs)
    if response.status_code >= 500:
        assert (case.operation.label, response.status_code, response.content) == (
            f"POST {V1_PUSH}", 500, b"Failed to parse telegram"), response.content


@schema.parametrize()
@settings(max_examples=15, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
def test_every_operation_answers_as_documented(case: Any) -> None:
    response = case.call(base_url=BASE["url"], headers=AUTH)
    _validate(case, response)


def reading_reads_back(ctx: Any, response: Response, case: Any) -> bool | None:
    """A reading stored (201) is in the list filtered to its time, as the 201 showed it
    (the fields it was posted with; gas is joined as of the reading's time in the list)."""
    if case.operation.label != CREATE or response.status_code != 201:
        return None
    created = json.loads(response.content)
    answer = httpx.get(f"{BASE['url']}/api/v2/datalogger/dsmrreading", headers=AUTH,
                       params={"timestamp__gte": created["timestamp"],
                               "timestamp__lte": created["timestamp"]}, timeout=30)
    assert answer.status_code == 200, answer.text
    (listed,) = answer.json()["results"]
    sent = case.body if isinstance(case.body, dict) else {}
    for name, value in created.items():
        if name.startswith("extra_device") or (name not in ("id", "timestamp")
                                               and sent.get(name) in (None, "")):
            continue
        assert listed[name] == value, (name, listed, created)
    COUNTS["read back"] += 1
    return True


class Workflow(schema.as_state_machine()):  # type: ignore[misc]
    def setup(self) -> None:
        COUNTS["scenarios"] += 1

    def get_call_kwargs(self, case: Any) -> dict[str, Any]:
        return {"base_url": BASE["url"], "headers": dict(AUTH)}

    def validate_response(self, response: Response, case: Any,
                          additional_checks: Any = None, **kwargs: Any) -> None:
        _validate(case, response, additional_checks=[reading_reads_back],
                  transport_kwargs=kwargs or None, recorder=self.recorder)


def test_posted_readings_read_back_and_added_contracts_are_removed() -> None:
    run_seeded(Workflow, COUNTS, scenarios=SCENARIOS, steps=STEPS, runs=RUNS)
    assert COUNTS["scenarios"] >= SCENARIOS // 2, COUNTS
    assert COUNTS["read back"] >= 5, COUNTS


def test_the_document_is_valid_and_served() -> None:
    schema.validate()
    served_spec = httpx.get(f"{BASE['url']}{SPEC_PATH}", timeout=30)
    assert served_spec.status_code == 200
    assert served_spec.json() == document(SETTINGS.dsmr)
    # every path the server routes under DSMR-reader's prefixes is in it, and none other
    with meterhub.open("duckdb:///:memory:") as hub:
        routed = {getattr(route, "path", "") for route in create_app(hub).routes}
    dsmr = {path for path in routed if path.startswith(("/api/v2/", V1_PUSH))} - {SPEC_PATH}
    assert dsmr == set(document(DsmrSettings())["paths"])


def _operations() -> list[Any]:
    return [result.ok() for result in schema.get_all_operations()]


def _sample(operation: Any, **overrides: Any) -> Any:
    """A case of ``operation`` with a body and path the server takes (the answer depends on
    the key, the limit or the size alone)."""
    bodies = {CREATE: {"timestamp": "2024-10-26T12:00:00+02:00", **dict.fromkeys((
        "electricity_delivered_1", "electricity_returned_1", "electricity_delivered_2",
        "electricity_returned_2", "electricity_currently_delivered",
        "electricity_currently_returned"), "1.000")},
        ADD_PRICE: {"start": "2030-01-01", "end": "2030-12-31"},
        "PATCH /api/v2/datalogger/meter-statistics": {"dsmr_version": "50"},
        f"POST {V1_PUSH}": {"telegram": v5()}}
    kwargs: dict[str, Any] = {"path_parameters": {"price_id": "999999"}
                              if "{price_id}" in operation.path else {}}
    if operation.label in bodies:
        kwargs |= {"body": bodies[operation.label], "media_type": FORM_MEDIA
                   if operation.label == f"POST {V1_PUSH}" else "application/json"}
    return operation.Case(**(kwargs | overrides))


FORM_MEDIA = "application/x-www-form-urlencoded"


def test_answers_the_fuzzer_rarely_meets_are_as_documented() -> None:
    """403 without a key, 429 past the key's limit, 413 for a body over 64 kB, 409 for a
    configured contract, DRF's parse error: each as the document says."""
    with meterhub.open("duckdb:///:memory:") as hub:
        record, text = new_key("once", "write", "1/minute")
        hub.store.add_key(record)
        with served(create_app(hub, settings=SETTINGS)) as base:
            seen: dict[str, set[int]] = {}

            def check(case: Any, headers: dict[str, str], status: int, **extra: Any) -> None:
                response = case.call(base_url=base, headers=headers, **extra)
                assert response.status_code == status, (case.operation.label, response.text)
                _validate(case, response)
                seen.setdefault(case.operation.label, set()).add(status)

            for operation in _operations():
                check(_sample(operation), {}, 403)
            # the key's one request of the minute, then every path is throttled
            check(_sample(schema[f"{V2}/application/version"]["GET"]), {"X-AUTHKEY": text},
                  200)
            for operation in _operations():
                check(_sample(operation), {"Authorization": f"Token {text}"}, 429)
        record, text = new_key("big", "write", "1000/minute")
        hub.store.add_key(record)
        key = {"X-AUTHKEY": text}
        with served(create_app(hub, settings=SETTINGS)) as base:
            for operation in _operations():
                if operation.method.upper() in ("POST", "PATCH"):
                    huge = {"telegram" if "v1" in operation.path else "description": "x" * 70_000}
                    check(_sample(operation, body=huge), key, 413)
            check(_sample(schema[f"{PRICES}/{{price_id}}"]["DELETE"],
                          path_parameters={"price_id": "1"}), key, 409)
            check(_sample(schema[f"{PRICES}/{{price_id}}"]["DELETE"]), key, 404)
            for label in (CREATE, ADD_PRICE):
                operation = next(op for op in _operations() if op.label == label)
                check(_sample(operation, body=None), {**key, "Content-Type": "application/json"},
                      400, data=b"{not json")
    assert all(403 in statuses and 429 in statuses for statuses in seen.values()), seen

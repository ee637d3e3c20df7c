"""schemathesis against the OpenAPI spec, served by a real uvicorn: no 5xx, and every
answer conforms to the spec (status, content type, schema, headers)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import checks

import meterhub
from meterhub.api import create_app
from meterhub.keys import new_key
from tests.api.conftest import sample_frame
from tests.api.live import served
from tests.clickhouse_fixtures import BACKENDS, NewURL

AUTH: dict[str, str] = {}
BASE: dict[str, str] = {}

# The spec does not depend on the data: load it from an app over an empty in-memory store,
# then send every generated case to a real server over a store with data.
with meterhub.open("duckdb:///:memory:") as _spec_hub:
    schema = schemathesis.openapi.from_dict(create_app(_spec_hub).openapi())


@pytest.fixture(scope="module", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module", autouse=True)
def live_server(module_store_url: NewURL) -> Iterator[None]:
    with meterhub.open(module_store_url()) as hub:
        hub.write(sample_frame(), source="lab")
        record, text = new_key("fuzz", "admin", "1000000/minute")
        hub.store.add_key(record)
        AUTH["Authorization"] = f"Bearer {text}"
        with served(create_app(hub)) as base:
            BASE["url"] = base
            yield


@schema.parametrize()
@settings(max_examples=75, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
def test_every_operation_conforms_to_the_spec(case: Any) -> None:
    # Every response check runs (no 5xx; status, content type, schema and headers as
    # documented; auth not ignored; Allow on 405). Left out are the two checks that ask
    # whether the *request* schema encodes every rule: times, units and zones are strings
    # the server parses, so a schema-valid "start=abc" is rightly a 400 problem.
    response = case.call(base_url=BASE["url"], headers=AUTH)
    if response.status_code == 400 and response.text == "Invalid HTTP request received.":
        # uvicorn refused a request that is not valid HTTP before any app saw it; make
        # sure that is what the case sent (say, an empty Content-Length)
        assert _malformed(case.headers or {}), case.headers
        return
    case.validate_response(response, excluded_checks=[
        checks.positive_data_acceptance, checks.negative_data_rejection])


_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")


def _malformed(headers: dict[str, Any]) -> bool:
    for name, value in headers.items():
        text = str(value)
        if not _TOKEN.match(name) or any(ord(c) < 32 and c != "\t" for c in text):
            return True
        if name.lower() == "content-length" and not text.strip().isdigit():
            return True
    return False

"""An OpenAPI 3.1 document of the DSMR-reader-compatible paths, served at `SPEC_PATH`.

These paths answer as DSMR-reader 5.11 does (this package's modules, DSMR-READER.md), not
as meterhub's own API: they are left out of meterhub's document and described here, each
answer with its exact shape, so that clients and schemathesis can hold the server to them.
The v1 push answers text (Django's ``text/html`` label); the v2 paths answer JSON as
Django REST framework does: limit/offset pages, decimals as strings, field errors as
``{"field": ["message", ...]}``, other errors as ``{"detail": "..."}``. The shapes come
from the same constants the handlers use (fields, decimal places, limits), so the document
follows them when they change. Links chain a posted reading to the list filtered by its
time, and an added contract to its removal.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from starlette.responses import Response

from meterhub import __version__
from meterhub.api.dsmr_reader import meter, prices, readings
from meterhub.api.dsmr_reader.common import (
    AMBIGUOUS_FILTER_TIME,
    MAX_BODY,
    PAGE_SIZE,
    TIME_OUT_OF_RANGE,
    WRONG_TIME,
    get_route,
    json_response,
)
from meterhub.dsmr.fields import CURRENT_MAX, DECIMAL_LIMITS, READING_FIELDS
from meterhub.dsmr.meter_log import INT_MAX, INT_MIN
from meterhub.dsmr.prices import DESCRIPTION_LENGTH, PRICE_DIGITS, PRICE_FIELDS, PRICE_PLACES
from meterhub.dsmr.settings import DsmrSettings

SPEC_PATH = "/api/v2/openapi.json"
V1_PUSH = "/api/v1/datalogger/dsmrreading"
V2 = "/api/v2"
JSON = "application/json"
FORM = "application/x-www-form-urlencoded"
HTML = "text/html"

Schema = dict[str, Any]


def _ref(name: str, kind: str = "schemas") -> Schema:
    return {"$ref": f"#/components/{kind}/{name}"}


def _nullable(schema: Schema) -> Schema:
    return {"anyOf": [schema, {"type": "null"}]}


def _decimal_out(places: int) -> Schema:
    """A decimal as DRF writes it: a string with exactly ``places`` decimals."""
    return {"type": "string", "pattern": rf"^-?\d+\.\d{{{places}}}$",
            "description": f"a decimal with {places} places, as a string"}


def _decimal_in(max_digits: int, places: int, *, null: bool = False) -> Schema:
    """A decimal DRF's DecimalField takes: a number text (or a whole JSON number) of at most
    ``max_digits`` digits, ``places`` of them after the point."""
    whole = max_digits - places
    options: list[Schema] = [
        {"type": "string", "pattern": rf"^-?\d{{1,{whole}}}(\.\d{{1,{places}}})?$"},
        {"type": "integer", "minimum": -(10**whole - 1), "maximum": 10**whole - 1}]
    if null:
        options.append({"type": "null"})
    return {"anyOf": options, "description": f"at most {max_digits} digits, {places} after "
                                             "the point"}


_TIME_OUT: Schema = {
    "type": "string",
    "pattern": r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{6})?[+-]\d{2}:\d{2}(:\d{2})?$",
    "description": "ISO 8601 in the meter's zone, with its offset, as Python (and DSMR-reader) "
                   "write it: an offset of local mean time, before a zone kept standard time, "
                   "has seconds (`+00:19:32` in Amsterdam before 1937), which RFC 3339 "
                   "`date-time` does not allow; the time filters read it back"}
_TIME_IN: Schema = {
    "type": "string", "format": "date-time",
    "description": "ISO 8601 (`T` or a space; seconds and fraction optional); a time without "
                   "offset is in the meter's zone. From 1800 to 2199 (UTC), else "
                   f"{TIME_OUT_OF_RANGE!r}; else {WRONG_TIME!r}"}
_DAY: Schema = {"type": "string", "format": "date"}
#: what Django says of a naive time filter the meter's zone repeats or skips
_AMBIGUOUS = AMBIGUOUS_FILTER_TIME.format(moment="2025-10-26 02:30:00", zone="Europe/Amsterdam")
_LOCAL_TIME_FILTER: Schema = {
    "type": "string",
    "description": "inclusive; ISO 8601 date or time (`T` or a space), naive in the meter's "
                   "zone; a bare date is its midnight. Else, or outside 1800-2199: 400 "
                   "`Enter a valid date/time.`; a naive time the zone repeats (clocks going "
                   f"back) or skips: 400 `{_AMBIGUOUS}` (that time and the zone)"}
_EXACT_TIME_FILTER: Schema = {
    "type": "string",
    "description": "exactly this time (DSMR-reader's deprecated exact filter): an ISO 8601 "
                   "date-time (`T` or a space, seconds optional), naive in the meter's zone; "
                   "a bare date, another text or a time outside 1800-2199 is a 400 `Enter a "
                   "valid date/time.`, a naive time the zone repeats or skips a 400 "
                   f"`{_AMBIGUOUS}`"}
_DATE_FILTER: Schema = {"type": "string", "format": "date",
                        "description": "inclusive; else 400 `Enter a valid date.`"}
_EXACT_DATE_FILTER: Schema = {
    "type": "string", "format": "date",
    "description": "exactly this day (DSMR-reader's deprecated exact filter); else 400 "
                   "`Enter a valid date.`"}


def _query(name: str, schema: Schema, description: str | None = None) -> Schema:
    out: Schema = {"name": name, "in": "query", "required": False, "schema": schema}
    if description:
        out["description"] = description
    return out


def _paging(ordering: list[str]) -> list[Schema]:
    return [
        _query("limit", {"type": "integer"}, f"items a page (default {PAGE_SIZE}); a value "
               "that is not a positive integer means the default, as in DRF"),
        _query("offset", {"type": "integer"}, "items to skip; anything but an integer from 0 "
               "means 0"),
        _query("ordering", {"type": "string", "enum": ordering},
               "another value is ignored (the default order), as DRF's ordering filter does"),
    ]


def _page(item: str) -> Schema:
    link = _nullable({"type": "string", "format": "uri"})
    return {"type": "object", "required": ["count", "next", "previous", "results"],
            "additionalProperties": False,
            "properties": {"count": {"type": "integer", "minimum": 0}, "next": link,
                           "previous": link, "results": {"type": "array", "items": _ref(item)}}}


def _json_answer(description: str, schema: Schema, *, limited: bool = True) -> Schema:
    out: Schema = {"description": description, "content": {JSON: {"schema": schema}}}
    if limited:
        out["headers"] = _LIMIT_HEADERS
    return out


_LIMIT_HEADERS: Schema = {name: _ref(name, "headers") for name in (
    "X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset")}


def _reading() -> Schema:
    """A DsmrReading as DSMR-reader serializes it (`READING_FIELDS`)."""
    properties: Schema = {"id": {"type": "integer", "description": "the reading's Unix second"},
                          "timestamp": _TIME_OUT}
    for name, places in READING_FIELDS.items():
        if name == "extra_device_timestamp":
            value: Schema = _TIME_OUT
        elif places is None:
            value = {"type": "integer", "minimum": 0}
        else:
            value = _decimal_out(places)
        properties[name] = _nullable(value)
    return {"type": "object", "required": list(properties), "additionalProperties": False,
            "properties": properties,
            "description": "every field of the telegram at one time, gas as of that time; a "
                           "field the meter did not send is null"}


def _new_reading(*, form: bool) -> Schema:
    properties: Schema = {"timestamp": _TIME_IN}
    for name, places in READING_FIELDS.items():
        optional = name not in readings.REQUIRED and not form
        if name == "extra_device_timestamp":
            properties[name] = _nullable(_TIME_IN) if optional else _TIME_IN
        elif places is None:
            current: Schema = {"type": "integer", "minimum": 0, "maximum": CURRENT_MAX}
            properties[name] = _nullable(current) if optional else current
        else:
            properties[name] = _decimal_in(*DECIMAL_LIMITS[name], null=optional)
    return {"type": "object", "required": list(readings.REQUIRED), "properties": properties,
            "description": "times no more than 24 h ahead of the server's clock; gas "
                           "(`extra_device_delivered`) is stored with its own time "
                           "`extra_device_timestamp`; unknown fields are ignored"}


def _meter_statistics(*, patch: bool) -> Schema:
    properties: Schema = {} if patch else {"id": {"type": "integer", "const": 1}}
    for name, field in meter.METER_FIELDS.items():
        if field.kind == "time":
            value: Schema = _TIME_IN if patch else _TIME_OUT
        elif field.kind == "int":
            value = {"type": "integer", "minimum": INT_MIN, "maximum": INT_MAX}
        else:
            value = {"type": "string"}
            if field.max_length is not None:
                value["maxLength"] = field.max_length
            if patch:
                value["minLength"] = 1
        properties[name] = _nullable(value) if field.null else value
    if patch:
        return {"type": "object", "properties": properties,
                "description": "any of the fields; the others stay (a partial update)"}
    return {"type": "object", "required": list(properties), "additionalProperties": False,
            "properties": properties}


def _price(*, new: bool) -> Schema:
    if new:
        money: Schema = _decimal_in(PRICE_DIGITS, PRICE_PLACES)
        properties: Schema = {
            "start": _DAY, "end": _DAY,
            "description": {"type": "string", "maxLength": DESCRIPTION_LENGTH},
            **{name: money for name in PRICE_FIELDS}}
        return {"type": "object", "required": ["start", "end"], "properties": properties,
                "description": "prices not given are 0; `end` not before `start`"}
    properties = {"id": {"type": "integer", "minimum": 1,
                         "description": "1, 2 ... for meterhub.toml's contracts, from 1001 "
                                        "for those added through the API"},
                  "start": _DAY, "end": _DAY, "description": {"type": "string"},
                  **{name: _decimal_out(PRICE_PLACES) for name in PRICE_FIELDS}}
    return {"type": "object", "required": list(properties), "additionalProperties": False,
            "properties": properties}


def _day_statistics() -> Schema:
    three, two = _decimal_out(3), _decimal_out(2)
    properties: Schema = {"id": {"type": "integer", "description": "the day as YYYYMMDD"},
                          "day": _DAY}
    for name in ("electricity1", "electricity2", "electricity1_returned",
                 "electricity2_returned"):
        properties[name] = three
    properties |= {"electricity1_cost": two, "electricity2_cost": two, "gas": three,
                   "gas_cost": two}
    for name in ("lowest_temperature", "highest_temperature", "average_temperature"):
        properties[name] = {"type": "string", "const": "0.0",
                            "description": "no weather data is kept for the meter"}
    properties |= {"fixed_cost": two, "total_cost": two,
                   "electricity_reading_timestamp": _TIME_OUT}
    for name in ("electricity1_reading", "electricity2_reading",
                 "electricity1_returned_reading", "electricity2_returned_reading"):
        properties[name] = _nullable(three)
    properties |= {"gas_reading_timestamp": _nullable(_TIME_OUT),
                   "gas_reading": _nullable(three)}
    return {"type": "object", "required": list(properties), "additionalProperties": False,
            "properties": properties}


def _hour_statistics() -> Schema:
    three = _decimal_out(3)
    properties: Schema = {"id": {"type": "integer", "description": "Unix hour"},
                          "hour_start": _TIME_OUT,
                          **{name: three for name in (
                              "electricity1", "electricity2", "electricity1_returned",
                              "electricity2_returned", "gas")}}
    return {"type": "object", "required": list(properties), "additionalProperties": False,
            "properties": properties}


def _today() -> Schema:
    names = ["electricity1", "electricity2", "electricity1_returned", "electricity2_returned",
             "electricity_merged", "electricity_returned_merged", "electricity1_cost",
             "electricity2_cost", "total_cost", "gas", "gas_cost", "fixed_cost",
             *(f"energy_supplier_price_{name}" for name in (
                 "electricity_delivered_1", "electricity_delivered_2",
                 "electricity_returned_1", "electricity_returned_2", "gas", "fixed_daily_cost"))]
    properties: Schema = {"day": _DAY, **{name: {"type": "number"} for name in names}}
    return {"oneOf": [
        {"type": "object", "required": list(properties), "additionalProperties": False,
         "properties": properties},
        {"type": "string", "pattern": r"^No electricity readings found for: \d{4}-\d{2}-\d{2}$",
         "description": "today has no readings yet"}]}


def _electricity_live() -> Schema:
    properties: Schema = {
        "timestamp": _TIME_OUT,
        "currently_delivered": _nullable({"type": "integer", "description": "watts"}),
        "currently_returned": _nullable({"type": "integer", "description": "watts"}),
        "cost_per_hour": _nullable(_decimal_out(2)),
        "tariff_name": _nullable({"type": "string"})}
    return {"oneOf": [
        {"type": "object", "maxProperties": 0, "description": "no readings yet"},
        {"type": "object", "required": list(properties), "additionalProperties": False,
         "properties": properties}]}


def _gas_live() -> Schema:
    properties: Schema = {
        "timestamp": _TIME_OUT,
        "currently_delivered": {"type": "number", "description": "m³ since the reading before"},
        "cost_per_interval": {**_decimal_out(2), "description": "left out when no contract "
                              "holds today"}}
    return {"oneOf": [
        {"type": "object", "maxProperties": 0, "description": "no gas readings yet"},
        {"type": "object", "required": ["timestamp", "currently_delivered"],
         "additionalProperties": False, "properties": properties}]}


def _components() -> Schema:
    field_errors: Schema = {
        "type": "object", "minProperties": 1,
        "additionalProperties": {"type": "array", "minItems": 1, "items": {"type": "string"}},
        "description": "DRF's validation errors: each field (or `non_field_errors`, or a "
                       "filter) with its messages"}
    detail: Schema = {"type": "object", "required": ["detail"], "additionalProperties": False,
                      "properties": {"detail": {"type": "string"}}}
    limit_header = {"required": False, "schema": {"type": "integer", "minimum": 0},
                    "description": "the key's rate limit (on every answer to a known key)"}
    return {
        "securitySchemes": {
            "authKey": {"type": "apiKey", "in": "header", "name": "X-AUTHKEY",
                        "description": "a meterhub API key"},
            "token": {"type": "apiKey", "in": "header", "name": "Authorization",
                      "description": "`Token <key>`, a meterhub API key"}},
        "headers": {
            "X-RateLimit-Limit": {**limit_header, "description": "requests per period"},
            "X-RateLimit-Remaining": {**limit_header, "description": "requests left"},
            "X-RateLimit-Reset": {**limit_header,
                                  "description": "seconds until the whole allowance is back"},
            "Retry-After": {"required": True, "schema": {"type": "integer", "minimum": 1},
                            "description": "seconds until the next request is allowed"}},
        "schemas": {
            "FieldErrors": field_errors, "Detail": detail,
            "Reading": _reading(), "ReadingPage": _page("Reading"),
            "NewReading": _new_reading(form=False), "NewReadingForm": _new_reading(form=True),
            "MeterStatistics": _meter_statistics(patch=False),
            "MeterStatisticsPatch": _meter_statistics(patch=True),
            "Price": _price(new=False), "PricePage": _page("Price"),
            "NewPrice": _price(new=True),
            "DayStatistics": _day_statistics(), "DayStatisticsPage": _page("DayStatistics"),
            "HourStatistics": _hour_statistics(),
            "HourStatisticsPage": _page("HourStatistics"),
            "Today": _today(), "ElectricityLive": _electricity_live(), "GasLive": _gas_live()},
        "responses": {
            "Denied": _json_answer(
                "no key, an unknown key, or one whose scope is too low: "
                '`{"detail": "Invalid auth key"}`', _ref("Detail")),
            "Throttled": {**_json_answer(
                "over the key's rate limit: `Request was throttled. Expected available in N "
                "seconds.`", _ref("Detail")),
                "headers": {**_LIMIT_HEADERS, "Retry-After": _ref("Retry-After", "headers")}},
            "Invalid": _json_answer(
                "field errors, or `{\"detail\": \"JSON parse error\"}` for a body that is not "
                "JSON", {"anyOf": [_ref("FieldErrors"), _ref("Detail")]}),
            "TooLarge": _json_answer(f"a body over {MAX_BODY} bytes, refused unread",
                                     _ref("Detail")),
        },
    }


_V2_ERRORS: Schema = {"403": _ref("Denied", "responses"), "429": _ref("Throttled", "responses")}


def _body(schema: str, form_schema: str | None = None) -> Schema:
    return {"required": True, "content": {
        JSON: {"schema": _ref(schema)}, FORM: {"schema": _ref(form_schema or schema)}},
        "description": f"JSON or a form (also multipart), at most {MAX_BODY} bytes"}


def _text(description: str, body: str, *, limited: bool = True) -> Schema:
    out: Schema = {"description": description, "content": {HTML: {"schema": {
        "type": "string", "const": body}}}}
    if limited:
        out["headers"] = _LIMIT_HEADERS
    return out


def _v1_push() -> Schema:
    throttled = _text("over the key's rate limit", "Too many requests")
    throttled["headers"] = {**_LIMIT_HEADERS, "Retry-After": _ref("Retry-After", "headers")}
    return {"post": {
        "tags": ["v1"], "operationId": "pushTelegram",
        "summary": "Push a raw P1 telegram (write scope)",
        "description": "As DSMR-reader's datalogger API v1: the telegram as the form field "
                       "`telegram`; answers are text labelled `text/html; charset=utf-8`. A "
                       "replayed telegram changes nothing. Other methods answer 405 with "
                       "`Allow: POST` and an empty body.",
        "requestBody": {"required": True, "content": {FORM: {"schema": {
            "type": "object", "required": ["telegram"],
            "properties": {"telegram": {"type": "string",
                                        "description": "the whole telegram, `/` to `!CRC`"}}}}},
            "description": f"a form (also multipart), at most {MAX_BODY} bytes"},
        "responses": {
            "201": _text("stored (committed with the pushes that came with it)", ""),
            "400": _text("no `telegram` field, or an empty one", "Invalid data"),
            "403": _text("no key, an unknown key, or one without write scope",
                         "Invalid auth key"),
            "413": _text(f"a body over {MAX_BODY} bytes, refused unread",
                         f"Request body too large (at most {MAX_BODY} bytes)"),
            "429": throttled,
            "500": _text("the telegram was rejected: a bad CRC, cut short, stamped more than "
                         "24 h ahead, or a register no reading holds (nothing is stored; the "
                         "rejection is counted in the meter statistics)",
                         "Failed to parse telegram")}}}


def _operation(operation_id: str, summary: str, responses: Schema, *,
               parameters: list[Schema] | None = None, body: Schema | None = None,
               description: str | None = None) -> Schema:
    out: Schema = {"tags": ["v2"], "operationId": operation_id, "summary": summary}
    if description:
        out["description"] = description
    if parameters:
        out["parameters"] = parameters
    if body:
        out["requestBody"] = body
    out["responses"] = {**responses, **_V2_ERRORS}
    return out


def _paths() -> Schema:
    invalid, too_large = _ref("Invalid", "responses"), _ref("TooLarge", "responses")
    filters_invalid = _json_answer("a filter that is not a date or time, or a naive time "
                                   "the meter's zone repeats or skips", _ref("FieldErrors"))
    reading_link = {"operationId": "listReadings",
                    "parameters": {"timestamp__gte": "$response.body#/timestamp",
                                   "timestamp__lte": "$response.body#/timestamp"},
                    "description": "the reading just stored, found by its time"}
    price_links = {
        "RemovePrice": {"operationId": "removePrice",
                        "parameters": {"price_id": "$response.body#/id"},
                        "description": "remove the contract just added"},
        "ListFromStart": {"operationId": "listPrices",
                          "parameters": {"start__gte": "$response.body#/start",
                                         "start__lte": "$response.body#/start"},
                          "description": "the contracts starting that day"}}
    return {
        V1_PUSH: _v1_push(),
        f"{V2}/datalogger/dsmrreading": {
            "get": _operation(
                "listReadings", "Readings (read scope)",
                {"200": _json_answer("a page of readings", _ref("ReadingPage")),
                 "400": filters_invalid},
                parameters=[_query("timestamp", _EXACT_TIME_FILTER),
                            _query("timestamp__gte", _LOCAL_TIME_FILTER),
                            _query("timestamp__lte", _LOCAL_TIME_FILTER),
                            *_paging(["timestamp", "-timestamp"])]),
            "post": _operation(
                "createReading", "Store one reading (write scope)",
                {"201": {**_json_answer("stored; the reading as the list shows it",
                                        _ref("Reading")),
                         "links": {"ReadBack": reading_link}},
                 "400": invalid, "413": too_large},
                body=_body("NewReading", "NewReadingForm"),
                description="Checked whole before anything is written: DRF's field errors "
                            "with DSMR-reader's model limits.")},
        f"{V2}/datalogger/meter-statistics": {
            "get": _operation("getMeterStatistics", "The meter's status (read scope)",
                              {"200": _json_answer("the singleton", _ref("MeterStatistics"))}),
            "patch": _operation(
                "patchMeterStatistics", "Set fields of the meter's status (write scope)",
                {"200": _json_answer("the whole singleton after the update",
                                     _ref("MeterStatistics")),
                 "400": invalid, "413": too_large},
                body=_body("MeterStatisticsPatch"))},
        f"{V2}/consumption/electricity-live": {"get": _operation(
            "getElectricityLive", "Current power and its cost (read scope)",
            {"200": _json_answer("the newest reading's power, or `{}`",
                                 _ref("ElectricityLive"))})},
        f"{V2}/consumption/gas-live": {"get": _operation(
            "getGasLive", "The newest gas reading's rise and its cost (read scope)",
            {"200": _json_answer("or `{}`", _ref("GasLive"))})},
        f"{V2}/consumption/today": {"get": _operation(
            "getToday", "Today so far, with costs and prices (read scope)",
            {"200": _json_answer("today's statistics, or a sentence without readings",
                                 _ref("Today"))})},
        prices.PATH: {
            "get": _operation(
                "listPrices", "Energy contracts (read scope)",
                {"200": _json_answer("a page of contracts", _ref("PricePage")),
                 "400": filters_invalid},
                parameters=[*(_query(name, _DATE_FILTER) for name in prices.FILTERS),
                            *_paging(["start", "-start", "end", "-end"])]),
            "post": _operation(
                "addPrice", "Add a contract (write scope; a meterhub extension)",
                {"201": {**_json_answer("added; the contract with its id", _ref("Price")),
                         "links": price_links},
                 "400": invalid, "413": too_large},
                body=_body("NewPrice"))},
        f"{prices.PATH}/{{price_id}}": {"delete": _operation(
            "removePrice", "Remove a contract added through the API (write scope)",
            {"204": {"description": "removed", "headers": _LIMIT_HEADERS},
             "404": _json_answer('no such contract: `{"detail": "Not found."}`',
                                 _ref("Detail")),
             "409": _json_answer("a contract of meterhub.toml: change it there",
                                 _ref("Detail"))},
            parameters=[{"name": "price_id", "in": "path", "required": True,
                         "schema": {"type": "string"},
                         "description": "the contract's id (anything else is 404)"}])},
        f"{V2}/statistics/day": {"get": _operation(
            "listDayStatistics", "Day statistics with costs, days before today (read scope)",
            {"200": _json_answer("a page of days", _ref("DayStatisticsPage")),
             "400": _json_answer("a filter that is not a date", _ref("FieldErrors"))},
            parameters=[_query("day", _EXACT_DATE_FILTER), _query("day__gte", _DATE_FILTER),
                        _query("day__lte", _DATE_FILTER),
                        *_paging(["day", "-day"])])},
        f"{V2}/statistics/hour": {"get": _operation(
            "listHourStatistics", "Hour statistics, days before today (read scope)",
            {"200": _json_answer("a page of hours", _ref("HourStatisticsPage")),
             "400": filters_invalid},
            parameters=[_query("hour_start", _EXACT_TIME_FILTER),
                        _query("hour_start__gte", _LOCAL_TIME_FILTER),
                        _query("hour_start__lte", _LOCAL_TIME_FILTER),
                        *_paging(["hour_start", "-hour_start"])])},
        f"{V2}/application/version": {"get": _operation(
            "getVersion", "The DSMR-reader version these paths answer like (read scope)",
            {"200": _json_answer("the version", {
                "type": "object", "required": ["version"], "additionalProperties": False,
                "properties": {"version": {"type": "string",
                                           "const": readings.VERSION}}})})},
    }


def document(settings: DsmrSettings) -> dict[str, Any]:
    """The OpenAPI document of the DSMR-reader paths for the meter ``settings`` describe."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "meterhub: DSMR-reader-compatible API", "version": __version__,
            "description": (
                f"The paths of DSMR-reader {readings.VERSION}'s API that meterhub answers, "
                f"for the meter `{settings.device}` in zone `{settings.timezone}` (times "
                "are shown and read in it). Keys are meterhub API keys in `X-AUTHKEY` or "
                "`Authorization: Token <key>`: reading needs read scope, writing write "
                "scope. Every request of a known key counts against its rate limit, and its "
                "answers carry `X-RateLimit-*`. Every v2 GET also answers HEAD, as Django "
                "REST framework does: the GET's status and headers (`Content-Length` too), "
                "no body. Filters of one list combine (AND). Any other method a path does "
                "not list answers 405 with `Allow` (v1, HEAD included: an empty body). "
                "meterhub's own API is described at /openapi.json.")},
        "security": [{"authKey": []}, {"token": []}],
        "tags": [{"name": "v1", "description": "the datalogger push, answered in text"},
                 {"name": "v2", "description": "JSON, as Django REST framework answers"}],
        "paths": _paths(),
        "components": _components(),
    }


def install(app: FastAPI, settings: DsmrSettings) -> None:
    """Serve `document` at `SPEC_PATH` (no key needed, as /openapi.json)."""
    spec = document(settings)

    @get_route(app, SPEC_PATH)
    async def dsmr_openapi(request: Request) -> Response:
        return json_response(spec)


__all__ = ["SPEC_PATH", "document", "install"]

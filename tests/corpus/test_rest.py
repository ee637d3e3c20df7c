"""The REST family: POST /api/v1/readings (JSON and CSV), DELETE /api/v1/readings, POST
/api/v1/keys and every GET, fed the corpus on a real uvicorn over a DuckDB file.

Each refusal is a 400 (413, 415) problem whose detail names the item or row and the field
and says what is wrong; the store is unchanged (every table, row for row); the read paths
still answer. Names that only look like attacks are stored and read back byte for byte.
"""

from __future__ import annotations

import base64
import csv
import io
import re
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest

import meterhub
from meterhub.api.push import MAX_PUSH_ROWS, PUSH_LIMITS
from meterhub.model import CONTROL_PATTERN, MAX_ID_CHARS
from tests.api.conftest import sample_frame
from tests.corpus import values as v
from tests.corpus.kit import (
    REST_QUICK,
    Served,
    Snapshot,
    changes,
    refused,
    serve,
    snapshot,
    start_reads,
)

READINGS = "/api/v1/readings"
#: a valid reading of a device not in the store: a batch that holds it and a bad item must
#: leave no trace of it
FIRST = {"device": "corpus-first", "channel": "temp", "ts": "2024-10-26T00:00:00Z",
         "value": 1.0, "unit": "degC", "kind": "instant"}
#: the item each case spoils one field of: energy in MWh (so a huge value overflows once
#: converted to the channel's kWh)
ITEM = {"source": "corpus", "device": "corpus-meter", "channel": "energy",
        "ts": "2024-10-26T00:15:00Z", "value": 2.5, "unit": "MWh", "kind": "delta",
        "quantity": "energy", "quality": "ok", "seq": 7, "error_code": "E1",
        "validated": True}
#: the query values of times and of ids (as `values.QUERY_TEXTS` names them)
TIME_VALUES = ("year 1 +01:00", "9999-12-31 -05:00", "1799 last second", "2200",
               "naive 1800", "DST gap", "2024-02-30", "empty", "now", "text NUL",
               "60,000 chars")
ID_VALUES = ("text NUL", "text LF", "text NEL", "empty", "60,000 chars", "injection SQL",
             "injection percent NUL")


@pytest.fixture(scope="module")
def rest(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    path = tmp_path_factory.mktemp("corpus-rest") / "rest.duckdb"
    with meterhub.open(f"duckdb:///{path}") as hub:
        hub.write(sample_frame(), source="lab")
        hub.store.record_sync("lab", "ws1", readings=1)
    with serve(path) as served:
        start_reads(served)
        yield served


def names(detail: str, field: str) -> bool:
    """Whether a detail names the field (ts is "timestamp" where its text is wrong)."""
    return field in detail or (field == "ts" and "timestamp" in detail)


IDS = ("source", "device", "channel", "quantity")


def id_problem(text: str) -> str:
    """What a refusal of ``text`` as an id says is wrong with it."""
    if len(text) > MAX_ID_CHARS:
        return "characters long"
    if re.search(CONTROL_PATTERN, text):  # also a line break alone: not "empty"
        return "holds the control character"
    return "is empty"


def unchanged(rest: Served, before: Snapshot) -> None:
    """Nothing was written, and the REST reads still answer."""
    assert changes(before, snapshot(rest.hub)) == {}
    rest.sweep(REST_QUICK)


# -- POST /api/v1/readings, JSON: one field of the second item spoiled ----------------------

def _item_cases() -> list[Any]:
    found = []

    def add(field: str, chosen: list[tuple[str, Any]]) -> None:
        found.extend(pytest.param(field, value, id=f"{field}={name}") for name, value in chosen)

    add("ts", v.cases(v.TIMES, skip=("naive 1800", "DST gap")))  # naive: UTC, kept
    # 5e-324 and 10**30 MWh are finite in kWh: stored (test_edge_values_are_stored_exactly)
    add("value", v.cases(v.NUMBERS, v.NON_FINITE, skip=("5e-324", "10**30"))
        + v.cases(v.TYPES) + [("empty", "")])
    add("device", v.cases(v.TEXTS, v.TYPES))
    # the other ids follow the device's rule: the values that differ in kind
    some = ("NUL", "NEL", "only LF", "1M chars", "lone surrogate", "object", "true")
    add("channel", v.cases(v.TEXTS, v.TYPES, only=(*some, "empty", "null")))
    add("quantity", v.cases(v.TEXTS, v.TYPES, only=some))  # optional: empty is none
    add("source", v.cases(v.TEXTS, v.TYPES, only=some))  # blank: the default, "api"
    add("unit", v.cases(v.TEXTS, v.TYPES, {"junk": "furlongs per fortnight",
                                           "exponent": "kWh**99999999",
                                           "other quantity": "degC"}))
    # free text keeps tab and line breaks
    add("error_code", [*v.cases(v.TEXTS, skip=("CR", "LF", "only LF", "empty")),
                       ("object", {}), ("true", True)])
    add("kind", [("gauge", "gauge"), ("NUL", "delta\x00"), ("true", True), ("array", [])])
    add("quality", [("bad", "bad"), ("NEL", "ok\u0085"), ("number", 1)])
    add("seq", [("fraction", 1.5), ("beyond 64 bits", 2.0**64), ("text NaN", "NaN"),
                ("text 0x10", "0x10"), ("object", {})])
    add("validated", [("maybe", "maybe"), ("number 2", 2), ("array", [True])])
    return found


RAW_NAMES = {id(value): name for name, value in (v.NUMBERS | v.NON_FINITE | v.TEXTS).items()
             if isinstance(value, v.Raw)}
#: what a detail says of a body that is not JSON at all (orjson's words)
NOT_JSON = {"-1.8e308": "infinity", "10**400": "infinity", "token NaN": "unexpected character",
            "token Infinity": "unexpected character", "token -Infinity": "no digit after sign",
            "lone surrogate": "surrogate", "invalid UTF-8": "UTF-8"}


@pytest.mark.parametrize(("field", "value"), _item_cases())
def test_push_json_refuses_the_batch_and_names_the_item(rest: Served, field: str,
                                                        value: Any) -> None:
    before = snapshot(rest.hub)
    body = v.dumps([FIRST, {**ITEM, field: value}])
    response = rest.call("POST", READINGS, content=body,
                         headers={"Content-Type": "application/json"})
    if isinstance(value, v.Raw):  # a body orjson does not read
        refused(response, "the body is not JSON", NOT_JSON[RAW_NAMES[id(value)]])
    else:
        detail = refused(response, "nothing was written: item 1: ")
        assert names(detail, field), detail
        assert response.json()["errors"][0]["index"] == 1, detail
        if field in IDS and isinstance(value, str):  # and says what is wrong with it
            assert id_problem(value) in detail, detail
    unchanged(rest, before)


def _bodies() -> list[Any]:
    item = orjson.dumps(FIRST)
    many = b"[" + b",".join([item] * (MAX_PUSH_ROWS + 1)) + b"]"
    over = b"[" + item + b"," + b" " * (PUSH_LIMITS["application/json"] - 2 * len(item) - 2) \
        + item + b"]"
    over += b" " * (PUSH_LIMITS["application/json"] + 1 - len(over))
    return [
        pytest.param(b"", 400, ["not JSON", "empty"], id="empty"),
        pytest.param(b"null", 400, ["must be a JSON array"], id="null"),
        pytest.param(b'{"device": "d"}', 400, ["must be a JSON array"], id="object"),
        pytest.param(b"[{}]", 400, ["item 0", "empty object"], id="empty item"),
        pytest.param(b"[{}, {}, {}]", 400, ["item 0", "empty object"], id="empty items"),
        pytest.param(b"[null]", 400, ["item 0", "expected an object"], id="null item"),
        pytest.param(b"[" + item + b", 7]", 400, ["item 1", "expected an object"],
                     id="number item"),
        pytest.param(b"[" + item + b", [1, 2]]", 400, ["item 1", "expected an object"],
                     id="array item"),
        pytest.param(b"[" + item + b",,]", 400, ["not JSON"], id="double comma"),
        pytest.param(b"[" + item + b"] trailing", 400, ["not JSON"], id="trailing text"),
        pytest.param(b"[" * 100_000, 400, ["not JSON", "depth"], id="100,000 ["),
        pytest.param(b'{"a":' * 100_000, 400, ["must be a JSON array"], id="100,000 {"),
        pytest.param(b"[" + b'{"a":' * 100_000, 400, ["not JSON", "depth"],
                     id="[ and 100,000 {"),
        pytest.param(b"\xff\xfe", 400, ["not JSON", "UTF-8"], id="invalid UTF-8"),
        pytest.param(b"\xef\xbb\xbf[" + item + b"]", 400, ["not JSON", "BOM"],
                     id="UTF-8 BOM"),
        pytest.param(b"[" + item.replace(b'"device"', b'"device\\ud800"') + b"]", 400,
                     ["not JSON", "surrogate"], id="lone surrogate in a key"),
        pytest.param(over, 413, ["over the limit", "8 MB"], id="one byte over 8 MB"),
        pytest.param(many, 413, ["over the limit", "60,000 readings"], id="60,001 items"),
    ]


@pytest.mark.parametrize(("body", "status", "words"), _bodies())
def test_push_json_bodies_that_are_no_batch(rest: Served, body: bytes, status: int,
                                            words: list[str]) -> None:
    before = snapshot(rest.hub)
    response = rest.call("POST", READINGS, content=body,
                         headers={"Content-Type": "application/json"})
    refused(response, *words, status=status)
    unchanged(rest, before)


def test_push_a_body_one_byte_over_the_limit_sent_without_a_length(rest: Served) -> None:
    """Chunked: no Content-Length to refuse it by, so it is cut off as it arrives."""
    before = snapshot(rest.hub)
    item = orjson.dumps(FIRST)

    def chunks() -> Iterator[bytes]:
        yield b"[" + item
        sent = len(item) + 1
        while sent < PUSH_LIMITS["application/json"] - 65_536:
            yield b" " * 65_536
            sent += 65_536
        yield b" " * (PUSH_LIMITS["application/json"] - sent) + b"]"  # the byte over

    response = rest.call("POST", READINGS, content=chunks(),
                         headers={"Content-Type": "application/json"})
    refused(response, "over the limit", status=413)
    unchanged(rest, before)


@pytest.mark.parametrize("media", ["application/xml", "text/plain", "multipart/form-data",
                                   "application/x-www-form-urlencoded"])
def test_push_of_another_media_type_is_415(rest: Served, media: str) -> None:
    before = snapshot(rest.hub)
    response = rest.call("POST", READINGS, content=orjson.dumps([FIRST]),
                         headers={"Content-Type": media})
    refused(response, "cannot read", "application/json", "text/csv", status=415)
    unchanged(rest, before)


# -- POST /api/v1/readings, CSV: one field of the second row spoiled ------------------------

CSV_COLUMNS = ["source", "device", "channel", "ts", "value", "unit", "kind", "quantity",
               "quality", "seq", "error_code", "validated"]


def csv_body(rows: list[dict[str, Any]]) -> bytes:
    out = io.StringIO()
    writer = csv.DictWriter(out, CSV_COLUMNS, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue().encode("utf-8", "surrogatepass")


def _row_cases() -> list[Any]:
    found = []
    text_values = {name: value for name, value in v.QUERY_TEXTS.items()}

    def add(field: str, names: list[str], extra: dict[str, str] | None = None) -> None:
        chosen = {**{n: text_values[n] for n in names}, **(extra or {})}
        found.extend(pytest.param(field, value, id=f"{field}={name}")
                     for name, value in chosen.items())

    add("ts", [n for n in v.TIMES_REFUSED if n != "empty"] + ["text NaN"], {
        "number": "1729900800", "true": "true"})
    add("value", ["text 1e308", "text -1.8e308", "text 1e400", "text 0x10", "text 1_000",
                  "text 10**400", "text NaN", "text nan", "text Infinity", "text -inf"],
        {"true": "true"})
    for name in ("device", "channel"):
        add(name, ["text NUL", "text CR", "text LF", "text DEL", "text NEL"],
            {"1M chars": "x" * 1_000_000, "blank": "   "})
    add("unit", ["text NUL", "text NaN"], {"1M chars": "x" * 1_000_000})
    add("error_code", ["text NUL", "text DEL", "text NEL"], {"1M chars": "x" * 1_000_000})
    add("seq", ["text 0x10", "text 1e400"])  # "NaN" in CSV: a missing number, as ""
    return found


@pytest.mark.parametrize(("field", "value"), _row_cases())
def test_push_csv_refuses_the_batch_and_names_the_row(rest: Served, field: str,
                                                      value: str) -> None:
    before = snapshot(rest.hub)
    response = rest.call("POST", READINGS, content=csv_body([FIRST, {**ITEM, field: value}]),
                         headers={"Content-Type": "text/csv"})
    detail = refused(response, "nothing was written: row 2 (line 3): ")
    if value.startswith("a\r"):  # a CR ends a row even in quotes (pyarrow's CSV reader)
        assert "columns" in detail, detail
    else:
        assert names(detail, field), detail
    unchanged(rest, before)


def _csv_bodies() -> list[Any]:
    header = ",".join(CSV_COLUMNS).encode()
    good = csv_body([FIRST])
    over = good + b"\n" * (PUSH_LIMITS["text/csv"] + 1 - len(good))
    return [
        pytest.param(b"", 400, ["empty"], id="empty"),
        pytest.param(b"\xff\xfe" + good, 400, ["not readable CSV", "UTF-8"],
                     id="invalid UTF-8 header"),
        pytest.param(good + b"corpus,\xff\xfe,temp,2024-10-26T01:00:00Z,1,degC\n", 400,
                     ["not readable CSV", "UTF-8"], id="invalid UTF-8 row"),
        pytest.param(good + b"corpus,d,t\n", 400, ["row 2 (line 3)", "columns"], id="ragged"),
        pytest.param(good + b'"corpus,d,t,2024-10-26T01:00:00Z,1,degC\n', 400,
                     ["columns"], id="unterminated quote"),
        pytest.param(b"device,channel\nd,c\n", 400, ["missing column"], id="columns missing"),
        pytest.param(header + b"\n" + b"\x00" * 64 + b"\n", 400, ["row 1 (line 2)"],
                     id="NUL bytes"),
        pytest.param(over, 413, ["over the limit", "4 MB"], id="one byte over 4 MB"),
    ]


@pytest.mark.parametrize(("body", "status", "words"), _csv_bodies())
def test_push_csv_bodies_that_are_no_batch(rest: Served, body: bytes, status: int,
                                           words: list[str]) -> None:
    before = snapshot(rest.hub)
    response = rest.call("POST", READINGS, content=body, headers={"Content-Type": "text/csv"})
    refused(response, *words, status=status)
    unchanged(rest, before)


# -- DELETE /api/v1/readings: bounds that match no stored row, or are refused ----------------

def _delete_cases() -> list[Any]:
    found = []
    times = {n: v.QUERY_TEXTS[n] for n in (*TIME_VALUES, "year 1", "9999-12-31")}
    # bounds may be any year from 1 to 9999 (rows stored out there before writes were
    # checked can be deleted): the other bound keeps the range empty of stored rows
    for name, value in times.items():
        found.append(pytest.param({"device": "m1", "start": value,
                                   "end": "1800-01-01T00:00:00Z"}, id=f"start={name}"))
        found.append(pytest.param({"device": "m1", "start": "2199-12-31T00:00:00Z",
                                   "end": value}, id=f"end={name}"))
    for name, value in v.cases(v.QUERY_TEXTS, only=("text NUL", "60,000 chars", "empty",
                                                   "injection SQL", "injection path")):
        found.append(pytest.param({"device": value}, id=f"device={name}"))
        found.append(pytest.param({"device": "m1", "channel": value}, id=f"channel={name}"))
        found.append(pytest.param({"device": "m1", "start": "2199-12-31T00:00:00",
                                   "tz": value}, id=f"tz={name}"))
    for name, value in (("maybe", "maybe"), ("2", "2"), ("empty", "")):
        found.append(pytest.param({"device": "m1", "start": "2199-12-31T00:00:00Z",
                                   "outside_range": value}, id=f"outside_range={name}"))
    return found


WORDS = {"start": ("start",), "end": ("start", "end"), "tz": ("time zone",),
         "device": ("device",), "channel": ("channel",), "outside_range": ("outside_range",)}


@pytest.mark.parametrize("query", _delete_cases())
def test_delete_with_hostile_bounds_deletes_nothing(rest: Served, query: dict[str, str]
                                                    ) -> None:
    before = snapshot(rest.hub)
    response = rest.call("DELETE", READINGS, params=query)
    if response.status_code == 200:
        assert response.json() == {"deleted": 0}
    else:
        hostile = next(name for name in ("outside_range", "tz", "channel", "end", "start",
                                         "device")
                       if (name in query and name != "device")
                       or (name == "device" and query["device"] != "m1"))
        detail = refused(response, status=response.status_code)
        assert response.status_code in (400, 404), detail
        assert any(word in detail for word in WORDS[hostile]), detail
    unchanged(rest, before)


# -- POST /api/v1/keys -----------------------------------------------------------------------

def _key_cases() -> list[Any]:
    found = []
    for name, value in v.cases(v.TEXTS, v.TYPES, skip=("1M chars",)):
        # text JSON cannot carry (a lone surrogate, invalid UTF-8) spoils the whole body
        found.append(pytest.param({"name": value}, "body" if isinstance(value, v.Raw)
                                  else "name", id=f"name={name}"))
    found.append(pytest.param({"name": "x" * 1_000_000}, "name", id="name=1M chars"))
    found.append(pytest.param({"name": "x" * 201}, "name", id="name=201 chars"))
    for name, value in v.cases(v.QUERY_TEXTS, only=("empty", "text NaN", "text 10**400",
                                                   "60,000 chars", "-1", "0", "text NUL")):
        found.append(pytest.param({"name": "corpus-k", "scope": value}, "scope",
                                  id=f"scope={name}"))
        found.append(pytest.param({"name": "corpus-k", "rate_limit": value}, "rate limit",
                                  id=f"rate_limit={name}"))
    for name, value in (("5000 digits", "9" * 5000 + "/minute"),
                        ("5000-digit period", "1/" + "9" * 5000 + "minute"),
                        ("zero", "0/minute"), ("number", 5), ("object", {})):
        found.append(pytest.param({"name": "corpus-k", "rate_limit": value}, "rate",
                                  id=f"rate_limit={name}"))
    for name, body in (("empty", b""), ("null", b"null"), ("array", b"[]"),
                       ("100,000 [", b"[" * 100_000), ("invalid UTF-8", b"\xff\xfe"),
                       ("token NaN", b'{"name": NaN}')):
        found.append(pytest.param(v.Raw(body), "body", id=f"body={name}"))
    return found


@pytest.mark.parametrize(("body", "words"), _key_cases())
def test_create_key_refuses_and_says_which_field(rest: Served, body: Any, words: str) -> None:
    before = snapshot(rest.hub)
    response = rest.call("POST", "/api/v1/keys", content=v.dumps(body),
                         headers={"Content-Type": "application/json"})
    detail = refused(response)
    assert words in detail, detail
    assert detail != "There was an error parsing the body"  # FastAPI's: says not why
    unchanged(rest, before)


# -- every GET, each query parameter given hostile values ------------------------------------

CURSORS = {
    "empty": "", "junk": "x", "percent": "%FF%FE",
    "not a key": base64.urlsafe_b64encode(b'{"a": 1}').decode(),
    "numbers": base64.urlsafe_b64encode(b"[1, 2, 3]").decode(),
    "huge ts": base64.urlsafe_b64encode(b'["m1", "energy", ' + str(10**30).encode() + b"]"
                                        ).decode(),
    "NaN ts": base64.urlsafe_b64encode(b'["m1", "energy", NaN]').decode(),
    "60,000 chars": "A" * 60_000,
}
#: per parameter: the values it gets, and the words one of which its refusal says
PARAMETERS: dict[str, tuple[dict[str, str], tuple[str, ...]]] = {
    "start": ({n: v.QUERY_TEXTS[n] for n in TIME_VALUES}, ("start",)),
    "end": ({n: v.QUERY_TEXTS[n] for n in TIME_VALUES}, ("end",)),
    "tz": ({"Mars": "Mars/Olympus", "path": "../../etc/passwd", "absolute": "/etc/localtime",
            **{n: v.QUERY_TEXTS[n] for n in ("empty", "text NUL", "text 10**400",
                                            "60,000 chars")}}, ("time zone",)),
    "every": ({n: v.QUERY_TEXTS[n] for n in ("empty", "0", "-1", "text 1e308", "text NaN",
                                            "text NUL", "60,000 chars")},
              ("bucket size",)),
    "fn": ({n: v.QUERY_TEXTS[n] for n in ("empty", "text NUL", "injection SQL",
                                         "60,000 chars")}, ("function",)),
    "unit": ({"exponent": "kWh**99999999", "infinite exponent": "m**-1e400",
              "division by zero": "1/0", "other quantity": "MWh",
              **{n: v.QUERY_TEXTS[n] for n in ("empty", "text NaN", "text NUL",
                                              "60,000 chars")}}, ("unit", "convert")),
    "limit": ({"over the maximum": "5000001", "fraction": "1.5",
               **{n: v.QUERY_TEXTS[n] for n in ("empty", "0", "-1", "text 1e308", "text NaN",
                                               "text 10**400")}}, ("limit",)),
    "cursor": (CURSORS, ("cursor",)),
    "format": ({"xml": "xml", "upper": "JSON", **{n: v.QUERY_TEXTS[n] for n in (
        "empty", "text NUL")}}, ("format",)),
    "device": ({n: v.QUERY_TEXTS[n] for n in ID_VALUES}, ("device",)),
    "channel": ({n: v.QUERY_TEXTS[n] for n in ID_VALUES}, ("channel",)),
    "source": ({n: v.QUERY_TEXTS[n] for n in ID_VALUES}, ("source",)),
    "quantity": ({n: v.QUERY_TEXTS[n] for n in ID_VALUES}, ("quantity",)),
    "after": ({n: v.QUERY_TEXTS[n] for n in ("text NUL", "60,000 chars")}, ("after",)),
}
GETS = {
    "/api/v1/readings": ("start", "end", "tz", "unit", "limit", "cursor", "format", "device",
                         "channel", "source"),
    "/api/v1/aggregates": ("start", "end", "tz", "every", "fn", "unit", "format", "device",
                           "channel"),
    "/api/v1/gaps": ("start", "end", "tz", "device", "channel"),
    "/api/v1/devices": ("source",),
    "/api/v1/channels": ("source", "device", "quantity"),
    "/api/v1/sources": ("after",),  # it takes none: unknown ones are ignored
}


def _get_cases() -> list[Any]:
    return [pytest.param(path, param, value, id=f"{path.rsplit('/', 1)[1]}?{param}={name}")
            for path, params in GETS.items() for param in params
            for name, value in PARAMETERS[param][0].items()]


@pytest.mark.parametrize(("path", "param", "value"), _get_cases())
def test_get_with_a_hostile_query_value(rest: Served, path: str, param: str,
                                        value: str) -> None:
    before = snapshot(rest.hub)
    query = {param: value}
    if param in ("start", "end") and path != "/api/v1/gaps":
        query["tz"] = "Europe/Amsterdam"  # naive times read there
    response = rest.call("GET", path, params=query)
    if response.status_code >= 400:
        detail = refused(response, status=response.status_code)
        assert response.status_code in (400, 404), detail
        assert any(word in detail for word in PARAMETERS[param][1]), detail
    else:
        assert response.status_code == 200
    unchanged(rest, before)


@pytest.mark.parametrize("query", [b"start=%FF%FE", b"device=%ED%A0%80", b"tz=%00",
                                   b"%FF=1", b"start=2024-10-26&start=0001-01-01"])
def test_get_with_undecodable_query_bytes(rest: Served, query: bytes) -> None:
    for path in GETS:
        url = httpx.URL(rest.base + path).copy_with(query=query)
        response = rest.client.get(url)
        assert response.status_code in (200, 400, 404), (path, response.text[:300])
        if response.status_code != 200:
            refused(response, status=response.status_code)
    rest.sweep(REST_QUICK)


# -- what only looks like an attack is stored as it is ---------------------------------------

@pytest.mark.parametrize(("name", "text"), v.cases(v.INJECTIONS))
def test_injection_looking_names_are_stored_and_read_back_exactly(rest: Served, name: str,
                                                                  text: str) -> None:
    item = {"source": text, "device": text, "channel": text, "ts": "2024-10-26T00:00:00Z",
            "value": 1.25, "unit": "degC", "quantity": text, "error_code": text,
            "quality": "ok"}
    pushed = rest.call("POST", READINGS, json=[item])
    assert pushed.status_code == 200, pushed.text
    assert (pushed.json()["devices"], pushed.json()["channels"]) == ([text], [text])
    as_csv = rest.call("POST", READINGS, content=csv_body([{**item, "ts": "2024-10-26T01:00:00Z"}]),
                       headers={"Content-Type": "text/csv"})
    assert as_csv.status_code == 200, as_csv.text
    query = {"device": text, "channel": text, "source": text}
    rows = rest.call("GET", READINGS, params=query).json()["data"]
    assert [(r["source"], r["device"], r["channel"], r["error_code"], r["value"])
            for r in rows] == [(text, text, text, text, 1.25)] * 2
    table = rest.call("GET", READINGS, params={**query, "format": "csv"})
    assert table.status_code == 200
    parsed = list(csv.DictReader(io.StringIO(table.content.decode("utf-8"))))
    assert [(r["source"], r["device"], r["channel"], r["error_code"]) for r in parsed] == [
        (text, text, text, text)] * 2
    assert text.encode() in table.content  # byte for byte, unescaped
    channels = rest.call("GET", "/api/v1/channels", params={"device": text}).json()["data"]
    assert [(c["device"], c["channel"], c["quantity"]) for c in channels] == [
        (text, text, text)]
    assert text in [d["device"] for d in rest.call("GET", "/api/v1/devices").json()["data"]]
    assert text in [s["name"] for s in rest.call("GET", "/api/v1/sources").json()["data"]]
    key = rest.call("POST", "/api/v1/keys", json={"name": text, "scope": "read"})
    assert key.status_code == 201, key.text
    assert key.json()["name"] == text
    assert rest.call("DELETE", f"/api/v1/keys/{key.json()['key_id']}").status_code == 204
    rest.sweep(REST_QUICK)


@pytest.mark.parametrize(("device", "field", "value", "stored"), [
    ("edge-1", "value", 5e-324, 5e-324 * 1000),  # MWh in the channel's kWh: finite, kept
    ("edge-2", "value", v.Raw(str(10**30).encode()), pytest.approx(1e33, rel=1e-15)),
    ("edge-3", "ts", "1800-01-01T00:00:00", "1800-01-01T00:00:00Z"),  # naive: UTC, kept
    ("edge-4", "ts", "2024-03-31T02:30:00", "2024-03-31T02:30:00Z"),  # a gap only locally
    ("edge-5", "ts", "2199-12-31T23:59:59.999999Z", "2199-12-31T23:59:59.999999Z"),
], ids=["5e-324 MWh", "10**30 MWh", "naive 1800", "DST gap naive", "last microsecond"])
def test_edge_values_are_stored_exactly(rest: Served, device: str, field: str, value: Any,
                                        stored: Any) -> None:
    item = {**ITEM, "device": device, field: value}
    response = rest.call("POST", READINGS, content=v.dumps([item]),
                         headers={"Content-Type": "application/json"})
    assert response.status_code == 200, response.text
    (row,) = rest.call("GET", READINGS, params={"device": device}).json()["data"]
    assert row[field] == stored
    rest.sweep(REST_QUICK)



def test_csv_na_and_null_are_ids_and_only_missing_numbers(rest: Served) -> None:
    """Unquoted NA, N/A and null in CSV are ids like any other (pyarrow's default reads
    them as missing, and the row as one without a device); in value and seq they mean no
    number, as pandas and R write it."""
    body = (b"device,channel,ts,value,unit,quality,seq\n"
            b"NA,null,2024-10-26T00:00:00Z,1.5,degC,ok,NA\n"
            b"N/A,NULL,2024-10-26T00:00:00Z,NaN,degC,sensor_error,\n")
    response = rest.call("POST", READINGS, content=body, headers={"Content-Type": "text/csv"})
    assert response.status_code == 200, response.text
    assert (response.json()["devices"], response.json()["channels"]) == (
        ["N/A", "NA"], ["NULL", "null"])
    rows = rest.call("GET", READINGS, params={"device": ["NA", "N/A"]}).json()["data"]
    assert [(r["device"], r["channel"], r["value"], r["seq"]) for r in rows] == [
        ("N/A", "NULL", None, None), ("NA", "null", 1.5, None)]
    rest.sweep(REST_QUICK)

"""What the DSMR-reader-compatible paths share: the key check, DRF's reading of bodies
(JSON or form), its answers (JSON, 403, limit/offset pages with absolute links), how DRF
and django-filter read times, dates and decimals, and money and "today" in the meter's
zone."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import urlencode

import orjson
from fastapi import Request
from starlette.responses import Response

from meterhub.api.security import KeyRing
from meterhub.keys import ApiKey, Scope
from meterhub.timebase import zone

PAGE_SIZE = 25  #: DRF's limit when none is asked for
WRONG_TIME = ("Datetime has wrong format. Use one of these formats instead: "
              "YYYY-MM-DDThh:mm[:ss[.uuuuuu]][+HH:MM|-HH:MM|Z].")
_ISO = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?"
                  r"(Z|[+-]\d{2}(:?\d{2})?)?$")


def dsmr_key(request: Request, scope: Scope = Scope.WRITE) -> ApiKey | None:
    """The key of ``X-AUTHKEY`` or ``Authorization: Token``, if known and within ``scope``."""
    ring: KeyRing = request.app.state.keys
    text = request.headers.get("x-authkey")
    if not text:
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        text = value.strip() if scheme.lower() == "token" else None
    key = ring.find(text) if text else None
    return key if key is not None and key.scope.allows(scope) else None


def json_response(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json")


def denied() -> Response:
    return json_response({"detail": "Invalid auth key"}, 403)


def is_json(request: Request) -> bool:
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    return media == "application/json"


async def request_data(request: Request) -> dict[str, Any] | Response:
    """A JSON or form body as a dict, as DRF's parsers read them, or the 400 DRF answers."""
    if not is_json(request):
        return dict(await request.form())
    try:
        data = orjson.loads(await request.body())
    except orjson.JSONDecodeError:
        return json_response({"detail": "JSON parse error"}, 400)
    if not isinstance(data, dict):
        return json_response({"non_field_errors": [
            f"Invalid data. Expected a dictionary, but got {type(data).__name__}."]}, 400)
    return data


async def write_body(request: Request) -> dict[str, Any] | Response:
    """The body of a write (`request_data`), or the answer instead: 403 without a key of
    write scope, 400 for a body DRF cannot read."""
    if dsmr_key(request, Scope.WRITE) is None:
        return denied()
    return await request_data(request)


def _positive(text: str | None, default: int, *, zero: bool = False) -> int:
    """DRF's reading of limit/offset: anything but a (positive) integer means the default."""
    try:
        value = int(text) if text is not None else default
    except ValueError:
        return default
    return value if value > 0 or (zero and value == 0) else default


def parse_time(text: str, tz: str, *, date_only: bool = False) -> dt.datetime | None:
    """An aware time from ISO 8601 (``T`` or a space); naive times are in ``tz``. With
    ``date_only`` (filters, as Django reads them) a bare date means its midnight."""
    text = text.strip()
    if date_only and re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        text += "T00:00:00"
    if not _ISO.match(text):
        return None
    text = text.replace(" ", "T").replace("Z", "+00:00")
    if re.search(r"[+-]\d{2}$", text):
        text += ":00"
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=zone(tz))


def local_time(moment: dt.datetime, tz: str) -> str:
    return moment.astimezone(zone(tz)).isoformat()


def clean_decimal(raw: object, places: int | None) -> Decimal | str:
    """A DRF DecimalField's (IntegerField's, without places) value, or its error."""
    try:
        number = Decimal(str(raw))
        if not number.is_finite():
            raise InvalidOperation
    except InvalidOperation:
        return "A valid integer is required." if places is None else \
            "A valid number is required."
    exponent = number.as_tuple().exponent
    if places is not None and isinstance(exponent, int) and -exponent > places:
        return f"Ensure that there are no more than {places} decimal places."
    return number


def limit_offset(request: Request) -> tuple[int, int]:
    params = request.query_params
    return (_positive(params.get("limit"), PAGE_SIZE),
            _positive(params.get("offset"), 0, zero=True))


def time_bounds(request: Request, names: tuple[str, str], tz: str
                 ) -> tuple[list[dt.datetime | None], dict[str, list[str]]]:
    """Inclusive time filters as django-filter reads them, and DRF-style errors."""
    bounds: list[dt.datetime | None] = []
    errors: dict[str, list[str]] = {}
    for name in names:
        text = request.query_params.get(name)
        bounds.append(parse_time(text, tz, date_only=True) if text else None)
        if text and bounds[-1] is None:
            errors[name] = ["Enter a valid date/time."]
    return bounds, errors


def paginated(request: Request, count: int, limit: int, offset: int,
              results: list[Any]) -> Response:
    following, previous = _page_links(request, count, limit, offset)
    return json_response({"count": count, "next": following, "previous": previous,
                          "results": results})


def _page_links(request: Request, count: int, limit: int, offset: int
                ) -> tuple[str | None, str | None]:
    base = str(request.url.replace(query=""))
    query = dict(request.query_params)

    def link(changes: dict[str, int | None]) -> str:
        merged = {**query, **{k: str(v) for k, v in changes.items() if v is not None}}
        for key, value in changes.items():
            if value is None:
                merged.pop(key, None)
        return f"{base}?{urlencode(sorted(merged.items()))}" if merged else base

    following = link({"limit": limit, "offset": offset + limit}) \
        if offset + limit < count else None
    if offset <= 0:
        previous = None
    elif offset - limit <= 0:
        previous = link({"limit": limit, "offset": None})
    else:
        previous = link({"limit": limit, "offset": offset - limit})
    return following, previous


def today(tz: str) -> dt.date:
    return dt.datetime.now(zone(tz)).date()


def page_of(request: Request, items: list[Any], key: str) -> tuple[list[Any], int, int]:
    """The page of ``items`` (in ``key`` order) that limit, offset and ordering ask for."""
    ordered = items[::-1] if request.query_params.get("ordering") == f"-{key}" else items
    limit, offset = limit_offset(request)
    return ordered[offset:offset + limit], limit, offset


def money(value: Decimal, places: int) -> str:
    return f"{value.quantize(Decimal(1).scaleb(-places)):f}"


def _parse_day(text: str | None) -> tuple[dt.date | None, bool]:
    if not text:
        return None, True
    try:
        return dt.date.fromisoformat(text.strip()), True
    except ValueError:
        return None, False


def date_bounds(request: Request, names: Sequence[str]
                ) -> tuple[dict[str, dt.date | None], dict[str, list[str]]]:
    """Date filters (``day__gte`` ...) as dates, None when not given, and DRF's errors."""
    bounds: dict[str, dt.date | None] = {}
    errors: dict[str, list[str]] = {}
    for name in names:
        bounds[name], ok = _parse_day(request.query_params.get(name))
        if not ok:
            errors[name] = ["Enter a valid date."]
    return bounds, errors


def within(value: dt.date, low: dt.date | None, high: dt.date | None) -> bool:
    return (low is None or value >= low) and (high is None or value <= high)

"""What the DSMR-reader-compatible paths share: the key check, DRF's reading of bodies
(JSON or form), its answers (JSON, 403, limit/offset pages with absolute links), how DRF
and django-filter read times, dates and decimals, and money and "today" in the meter's
zone."""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import re
from collections.abc import Awaitable, Callable, Sequence
from decimal import Context, Decimal, InvalidOperation
from typing import Any
from urllib.parse import urlencode

import orjson
from fastapi import FastAPI, Request
from starlette.responses import Response

from meterhub.api.bodies import bounded_body
from meterhub.api.security import KeyLimits, KeyRing
from meterhub.api.session import session_key
from meterhub.keys import ApiKey, Scope
from meterhub.model import TS_MAX, TS_MIN, in_time_range
from meterhub.timebase import zone

PAGE_SIZE = 25  #: DRF's limit when none is asked for
#: the largest body of any DSMR path, in bytes: a telegram is about 1 kB (3 form-encoded), a
#: v2 reading or contract well under 10 kB; a larger one is refused (413) unread
MAX_BODY = 64 * 1024
MAX_NUMBER_TEXT = 1000  #: DRF's longest number text (``MAX_STRING_LENGTH``)
WRONG_TIME = ("Datetime has wrong format. Use one of these formats instead: "
              "YYYY-MM-DDThh:mm[:ss[.uuuuuu]][+HH:MM|-HH:MM|Z].")
TIME_OUT_OF_RANGE = "Datetime value out of range."  #: DRF's, for a time it cannot keep
INVALID_FILTER_TIME = "Enter a valid date/time."  #: Django's, for a time filter it cannot read
#: Django 3.2's (``from_current_timezone``, typographic apostrophe and all), for a naive
#: time filter that is ambiguous or does not exist in the zone: the naive time as Python
#: writes it (``2025-10-26 02:30:00``) and the zone's name
AMBIGUOUS_FILTER_TIME = ("{moment} couldn\u2019t be interpreted in time zone {zone}; it may "
                         "be ambiguous or it may not exist.")
Handler = Callable[..., Awaitable[Response]]
#: an offset may have seconds: Python writes local mean time so (``+00:19:32`` in Amsterdam
#: before 1937), in these paths' answers as in DSMR-reader's, and Django reads it back
_ISO = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?"
                  r"(Z|[+-]\d{2}(:?\d{2}(:\d{2})?)?)?$")


def dsmr_key(request: Request) -> ApiKey | None:
    """The key of ``X-AUTHKEY`` or ``Authorization: Token``, if known (of any scope)."""
    ring: KeyRing = request.app.state.keys
    text = request.headers.get("x-authkey")
    if not text:
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        text = value.strip() if scheme.lower() == "token" else None
    return ring.find(text) if text else None


def json_response(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json")


def denied() -> Response:
    return json_response({"detail": "Invalid auth key"}, 403)


def retry_after(headers: dict[str, str]) -> int:
    """The whole seconds until a throttled key may call again, from its limit headers."""
    for name in ("Retry-After", "X-RateLimit-Reset"):
        try:
            return max(1, int(headers[name]))
        except (KeyError, ValueError):
            continue
    return 1


def throttled(headers: dict[str, str]) -> Response:
    """DRF's 429 (``exceptions.Throttled``), with its Retry-After."""
    wait = retry_after(headers)
    detail = f"Request was throttled. Expected available in {wait} second" \
        f"{'' if wait == 1 else 's'}."
    response = json_response({"detail": detail}, 429)
    response.headers["Retry-After"] = str(wait)
    return response


def guarded(scope: Scope, *, refuse: Callable[[], Response] = denied,
            throttle: Callable[[dict[str, str]], Response] = throttled
            ) -> Callable[[Handler], Handler]:
    """Every DSMR path's key check, as a decorator under the route's: the path runs for a
    known key of ``scope`` (for a read, the dashboard's session cookie stands for its key;
    never for a write) within its rate limit, else ``refuse`` answers (403) or
    ``throttle`` does (429). Every request of a known key counts against its limit,
    whatever the answer, and every answer to one carries the limit's ``X-RateLimit-*``
    headers. A request without a known key is refused uncounted: there is no limit to
    count it against."""

    def wrap(handler: Handler) -> Handler:
        @functools.wraps(handler)  # FastAPI reads the path's parameters through it
        async def run(request: Request, *args: Any, **kwargs: Any) -> Response:
            key = dsmr_key(request)
            if key is None and scope is Scope.READ:  # the dashboard's session reads too
                key = session_key(request)
            if key is None:
                return refuse()
            limits: KeyLimits = request.app.state.limits
            allowed, headers = limits.hit(key)
            if not allowed:
                response = throttle(headers)
            elif not key.scope.allows(scope):
                response = refuse()
            else:
                response = await handler(request, *args, **kwargs)
            for name, value in headers.items():
                response.headers.setdefault(name, value)
            return response

        return run

    return wrap


def is_json(request: Request) -> bool:
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    return media == "application/json"


def too_large() -> Response:
    """The 413 of a v2 body over `MAX_BODY`, in DRF's shape."""
    return json_response({"detail": f"Request body too large: at most {MAX_BODY} bytes."}, 413)


async def request_data(request: Request) -> dict[str, Any] | Response:
    """A JSON or form body as a dict, as DRF's parsers read them, or the answer instead:
    413 for a body over `MAX_BODY`, 400 for one DRF cannot read."""
    body = await bounded_body(request, MAX_BODY)
    if body is None:
        return too_large()
    if not is_json(request):
        return dict(await request.form())
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return json_response({"detail": "JSON parse error"}, 400)
    if not isinstance(data, dict):
        return json_response({"non_field_errors": [
            f"Invalid data. Expected a dictionary, but got {type(data).__name__}."]}, 400)
    return data


def _positive(text: str | None, default: int, *, zero: bool = False) -> int:
    """DRF's reading of limit/offset: anything but a (positive) integer means the default."""
    try:
        value = int(text) if text is not None else default
    except ValueError:
        return default
    return value if value > 0 or (zero and value == 0) else default


def _read_iso(text: str, *, date_only: bool) -> dt.datetime | None:
    """A time from ISO 8601 (``T`` or a space), naive when it has no offset; None when it
    is not one. With ``date_only`` a bare date means its midnight."""
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
    offset = moment.utcoffset()
    if offset is not None and offset % dt.timedelta(minutes=1):
        # an offset with seconds (local mean time) as UTC: Arrow keeps whole minutes only
        with contextlib.suppress(OverflowError):  # year 1 or 9999: out of range anyway
            moment = moment.astimezone(dt.UTC)
    return moment


def parse_time(text: str, tz: str, *, date_only: bool = False) -> dt.datetime | None:
    """An aware time from ISO 8601 (``T`` or a space); naive times are in ``tz`` (the
    earlier of an ambiguous time, as DRF's fields read it). With ``date_only`` a bare date
    means its midnight."""
    moment = _read_iso(text, date_only=date_only)
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=zone(tz))


def filter_time(text: str, tz: str, *, date_only: bool) -> dt.datetime | str:
    """A time filter's value as django-filter 21.1 reads it in Django 3.2 (pytz), or its
    error. ``date_only``: a DateTimeFilter (``timestamp__gte`` ...), which takes a bare date
    as its midnight; else an IsoDateTimeFilter (the exact ``timestamp`` ...), which takes
    date-times only. A naive time is in the zone ``tz``, unless it is ambiguous there (the
    repeated hour when clocks go back) or does not exist (the hour skipped when they go
    forward): Django refuses those (`AMBIGUOUS_FILTER_TIME`) rather than guess; a time
    with an offset is never ambiguous. A time outside the range meterhub keeps is no time
    it can filter by (`INVALID_FILTER_TIME`)."""
    moment = _read_iso(text, date_only=date_only)
    if moment is None:
        return INVALID_FILTER_TIME
    if moment.tzinfo is None:
        local = zone(tz)
        earlier, later = moment.replace(tzinfo=local), moment.replace(tzinfo=local, fold=1)
        if earlier.utcoffset() != later.utcoffset():  # Django's own test, with zoneinfo
            return AMBIGUOUS_FILTER_TIME.format(moment=moment, zone=tz)
        moment = earlier
    return moment if in_time_range(moment) else INVALID_FILTER_TIME


def clean_time(raw: object, tz: str) -> dt.datetime | str:
    """A DRF DateTimeField's value (`parse_time`), or its error: the wrong format, or a
    time outside the range meterhub keeps (`meterhub.model.TS_MIN` to `TS_MAX`), which
    DRF says of a time it cannot convert."""
    moment = parse_time(raw, tz) if isinstance(raw, str) else None
    if moment is None:
        return WRONG_TIME
    return moment if in_time_range(moment) else TIME_OUT_OF_RANGE


def local_time(moment: dt.datetime, tz: str) -> str:
    return moment.astimezone(zone(tz)).isoformat()


def clean_decimal(raw: object, max_digits: int, places: int) -> Decimal | str:
    """A DRF DecimalField's value, or its error: ``max_digits`` and ``places`` are the
    model field's, checked in DRF's order (digits in total, decimal places, digits before
    the point)."""
    text = str(raw).strip()
    if len(text) > MAX_NUMBER_TEXT:
        return "String value too large."
    try:
        number = Decimal(text)
    except InvalidOperation:
        return "A valid number is required."
    if not number.is_finite():
        return "A valid number is required."
    _, digits, exponent = number.as_tuple()
    assert isinstance(exponent, int)  # a finite number's
    if exponent >= 0:
        total = whole = len(digits) + exponent
        decimals = 0
    elif len(digits) > -exponent:
        total, whole, decimals = len(digits), len(digits) + exponent, -exponent
    else:
        total = decimals = -exponent
        whole = 0
    if total > max_digits:
        return f"Ensure that there are no more than {max_digits} digits in total."
    if decimals > places:
        return f"Ensure that there are no more than {places} decimal places."
    if whole > max_digits - places:
        return (f"Ensure that there are no more than {max_digits - places} digits before "
                "the decimal point.")
    return number


_ZERO_FRACTION = re.compile(r"\.0*\s*$")  #: what DRF drops before reading an integer


def clean_int(raw: object, low: int, high: int) -> int | str:
    """A DRF IntegerField's value ("12", 12 or 12.0) within [low, high], or its error."""
    if isinstance(raw, str) and len(raw) > MAX_NUMBER_TEXT:
        return "String value too large."
    if isinstance(raw, bool):
        return "A valid integer is required."
    try:
        number = int(_ZERO_FRACTION.sub("", str(raw)))
    except ValueError:
        return "A valid integer is required."
    if number > high:
        return f"Ensure this value is less than or equal to {high}."
    if number < low:
        return f"Ensure this value is greater than or equal to {low}."
    return number


def limit_offset(request: Request) -> tuple[int, int]:
    params = request.query_params
    return (_positive(params.get("limit"), PAGE_SIZE),
            _positive(params.get("offset"), 0, zero=True))


def time_bounds(request: Request, names: tuple[str, str], tz: str
                 ) -> tuple[list[dt.datetime | None], dict[str, list[str]]]:
    """Inclusive time filters (DateTimeFilters) as django-filter reads them
    (`filter_time`), None when not given, and DRF-style errors."""
    bounds: list[dt.datetime | None] = []
    errors: dict[str, list[str]] = {}
    for name in names:
        text = request.query_params.get(name)
        moment = filter_time(text, tz, date_only=True) if text else None
        if isinstance(moment, str):
            errors[name] = [moment]
            moment = None
        bounds.append(moment)
    return bounds, errors


def time_filters(request: Request, field: str, tz: str
                 ) -> tuple[tuple[dt.datetime | None, dt.datetime | None], dict[str, list[str]]]:
    """The filters DSMR-reader's filter sets give a time field: ``field`` itself (its
    ``Meta.fields``: an exact IsoDateTimeFilter), ``field__gte`` and ``field__lte``
    (inclusive DateTimeFilters), combined (AND) into one inclusive span (start, end), either
    None when open, start after end when nothing matches; and DRF's errors, in the filter
    set's order (``Meta.fields`` first)."""
    errors: dict[str, list[str]] = {}
    text = request.query_params.get(field)
    exact = filter_time(text, tz, date_only=False) if text else None
    if isinstance(exact, str):
        errors[field] = [exact]
        exact = None
    (low, high), more = time_bounds(request, (f"{field}__gte", f"{field}__lte"), tz)
    errors.update(more)
    if exact is not None:
        low = exact if low is None else max(low, exact)
        high = exact if high is None else min(high, exact)
    return (low, high), errors


def get_route(app: FastAPI, path: str) -> Callable[[Handler], Handler]:
    """Route a GET path as DRF does: HEAD runs the same handler (key check and rate limit
    included), and the server sends the GET's status and headers, Content-Length
    included, without the body (uvicorn drops a HEAD answer's body)."""
    return app.api_route(path, methods=["GET", "HEAD"], include_in_schema=False)


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


def local_day(moment: dt.datetime, tz: str) -> dt.date:
    """The date in zone ``tz`` at ``moment`` (aware)."""
    return moment.astimezone(zone(tz)).date()


def page_of(request: Request, items: list[Any], key: str) -> tuple[list[Any], int, int]:
    """The page of ``items`` (in ``key`` order) that limit, offset and ordering ask for."""
    ordered = items[::-1] if request.query_params.get("ordering") == f"-{key}" else items
    limit, offset = limit_offset(request)
    return ordered[offset:offset + limit], limit, offset


def money(value: Decimal, places: int) -> str:
    """``value`` with ``places`` decimals, as DRF writes a decimal: any finite value, however
    large (the default context's 28 digits would fail past them)."""
    context = Context(prec=max(28, value.adjusted() + places + 2))
    return f"{value.quantize(Decimal(1).scaleb(-places), context=context):f}"


def _parse_day(text: str | None, in_range: bool) -> tuple[dt.date | None, bool]:
    if not text:
        return None, True
    try:
        day = dt.date.fromisoformat(text.strip())
    except ValueError:
        return None, False
    return day, not in_range or TS_MIN.date() <= day < TS_MAX.date()


def date_bounds(request: Request, names: Sequence[str], *, in_range: bool = False
                ) -> tuple[dict[str, dt.date | None], dict[str, list[str]]]:
    """Date filters (``day__gte`` ...) as dates, None when not given, and DRF's errors;
    ``in_range``: days of readings, so only days meterhub can keep readings of."""
    bounds: dict[str, dt.date | None] = {}
    errors: dict[str, list[str]] = {}
    for name in names:
        bounds[name], ok = _parse_day(request.query_params.get(name), in_range)
        if not ok:
            bounds[name] = None
            errors[name] = ["Enter a valid date."]
    return bounds, errors


def within(value: dt.date, low: dt.date | None, high: dt.date | None) -> bool:
    return (low is None or value >= low) and (high is None or value <= high)

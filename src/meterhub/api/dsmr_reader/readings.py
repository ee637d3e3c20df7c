"""DSMR-reader's v2 readings, statistics and version paths, from the store, and the helpers
the other v2 modules (`dsmr_meter`, `dsmr_prices`) share.

A DSMR-reader "reading" is one telegram: every electricity field at one time stamp, plus
the gas meter's last reading and its own stamp. meterhub keeps each field as a channel of
the P1 device, so a reading is the row of those channels at one time, with gas joined as
of that time. Shapes follow DSMR-reader 5.11 as recorded in DSMR-READER.md: limit/offset
pages of 25 with absolute next/previous links (query keys sorted), decimals as strings,
times in the meter's zone with their offset, ids that are the reading's Unix second.
"""

from __future__ import annotations

import bisect
import datetime as dt
import re
from collections.abc import Sequence
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import urlencode

import orjson
import pyarrow as pa
from fastapi import FastAPI, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from meterhub.api.dsmr_reader.telegram_push import dsmr_key
from meterhub.config import DsmrSettings
from meterhub.dsmr.statistics import (
    PRICE_FIELDS,
    AddedPrices,
    Prices,
    all_contracts,
    day_statistics,
    hour_statistics,
    prices_key,
)
from meterhub.dsmr.telegram import FIELDS, GAS, SOURCE
from meterhub.errors import NotFoundError
from meterhub.hub import Hub
from meterhub.ingest import GroupWriter
from meterhub.keys import Scope
from meterhub.timebase import zone

VERSION = "5.11.0"  #: the DSMR-reader API version these paths answer like
PAGE_SIZE = 25
#: the fields of a reading, in DSMR-reader's order, with their decimals (None: integer)
READING_FIELDS: dict[str, int | None] = {
    "electricity_delivered_1": 3, "electricity_returned_1": 3,
    "electricity_delivered_2": 3, "electricity_returned_2": 3,
    "electricity_currently_delivered": 3, "electricity_currently_returned": 3,
    "phase_currently_delivered_l1": 3, "phase_currently_delivered_l2": 3,
    "phase_currently_delivered_l3": 3,
    "extra_device_timestamp": 0, "extra_device_delivered": 3,
    "phase_currently_returned_l1": 3, "phase_currently_returned_l2": 3,
    "phase_currently_returned_l3": 3,
    "phase_voltage_l1": 1, "phase_voltage_l2": 1, "phase_voltage_l3": 1,
    "phase_power_current_l1": None, "phase_power_current_l2": None,
    "phase_power_current_l3": None,
}
REQUIRED = ("timestamp", "electricity_delivered_1", "electricity_returned_1",
            "electricity_delivered_2", "electricity_returned_2",
            "electricity_currently_delivered", "electricity_currently_returned")
_BY_CHANNEL = {field.channel: field for field in FIELDS.values()}
WRONG_TIME = ("Datetime has wrong format. Use one of these formats instead: "
              "YYYY-MM-DDThh:mm[:ss[.uuuuuu]][+HH:MM|-HH:MM|Z].")
_ISO = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?"
                  r"(Z|[+-]\d{2}(:?\d{2})?)?$")


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


def _decimal(value: float | None, places: int | None) -> str | int | None:
    if value is None:
        return None
    if places is None:
        return int(value)  # DSMR-reader keeps currents as whole amperes, truncated
    return f"{Decimal(repr(float(value))).quantize(Decimal(1).scaleb(-places)):f}"


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


def _limit_offset(request: Request) -> tuple[int, int]:
    params = request.query_params
    return (_positive(params.get("limit"), PAGE_SIZE),
            _positive(params.get("offset"), 0, zero=True))


def _time_bounds(request: Request, names: tuple[str, str], tz: str
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


def readings_page(hub: Hub, settings: DsmrSettings, *, start: dt.datetime | None,
                  end: dt.datetime | None, descending: bool, offset: int, limit: int
                  ) -> tuple[int, list[dict[str, Any]]]:
    """(count, readings) of the P1 device in [start, end], DSMR-reader's way."""
    device, tz = settings.device, settings.timezone
    until = end + dt.timedelta(microseconds=1) if end is not None else None
    try:
        stamps = hub.readings(device=device, channel="electricity_delivered_1", start=start,
                              end=until, as_="arrow").column("ts").to_pylist()
    except NotFoundError:
        return 0, []
    ordered = stamps[::-1] if descending else stamps
    chosen = ordered[offset:offset + limit]
    if not chosen:
        return len(stamps), []
    low, high = min(chosen), max(chosen)
    rows = hub.readings(device=device, start=low, end=high + dt.timedelta(microseconds=1),
                        as_="arrow").to_pylist()
    values: dict[dt.datetime, dict[str, float | None]] = {}
    for row in rows:
        values.setdefault(row["ts"], {})[row["channel"]] = row["value"]
    gas = _gas_before(hub, device, low, high)
    gas_times = [g[0] for g in gas]
    out = []
    for moment in chosen:
        fields = values.get(moment, {})
        item: dict[str, Any] = {"id": int(moment.timestamp()), "timestamp": local_time(moment, tz)}
        at = bisect.bisect_right(gas_times, moment) - 1
        for name, places in READING_FIELDS.items():
            if name == "extra_device_timestamp":
                item[name] = local_time(gas[at][0], tz) if at >= 0 else None
            elif name == "extra_device_delivered":
                item[name] = _decimal(gas[at][1], places) if at >= 0 else None
            else:
                item[name] = _decimal(fields.get(name), places)
        out.append(item)
    return len(stamps), out


def _gas_before(hub: Hub, device: str, low: dt.datetime, high: dt.datetime
                ) -> list[tuple[dt.datetime, float]]:
    """Gas readings from a day before ``low`` up to ``high`` (gas comes at least hourly)."""
    try:
        table = hub.readings(device=device, channel=GAS.channel,
                             start=low - dt.timedelta(days=1),
                             end=high + dt.timedelta(microseconds=1), as_="arrow")
    except NotFoundError:
        return []
    return list(zip(table.column("ts").to_pylist(), table.column("value").to_pylist(),
                    strict=True))


def validate_post(data: dict[str, Any], tz: str) -> tuple[dict[str, list[str]], dict[str, Any]]:
    """DRF-style field errors, and the cleaned values (Decimal, aware datetimes)."""
    errors: dict[str, list[str]] = {}
    clean: dict[str, Any] = {}
    for name in ("timestamp", *READING_FIELDS):
        raw = data.get(name)
        if raw is None or raw == "":
            if name in REQUIRED:
                errors[name] = ["This field is required."]
            continue
        text = str(raw)
        if name in ("timestamp", "extra_device_timestamp"):
            moment = parse_time(text, tz)
            if moment is None:
                errors[name] = [WRONG_TIME]
            else:
                clean[name] = moment
            continue
        number = clean_decimal(text, READING_FIELDS[name])
        if isinstance(number, str):
            errors[name] = [number]
        else:
            clean[name] = number
    return errors, clean


def reading_table(clean: dict[str, Any], device: str) -> pa.Table:
    rows = []
    for name, value in clean.items():
        field = _BY_CHANNEL.get(name)
        if field is not None:
            rows.append({"source": SOURCE, "device": device, "channel": name,
                         "ts": clean["timestamp"], "value": float(value), "unit": field.unit,
                         "quantity": field.quantity, "kind": field.kind.value})
    if "extra_device_delivered" in clean and "extra_device_timestamp" in clean:
        rows.append({"source": SOURCE, "device": device, "channel": GAS.channel,
                     "ts": clean["extra_device_timestamp"],
                     "value": float(clean["extra_device_delivered"]), "unit": GAS.unit,
                     "quantity": GAS.quantity, "kind": GAS.kind.value})
    return pa.Table.from_pylist(rows)


def install(app: FastAPI, hub: Hub, settings: DsmrSettings, writer: GroupWriter) -> None:
    tz = settings.timezone

    @app.get("/api/v2/datalogger/dsmrreading", include_in_schema=False)
    async def list_readings(request: Request) -> Response:
        key = dsmr_key(request, Scope.READ)
        if key is None:
            return denied()
        (start, end), errors = _time_bounds(request, ("timestamp__gte", "timestamp__lte"), tz)
        if errors:
            return json_response(errors, 400)
        limit, offset = _limit_offset(request)
        count, results = await run_in_threadpool(
            readings_page, hub, settings, start=start, end=end,
            descending=request.query_params.get("ordering") == "-timestamp",
            offset=offset, limit=limit)
        return paginated(request, count, limit, offset, results)

    @app.post("/api/v2/datalogger/dsmrreading", include_in_schema=False)
    async def create_reading(request: Request) -> Response:
        if dsmr_key(request, Scope.WRITE) is None:
            return denied()
        data = await request_data(request)
        if isinstance(data, Response):
            return data
        errors, clean = validate_post(data, tz)
        if errors:
            return json_response(errors, 400)
        await writer.write(reading_table(clean, settings.device))
        moment: dt.datetime = clean["timestamp"]
        created: dict[str, Any] = {"id": int(moment.timestamp()),
                                   "timestamp": local_time(moment, tz)}
        for name, places in READING_FIELDS.items():
            value = clean.get(name)
            if isinstance(value, dt.datetime):
                created[name] = local_time(value, tz)
            else:
                created[name] = None if value is None else _decimal(float(value), places)
        return json_response(created, 201)

    @app.get("/api/v2/application/version", include_in_schema=False)
    async def version(request: Request) -> Response:
        if dsmr_key(request, Scope.READ) is None:
            return denied()
        return json_response({"version": VERSION})


def contracts(hub: Hub, settings: DsmrSettings) -> list[Prices]:
    """Every energy contract, meterhub.toml's and those added through the API (kept in the
    store): what every cost and the prices endpoint read."""
    configured = [Prices(p.start, p.end, p.description,
                         {name: getattr(p, name) for name in PRICE_FIELDS})
                  for p in settings.prices]
    return all_contracts(configured, AddedPrices.loads(
        hub.get_state(prices_key(settings.device))))


def today(tz: str) -> dt.date:
    return dt.datetime.now(zone(tz)).date()


def gas_shift(settings: DsmrSettings) -> bool:
    """Whether gas moves back an hour: DSMR 4 gas totals are stamped at the hour's end."""
    return settings.version in ("4",)


def page_of(request: Request, items: list[Any], key: str) -> tuple[list[Any], int, int]:
    """The page of ``items`` (in ``key`` order) that limit, offset and ordering ask for."""
    ordered = items[::-1] if request.query_params.get("ordering") == f"-{key}" else items
    limit, offset = _limit_offset(request)
    return ordered[offset:offset + limit], limit, offset


def money(value: Decimal, places: int) -> str:
    return f"{value.quantize(Decimal(1).scaleb(-places)):f}"


def _stat_days(hub: Hub, settings: DsmrSettings, today: dt.date) -> list[dt.date]:
    """Local days before today with electricity readings (DSMR-reader makes a day's
    statistics once the day has passed)."""
    tz = zone(settings.timezone)
    try:
        stamps = hub.readings(device=settings.device, channel="electricity_delivered_1",
                              as_="arrow").column("ts").to_pylist()
    except NotFoundError:
        return []
    return sorted(d for d in {s.astimezone(tz).date() for s in stamps} if d < today)


def day_json(stats: dict[str, Any], tz: str) -> dict[str, Any]:
    day: dt.date = stats["day"]
    out: dict[str, Any] = {"id": int(day.strftime("%Y%m%d")), "day": day.isoformat()}
    for name in ("electricity1", "electricity2", "electricity1_returned",
                 "electricity2_returned"):
        out[name] = money(stats[name], 3)
    out["electricity1_cost"] = money(stats["electricity1_cost"], 2)
    out["electricity2_cost"] = money(stats["electricity2_cost"], 2)
    out["gas"] = money(stats["gas"], 3)
    out["gas_cost"] = money(stats["gas_cost"], 2)
    for name in ("lowest_temperature", "highest_temperature", "average_temperature"):
        out[name] = "0.0"  # no weather data is kept for the meter
    out["fixed_cost"] = money(stats["fixed_cost"], 2)
    out["total_cost"] = money(stats["total_cost"], 2)
    out["electricity_reading_timestamp"] = local_time(stats["electricity_reading_timestamp"], tz)
    for name in ("electricity1_reading", "electricity2_reading",
                 "electricity1_returned_reading", "electricity2_returned_reading"):
        out[name] = None if stats[name] is None else money(stats[name], 3)
    out["gas_reading_timestamp"] = (None if stats["gas_reading_timestamp"] is None
                                    else local_time(stats["gas_reading_timestamp"], tz))
    out["gas_reading"] = None if stats["gas_reading"] is None else \
        money(stats["gas_reading"], 3)
    return out


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


def install_statistics(app: FastAPI, hub: Hub, settings: DsmrSettings) -> None:
    tz = settings.timezone
    shift = gas_shift(settings)

    @app.get("/api/v2/statistics/day", include_in_schema=False)
    async def statistics_day(request: Request) -> Response:
        if dsmr_key(request, Scope.READ) is None:
            return denied()
        bounds, errors = date_bounds(request, ("day__gte", "day__lte"))
        if errors:
            return json_response(errors, 400)

        def compute() -> tuple[int, int, int, list[dict[str, Any]]]:
            days = [d for d in _stat_days(hub, settings, today(tz))
                    if within(d, bounds["day__gte"], bounds["day__lte"])]
            chosen, limit, offset = page_of(request, days, "day")
            every = contracts(hub, settings)
            rows = []
            for day in chosen:
                stats = day_statistics(hub, settings.device, tz, day, every,
                                       gas_shift=shift)
                if stats is not None:
                    rows.append(day_json(stats, tz))
            return len(days), limit, offset, rows

        return paginated(request, *await run_in_threadpool(compute))

    @app.get("/api/v2/statistics/hour", include_in_schema=False)
    async def statistics_hour(request: Request) -> Response:
        if dsmr_key(request, Scope.READ) is None:
            return denied()
        (low, high), errors = _time_bounds(request, ("hour_start__gte", "hour_start__lte"),
                                           tz)
        if errors:
            return json_response(errors, 400)

        def compute() -> tuple[int, int, int, list[dict[str, Any]]]:
            local = zone(tz)
            days = [d for d in _stat_days(hub, settings, today(tz))
                    if within(d, low and low.astimezone(local).date(),
                              high and high.astimezone(local).date())]
            rows = (hour_statistics(hub, settings.device, tz, days[0], days[-1],
                                    gas_shift=shift) if days else [])
            rows = [r for r in rows if within(r["hour_start"], low, high)]
            chosen, limit, offset = page_of(request, rows, "hour_start")
            out = [{"id": int(r["hour_start"].timestamp()) // 3600,
                    "hour_start": local_time(r["hour_start"], tz),
                    **{name: money(r[name], 3) for name in (
                        "electricity1", "electricity2", "electricity1_returned",
                        "electricity2_returned", "gas")}} for r in chosen]
            return len(rows), limit, offset, out

        return paginated(request, *await run_in_threadpool(compute))

    @app.get("/api/v2/consumption/today", include_in_schema=False)
    async def consumption_today(request: Request) -> Response:
        if dsmr_key(request, Scope.READ) is None:
            return denied()
        day = today(tz)

        def compute() -> dict[str, Any] | None:
            return day_statistics(hub, settings.device, tz, day, contracts(hub, settings),
                                  gas_shift=shift)

        stats = await run_in_threadpool(compute)
        if stats is None:
            return json_response(f"No electricity readings found for: {day.isoformat()}")
        price = stats["prices"]
        out: dict[str, Any] = {"day": day.isoformat()}
        for name in ("electricity1", "electricity2", "electricity1_returned",
                     "electricity2_returned"):
            out[name] = float(stats[name])
        out["electricity_merged"] = float(stats["electricity1"] + stats["electricity2"])
        out["electricity_returned_merged"] = float(stats["electricity1_returned"]
                                                   + stats["electricity2_returned"])
        for name in ("electricity1_cost", "electricity2_cost", "total_cost", "gas",
                     "gas_cost", "fixed_cost"):
            out[name] = float(stats[name])
        for name in ("electricity_delivered_1", "electricity_delivered_2",
                     "electricity_returned_1", "electricity_returned_2", "gas"):
            value = price[f"{name}_price"]
            out[f"energy_supplier_price_{name}"] = float(value) if value else 0
        fixed = price["fixed_daily_cost"]
        out["energy_supplier_price_fixed_daily_cost"] = float(fixed) if fixed else 0
        return json_response(out)

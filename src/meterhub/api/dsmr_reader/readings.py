"""DSMR-reader's v2 ``datalogger/dsmrreading`` (list and create) and version paths, from the
store.

A DSMR-reader "reading" is one telegram: every electricity field at one time stamp, plus
the gas meter's last reading and its own stamp. meterhub keeps each field as a channel of
the P1 device, so a reading is the row of those channels at one time, with gas joined as
of that time. Shapes follow DSMR-reader 5.11 as recorded in DSMR-READER.md: limit/offset
pages of 25 with absolute next/previous links (query keys sorted), decimals as strings,
times in the meter's zone with their offset, ids that are the reading's Unix second.

A posted reading is checked whole before anything is written, with DRF's own errors: each
decimal within its DsmrReading model field's digits and places, currents whole amperes
from 0 to 999 (its validators), times within the range meterhub keeps and no more than
`FUTURE_LIMIT` ahead of the server's clock (the telegram push's rule); its answer is built
before the write, so a stored reading is always answered 201.
"""

from __future__ import annotations

import bisect
import datetime as dt
import math
from decimal import Decimal
from typing import Any

import pyarrow as pa
from fastapi import FastAPI, Request
from starlette.responses import Response

from meterhub.api.dsmr_reader.common import (
    clean_decimal,
    clean_int,
    clean_time,
    get_route,
    guarded,
    json_response,
    limit_offset,
    local_time,
    money,
    paginated,
    request_data,
    time_filters,
)
from meterhub.api.dsmr_reader.kept import MeterAnswers
from meterhub.api.dsmr_reader.meter import RECENT
from meterhub.dsmr.fields import CURRENT_MAX, DECIMAL_LIMITS, FIELDS, GAS, READING_FIELDS, SOURCE
from meterhub.dsmr.settings import DsmrSettings
from meterhub.dsmr.statistics import MARKER
from meterhub.dsmr.telegram import FUTURE_LIMIT, too_far_ahead
from meterhub.errors import NotFoundError
from meterhub.hub import Hub
from meterhub.ingest import GroupWriter
from meterhub.keys import Scope
from meterhub.model import TS_MIN

VERSION = "5.11.0"  #: the DSMR-reader API version these paths answer like
TIMES = ("timestamp", "extra_device_timestamp")
REQUIRED = ("timestamp", "electricity_delivered_1", "electricity_returned_1",
            "electricity_delivered_2", "electricity_returned_2",
            "electricity_currently_delivered", "electricity_currently_returned")
AHEAD = (f"Datetime is more than {FUTURE_LIMIT.total_seconds() / 3600:.0f} hours ahead of "
         "the server's clock.")  #: the error of a time `too_far_ahead`
_BY_CHANNEL = {field.channel: field for field in FIELDS.values()}


def _decimal(value: float | None, places: int | None) -> str | int | None:
    """A stored value as DSMR-reader shows it: any float (none that JSON cannot hold)."""
    if value is None or not math.isfinite(value):
        return None
    if places is None:  # DSMR-reader keeps currents as whole amperes, truncated
        return int(value) if abs(value) < 2**63 else None
    return money(Decimal(repr(float(value))), places)


def readings_page(hub: Hub, settings: DsmrSettings, *, start: dt.datetime | None,
                  end: dt.datetime | None, descending: bool, offset: int, limit: int
                  ) -> tuple[int, list[dict[str, Any]]]:
    """(count, readings) of the P1 device in [start, end], DSMR-reader's way."""
    device, tz = settings.device, settings.timezone
    until = end + dt.timedelta(microseconds=1) if end is not None else None
    try:
        count, stamps = (_newest_stamps(hub, device, start, until, offset + limit)
                         if descending else _stamps(hub, device, start, until))
    except NotFoundError:
        return 0, []
    # only the page's times become Python objects: a month of telegrams a minute apart
    # made 43,000 of them per request (4 requests a second at most)
    # (a delete between the count and the read leaves fewer times than counted)
    first, last = offset, min(offset + limit, count, len(stamps))
    if first >= last:
        return count, []
    # descending: ``stamps`` are the newest, its last is the newest of all
    positions = range(len(stamps) - 1 - first, len(stamps) - 1 - last, -1) if descending \
        else range(first, last)
    chosen = stamps.take(pa.array(positions, pa.int64())).to_pylist()
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
    return count, out


def _stamps(hub: Hub, device: str, start: dt.datetime | None, until: dt.datetime | None
            ) -> tuple[int, pa.ChunkedArray]:
    """How many readings the meter has in [start, until), and their times, oldest first."""
    stamps = hub.readings(device=device, channel=MARKER, start=start, end=until,
                          as_="arrow").column("ts")
    return len(stamps), stamps


def _newest_stamps(hub: Hub, device: str, start: dt.datetime | None,
                   until: dt.datetime | None, wanted: int) -> tuple[int, pa.ChunkedArray]:
    """How many readings the meter has in [start, until), and the times of at least the
    newest ``wanted`` of them, oldest first: read from the last hour before ``until`` (or
    now) first, then the last two days, all only when those hold too few (the newest
    reading, which dataloggers and dashboards poll, is one count and a short read, not
    all of a meter's times)."""
    count = hub.count(device=device, channel=MARKER, start=start, end=until)
    if not count:
        return 0, pa.chunked_array([], pa.timestamp("us", "UTC"))
    anchor = until or dt.datetime.now(dt.UTC)
    for back in RECENT:
        since = anchor - back
        if since <= (start or TS_MIN):
            break
        stamps = hub.readings(device=device, channel=MARKER, start=since, end=until,
                              as_="arrow").column("ts")
        if len(stamps) >= min(wanted, count):
            return count, stamps
    return _stamps(hub, device, start, until)


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


def validate_post(data: dict[str, Any], tz: str, now: dt.datetime
                  ) -> tuple[dict[str, list[str]], dict[str, Any]]:
    """DRF-style field errors, and the cleaned values (Decimal, int, aware datetimes)."""
    errors: dict[str, list[str]] = {}
    clean: dict[str, Any] = {}
    for name in ("timestamp", *READING_FIELDS):
        raw = data.get(name)
        if raw is None or raw == "":
            if name in REQUIRED:
                errors[name] = ["This field is required."]
            continue
        value: object  # the clean value, or (a str) its error
        if name in TIMES:
            value = clean_time(str(raw), tz)
            if isinstance(value, dt.datetime) and too_far_ahead(value, now):
                value = AHEAD
        elif READING_FIELDS[name] is None:
            value = clean_int(raw, 0, CURRENT_MAX)
        else:
            value = clean_decimal(raw, *DECIMAL_LIMITS[name])
        if isinstance(value, str):
            errors[name] = [value]
        else:
            clean[name] = value
    return errors, clean


def created_json(clean: dict[str, Any], tz: str) -> dict[str, Any]:
    """The 201 answer to a posted reading (`validate_post`'s values), as DRF gives it."""
    moment: dt.datetime = clean["timestamp"]
    created: dict[str, Any] = {"id": int(moment.timestamp()),
                               "timestamp": local_time(moment, tz)}
    for name, places in READING_FIELDS.items():
        value = clean.get(name)
        if isinstance(value, dt.datetime):
            created[name] = local_time(value, tz)
        else:
            created[name] = None if value is None else _decimal(float(value), places)
    return created


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


def install(app: FastAPI, hub: Hub, settings: DsmrSettings, writer: GroupWriter,
            kept: MeterAnswers) -> None:
    tz = settings.timezone

    @get_route(app, "/api/v2/datalogger/dsmrreading")
    @guarded(Scope.READ)
    async def list_readings(request: Request) -> Response:
        # timestamp (exact), timestamp__gte and timestamp__lte, together
        (start, end), errors = time_filters(request, "timestamp", tz)
        if errors:
            return json_response(errors, 400)
        limit, offset = limit_offset(request)
        if start is not None and end is not None and start > end:
            return paginated(request, 0, limit, offset, [])  # no time is both
        descending = request.query_params.get("ordering") == "-timestamp"

        def compute() -> Response:
            count, results = readings_page(hub, settings, start=start, end=end,
                                           descending=descending, offset=offset, limit=limit)
            return paginated(request, count, limit, offset, results)

        return await kept.answer(request, dt.datetime.now(dt.UTC), compute)

    @app.post("/api/v2/datalogger/dsmrreading", include_in_schema=False)
    @guarded(Scope.WRITE)
    async def create_reading(request: Request) -> Response:
        data = await request_data(request)
        if isinstance(data, Response):
            return data
        errors, clean = validate_post(data, tz, dt.datetime.now(dt.UTC))
        if errors:
            return json_response(errors, 400)
        answer = json_response(created_json(clean, tz), 201)  # before the write: it stands
        await writer.write(reading_table(clean, settings.device))
        return answer

    @get_route(app, "/api/v2/application/version")
    @guarded(Scope.READ)
    async def version(request: Request) -> Response:
        return json_response({"version": VERSION})



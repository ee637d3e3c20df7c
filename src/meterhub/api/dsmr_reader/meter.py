"""DSMR-reader's v2 meter statistics and live consumption, from the store.

- ``datalogger/meter-statistics`` is DSMR-reader's MeterStatistics singleton: the meter's
  status from its latest telegram and the count of rejected telegrams, as the push
  endpoint's `meterhub.dsmr.meter_log.MeterLog` holds them (and the store keeps them). Types are
  its model's: the DSMR version a string of at most two characters, the tariff and the
  event counters integers, all null until a telegram says otherwise; the rejection count
  an integer from 0; the time the singleton's (now, until a telegram or a PATCH sets it).
  ``PATCH`` sets any of them, as remote dataloggers do, and answers like a partial DRF
  update (200 with the whole object, 400 field errors).
- ``consumption/electricity-live``: the newest reading's power in whole watts, the name of
  the meter's active tariff and the cost per hour at today's prices of that tariff
  (`meterhub.dsmr.prices.live_cost`), a string like "0.31", null without prices; ``{}``
  without readings.
- ``consumption/gas-live``: the newest gas reading's rise over the one before (m³, as a
  JSON number) and its cost at today's gas price; DSMR-reader leaves the cost out when no
  contract holds today, and answers ``{}`` without gas readings.

Costs are formatted as Django's number format does in DSMR-reader's English locale (plain
decimals, two places, no grouping).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

import pyarrow as pa
import pyarrow.compute as pc
from fastapi import FastAPI, Request
from starlette.responses import Response

from meterhub.api.dsmr_reader.common import (
    clean_int,
    clean_time,
    get_route,
    guarded,
    is_json,
    json_response,
    local_day,
    local_time,
    money,
    request_data,
)
from meterhub.api.dsmr_reader.kept import MeterAnswers
from meterhub.dsmr.fields import GAS
from meterhub.dsmr.meter_log import INT_MAX, INT_MIN, STATUS_FIELDS, MeterLog
from meterhub.dsmr.prices import contracts, day_prices, live_cost, round2
from meterhub.dsmr.settings import DsmrSettings
from meterhub.dsmr.statistics import gas_shift, meter_decimal
from meterhub.errors import NotFoundError
from meterhub.hub import Hub
from meterhub.ingest import GroupWriter
from meterhub.keys import Scope

METER_PATH = "/api/v2/datalogger/meter-statistics"
#: how far back the live answers look first, then next
RECENT = (dt.timedelta(hours=1), dt.timedelta(days=2))


@dataclass(frozen=True)
class _Field:
    kind: Literal["time", "text", "int"]
    null: bool
    max_length: int | None = None


#: MeterStatistics' fields after ``id``, in its order, as its model declares them
METER_FIELDS: dict[str, _Field] = {
    "timestamp": _Field("time", null=False),
    "dsmr_version": _Field("text", null=True, max_length=2),
    **{name: _Field("int", null=True) for name in STATUS_FIELDS},
    "rejected_telegrams": _Field("int", null=False),
    "latest_telegram": _Field("text", null=True),
}


def validate_patch(data: dict[str, Any], tz: str, *, form: bool
                   ) -> tuple[dict[str, list[str]], dict[str, Any]]:
    """DRF-style field errors of a partial update, and its cleaned values (fields not
    sent are left out; unknown ones are ignored, as DRF does)."""
    errors: dict[str, list[str]] = {}
    clean: dict[str, Any] = {}
    for name, spec in METER_FIELDS.items():
        if name not in data:
            continue
        raw = data[name]
        if form and raw == "":
            # an empty form field means null where null is allowed, else "not sent"
            if not spec.null:
                continue
            raw = None
        if raw is None:
            if spec.null:
                clean[name] = None
            else:
                errors[name] = ["This field may not be null."]
            continue
        value: object  # the clean value, or (a str) the error
        if spec.kind == "time":
            value = clean_time(raw, tz)
        elif spec.kind == "int":
            # the range of DSMR-reader's integer columns (PostgreSQL integer)
            value = clean_int(raw, INT_MIN, INT_MAX)
        elif isinstance(raw, bool) or not isinstance(raw, str | int | float):
            value = "Not a valid string."
        else:
            text = str(raw).strip()  # DRF trims text fields
            if not text:
                value = "This field may not be blank."
            else:
                # DRF runs every validator of a CharField and says what each found
                found = text_errors(text, spec.max_length)
                if found:
                    errors[name] = found
                else:
                    clean[name] = text
                continue
        if isinstance(value, str):
            errors[name] = [value]
        else:
            clean[name] = value
    return errors, clean


def text_errors(text: str, max_length: int | None) -> list[str]:
    """What the validators of a DRF CharField (of a model field with ``max_length``) say of
    the trimmed ``text``: too long, and a NUL in it (`ProhibitNullCharactersValidator`, which
    keeps NULs out of PostgreSQL text)."""
    found = []
    if max_length is not None and len(text) > max_length:
        found.append(f"Ensure this field has no more than {max_length} characters.")
    if "\x00" in text:
        found.append("Null characters are not allowed.")
    return found


def meter_statistics(status: dict[str, Any], rejected: int, tz: str,
                     now: dt.datetime) -> dict[str, Any]:
    """The singleton as DSMR-reader serializes it, from a stored status (maybe empty)."""
    stamp = status.get("timestamp")
    out: dict[str, Any] = {"id": 1, "timestamp": local_time(
        dt.datetime.fromisoformat(stamp) if stamp else now, tz)}
    for name in METER_FIELDS:
        if name != "timestamp":
            out[name] = rejected if name == "rejected_telegrams" else status.get(name)
    return out


def _recent(hub: Hub, device: str, channels: list[str], count: int,
            now: dt.datetime) -> pa.Table | None:
    """The valid readings of ``channels`` (by channel, then time) from the shortest window
    in which the first has ``count`` of them: live answers are about recent readings, so
    the last hour is read first, then the last two days, the whole channels only when they
    hold too few (a meter sending every second has 172,800 readings in two days). None
    for a meter without them."""
    for start in (*(now - back for back in RECENT), None):
        try:
            table = hub.readings(device=device, channel=channels, start=start, as_="arrow")
        except NotFoundError:
            return None
        table = table.filter(pc.is_valid(table.column("value")))
        first = pc.sum(pc.equal(table.column("channel"), channels[0])).as_py() or 0
        if first >= count or start is None:
            return table
    return None


def _newest(hub: Hub, device: str, channel: str, count: int,
            now: dt.datetime) -> list[tuple[dt.datetime, float]]:
    """The newest ``count`` readings of a channel, oldest first; only those become Python
    objects."""
    table = _recent(hub, device, [channel], count, now)
    if table is None:
        return []
    last = table.slice(max(0, table.num_rows - count))
    return list(zip(last.column("ts").to_pylist(), last.column("value").to_pylist(),
                    strict=True))


def _newest_power(hub: Hub, device: str, now: dt.datetime
                  ) -> tuple[dt.datetime, float, float] | None:
    """The newest power delivered and the power returned at the same time (0 for a meter
    without a returned-power line), read together."""
    channels = ["electricity_currently_delivered", "electricity_currently_returned"]
    table = _recent(hub, device, channels, 1, now)
    if table is None:
        return None
    delivered = table.filter(pc.equal(table.column("channel"), channels[0]))
    if not delivered.num_rows:
        return None
    moment = delivered.column("ts")[-1]
    at = table.filter(pc.and_(pc.equal(table.column("channel"), channels[1]),
                              pc.equal(table.column("ts"), moment)))
    returned = at.column("value")[0].as_py() if at.num_rows else 0.0
    return moment.as_py(), delivered.column("value")[-1].as_py(), returned


def electricity_live(hub: Hub, settings: DsmrSettings, now: dt.datetime,
                     status: dict[str, Any]) -> dict[str, Any]:
    """``status``: the meter's (`MeterLog.status`), for its active tariff."""
    device, tz = settings.device, settings.timezone
    found = _newest_power(hub, device, now)
    if found is None:
        return {}
    moment, delivered_kw, returned_kw = found
    delivered, returned = meter_decimal(delivered_kw), meter_decimal(returned_kw)
    tariff = status.get("electricity_tariff")
    names = {1: settings.tariff_1_name, 2: settings.tariff_2_name}
    # the prices of the meter's local day (DSMR-reader takes the UTC date, which is the
    # day before for the first hour or two after local midnight)
    cost = live_cost(delivered, returned, tariff,
                     day_prices(local_day(now, tz), contracts(hub, settings)))
    # a meter clock running ahead is not shown ahead of the server's
    return {"timestamp": local_time(min(moment, now), tz),
            "currently_delivered": _watts(delivered),
            "currently_returned": _watts(returned),
            "cost_per_hour": None if cost is None else money(cost, 2),
            "tariff_name": names.get(tariff) if isinstance(tariff, int) else None}


def _watts(kw: Decimal) -> int | None:
    """Power in whole watts, as DSMR-reader gives it; None for a value no JSON integer holds
    (only an absurd stored reading comes near)."""
    watts = int(kw * 1000)
    return watts if -(2**63) <= watts < 2**63 else None


def gas_live(hub: Hub, settings: DsmrSettings, now: dt.datetime) -> dict[str, Any]:
    device, tz = settings.device, settings.timezone
    newest = _newest(hub, device, GAS.channel, 2, now)
    if not newest:
        return {}
    moment, value = newest[-1]
    rise = meter_decimal(value) - meter_decimal(newest[0][1]) if len(newest) == 2 \
        else Decimal(0)  # the first gas reading: nothing to rise from
    if gas_shift(settings):  # DSMR 4 stamps the hour's total at its end
        moment -= dt.timedelta(hours=1)
    out: dict[str, Any] = {"timestamp": local_time(moment, tz),
                           "currently_delivered": float(rise)}
    prices = day_prices(local_day(now, tz), contracts(hub, settings))
    if prices is not None:
        out["cost_per_interval"] = money(round2(rise * prices["gas_price"]), 2)
    return out


def install(app: FastAPI, hub: Hub, settings: DsmrSettings, writer: GroupWriter,
            kept: MeterAnswers) -> None:
    tz = settings.timezone

    @get_route(app, METER_PATH)
    @guarded(Scope.READ)
    async def get_meter_statistics(request: Request) -> Response:
        # the push endpoint's MeterLog, loaded from the store at start: the store may be
        # a second behind it
        counters: MeterLog = request.app.state.dsmr_counters
        return json_response(meter_statistics(counters.status or {}, counters.rejected, tz,
                                              dt.datetime.now(dt.UTC)))

    @app.patch(METER_PATH, include_in_schema=False)
    @guarded(Scope.WRITE)
    async def patch_meter_statistics(request: Request) -> Response:
        data = await request_data(request)
        if isinstance(data, Response):
            return data
        errors, clean = validate_patch(data, tz, form=not is_json(request))
        if errors:
            return json_response(errors, 400)
        counters: MeterLog = request.app.state.dsmr_counters
        # from here to the writer's queue nothing awaits: a telegram or PATCH handed to
        # the writer meanwhile is in ``counters.status`` and this one builds on it
        status = dict(counters.status or {})
        rejected = clean.pop("rejected_telegrams", None)
        if clean:
            if "timestamp" in clean:
                clean["timestamp"] = clean["timestamp"].astimezone(dt.UTC).isoformat()
            elif "timestamp" not in status:  # DSMR-reader's singleton is made "now"
                clean["timestamp"] = dt.datetime.now(dt.UTC).isoformat()
            status.update(clean)
        state = counters.patch(status=status if clean else None, rejected=rejected)
        answer = json_response(meter_statistics(status, counters.rejected, tz,
                                                dt.datetime.now(dt.UTC)))  # before the write
        if state:
            await writer.write(None, state)
        return answer

    @get_route(app, "/api/v2/consumption/electricity-live")
    @guarded(Scope.READ)
    async def live_electricity(request: Request) -> Response:
        moment, status = dt.datetime.now(dt.UTC), request.app.state.dsmr_counters.status or {}
        return await kept.answer(
            request, moment,
            lambda: json_response(electricity_live(hub, settings, moment, status)),
            also=status.get("electricity_tariff"))  # its tariff name and cost

    @get_route(app, "/api/v2/consumption/gas-live")
    @guarded(Scope.READ)
    async def live_gas(request: Request) -> Response:
        moment = dt.datetime.now(dt.UTC)
        return await kept.answer(request, moment,
                                 lambda: json_response(gas_live(hub, settings, moment)))

"""DSMR-reader's v2 ``statistics/day``, ``statistics/hour`` and ``consumption/today``, from
the store by `meterhub.dsmr.statistics`' rules: a day's statistics exist once the local day
has passed; today's are computed so far."""

from __future__ import annotations

import datetime as dt
from typing import Any

from fastapi import FastAPI, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from meterhub.api.dsmr_reader.common import (
    date_bounds,
    guarded,
    json_response,
    local_time,
    money,
    page_of,
    paginated,
    time_bounds,
    today,
    within,
)
from meterhub.dsmr.prices import contracts
from meterhub.dsmr.settings import DsmrSettings
from meterhub.dsmr.statistics import day_statistics, gas_shift, hour_statistics
from meterhub.errors import NotFoundError
from meterhub.hub import Hub
from meterhub.keys import Scope
from meterhub.timebase import zone


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


def install(app: FastAPI, hub: Hub, settings: DsmrSettings) -> None:
    tz = settings.timezone
    shift = gas_shift(settings)

    @app.get("/api/v2/statistics/day", include_in_schema=False)
    @guarded(Scope.READ)
    async def statistics_day(request: Request) -> Response:
        bounds, errors = date_bounds(request, ("day__gte", "day__lte"), in_range=True)
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
    @guarded(Scope.READ)
    async def statistics_hour(request: Request) -> Response:
        (low, high), errors = time_bounds(request, ("hour_start__gte", "hour_start__lte"),
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
    @guarded(Scope.READ)
    async def consumption_today(request: Request) -> Response:
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

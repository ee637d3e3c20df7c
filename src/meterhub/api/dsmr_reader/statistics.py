"""DSMR-reader's v2 ``statistics/day``, ``statistics/hour`` and ``consumption/today``, from
the store by `meterhub.dsmr.statistics`' rules: a day's statistics exist once the local day
has passed; today's are computed so far."""

from __future__ import annotations

import datetime as dt
from typing import Any

from fastapi import FastAPI, Request
from starlette.responses import Response

from meterhub.api.dsmr_reader.common import (
    date_bounds,
    get_route,
    guarded,
    json_response,
    local_day,
    local_time,
    money,
    page_of,
    paginated,
    time_filters,
    within,
)
from meterhub.api.dsmr_reader.kept import MeterAnswers
from meterhub.clock import Clock, RealClock
from meterhub.dsmr.prices import contracts
from meterhub.dsmr.settings import DsmrSettings
from meterhub.dsmr.statistics import (
    by_minute,
    day_statistics,
    days_statistics,
    gas_shift,
    hour_statistics,
    statistics_days,
)
from meterhub.hub import Hub
from meterhub.keys import Scope
from meterhub.timebase import zone


def _stat_days(hub: Hub, settings: DsmrSettings, now: dt.datetime) -> list[dt.date]:
    """Local days before today with electricity consumption rows (DSMR-reader makes a
    day's statistics once the day has passed)."""
    today = local_day(now, settings.timezone)
    return [day for day in statistics_days(hub, settings.device, settings.timezone,
                                           gas_shift=gas_shift(settings),
                                           by_minute=by_minute(settings), now=now)
            if day < today]


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
    out["electricity_reading_timestamp"] = (
        None if stats["electricity_reading_timestamp"] is None
        else local_time(stats["electricity_reading_timestamp"], tz))
    for name in ("electricity1_reading", "electricity2_reading",
                 "electricity1_returned_reading", "electricity2_returned_reading"):
        out[name] = None if stats[name] is None else money(stats[name], 3)
    out["gas_reading_timestamp"] = (None if stats["gas_reading_timestamp"] is None
                                    else local_time(stats["gas_reading_timestamp"], tz))
    out["gas_reading"] = None if stats["gas_reading"] is None else \
        money(stats["gas_reading"], 3)
    return out


def today_json(stats: dict[str, Any], day: dt.date) -> Response:
    """``consumption/today`` from today's statistics so far."""
    price = stats["prices"]
    out: dict[str, Any] = {"day": day.isoformat()}
    for name in ("electricity1", "electricity2", "electricity1_returned",
                 "electricity2_returned"):
        out[name] = float(stats[name])
    out["electricity_merged"] = float(stats["electricity1"] + stats["electricity2"])
    out["electricity_returned_merged"] = float(stats["electricity1_returned"]
                                               + stats["electricity2_returned"])
    for name in ("electricity1_cost", "electricity2_cost", "total_cost"):
        out[name] = float(stats[name])
    # today's gas is the day's last minus first gas reading, as its cost is; a past
    # day's statistics sum their hours instead (DSMR-reader 5.10+)
    out["gas"] = float(stats["gas_span"])
    for name in ("gas_cost", "fixed_cost"):
        out[name] = float(stats[name])
    for name in ("electricity_delivered_1", "electricity_delivered_2",
                 "electricity_returned_1", "electricity_returned_2", "gas"):
        value = price[f"{name}_price"]
        out[f"energy_supplier_price_{name}"] = float(value) if value else 0
    fixed = price["fixed_daily_cost"]
    out["energy_supplier_price_fixed_daily_cost"] = float(fixed) if fixed else 0
    return json_response(out)


def install(app: FastAPI, hub: Hub, settings: DsmrSettings, kept: MeterAnswers,
            clock: Clock | None = None) -> None:
    tz = settings.timezone
    rules = {"gas_shift": gas_shift(settings), "by_minute": by_minute(settings)}
    clock = clock or RealClock()

    def now() -> dt.datetime:
        return dt.datetime.fromtimestamp(clock.now(), dt.UTC)

    @get_route(app, "/api/v2/statistics/day")
    @guarded(Scope.READ)
    async def statistics_day(request: Request) -> Response:
        # day (exact), day__gte and day__lte, together, as DayStatisticsFilter has them
        bounds, errors = date_bounds(request, ("day", "day__gte", "day__lte"), in_range=True)
        if errors:
            return json_response(errors, 400)

        moment = now()

        def compute() -> Response:
            days = [d for d in _stat_days(hub, settings, moment)
                    if within(d, bounds["day__gte"], bounds["day__lte"])
                    and within(d, bounds["day"], bounds["day"])]
            chosen, limit, offset = page_of(request, days, "day")
            every = contracts(hub, settings)
            made = {stats["day"]: stats for stats in days_statistics(
                hub, settings.device, tz, chosen, every, **rules, now=moment)}
            rows = [day_json(made[day], tz) for day in chosen if day in made]  # its order
            return paginated(request, len(days), limit, offset, rows)

        return await kept.answer(request, moment, compute)

    @get_route(app, "/api/v2/statistics/hour")
    @guarded(Scope.READ)
    async def statistics_hour(request: Request) -> Response:
        # hour_start (exact), hour_start__gte and hour_start__lte, together
        (low, high), errors = time_filters(request, "hour_start", tz)
        if errors:
            return json_response(errors, 400)

        moment = now()

        def compute() -> Response:
            local = zone(tz)
            days = [d for d in _stat_days(hub, settings, moment)
                    if within(d, low and low.astimezone(local).date(),
                              high and high.astimezone(local).date())]
            rows = (hour_statistics(hub, settings.device, tz, days[0], days[-1], **rules,
                                    now=moment) if days else [])
            rows = [r for r in rows if within(r["hour_start"], low, high)]
            chosen, limit, offset = page_of(request, rows, "hour_start")
            out = [{"id": int(r["hour_start"].timestamp()) // 3600,
                    "hour_start": local_time(r["hour_start"], tz),
                    **{name: money(r[name], 3) for name in (
                        "electricity1", "electricity2", "electricity1_returned",
                        "electricity2_returned", "gas")}} for r in chosen]
            return paginated(request, len(rows), limit, offset, out)

        return await kept.answer(request, moment, compute)

    @get_route(app, "/api/v2/consumption/today")
    @guarded(Scope.READ)
    async def consumption_today(request: Request) -> Response:
        moment = now()
        day = local_day(moment, tz)

        def compute() -> Response:
            stats = day_statistics(hub, settings.device, tz, day, contracts(hub, settings),
                                   **rules, now=moment)
            if stats is None:
                return json_response(f"No electricity readings found for: {day.isoformat()}")
            return today_json(stats, day)

        return await kept.answer(request, moment, compute)

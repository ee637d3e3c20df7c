"""The dashboard's Energy numbers: the DSMR meter's hours, days and months by DSMR-reader's
rules (`meterhub.dsmr.statistics`), for any day, without DSMR-reader's gating.

DSMR-reader makes a day's statistics (and its hours) only once the day has passed and its
last readings and gas are in; its v2 API (``/api/v2/statistics/...``) answers as it does.
These paths answer the same statistics for any day asked, today so far included, and say
whether the day is over (``complete``), so a page can draw today's hours:

- ``GET /api/v1/energy/day?day=`` one local day: its hours (23, 24 or 25 of them on a full
  day) and its totals with costs;
- ``GET /api/v1/energy/days?start=&end=`` the day statistics of each day in [start, end);
- ``GET /api/v1/energy/months?start=&end=`` per month in [start, end), the sum of its day
  statistics (as DSMR-reader's own month totals sum its days).

The numbers are those of the v2 statistics for the same day and hour (the same functions
compute them, written the same way); an hour's costs, which DSMR-reader does not keep,
apply the day's prices to the hour as `day_statistics` applies them to the day.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Query
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from meterhub.api import schemas
from meterhub.api.dsmr_reader.common import json_response, local_time, money
from meterhub.api.dsmr_reader.statistics import day_json
from meterhub.api.problems import Problem, problems
from meterhub.api.security import require
from meterhub.clock import Clock, RealClock
from meterhub.dsmr.prices import Prices, contracts, day_prices, round2
from meterhub.dsmr.settings import DsmrSettings
from meterhub.dsmr.statistics import (
    REGISTERS,
    by_minute,
    costs,
    day_with_hours,
    days_statistics,
    each_day,
    gas_shift,
)
from meterhub.hub import Hub
from meterhub.keys import Scope
from meterhub.model import TS_MAX, TS_MIN
from meterhub.timebase import zone

MAX_DAYS = 366  #: the longest span of days one request computes
MAX_MONTHS = 24
#: the days whose midnights (and the next) lie within the times meterhub keeps
FIRST_DAY, LAST_DAY = TS_MIN.date() + dt.timedelta(days=1), TS_MAX.date() - dt.timedelta(days=2)
ERRORS = problems(400, 401, 403, 429)
DayQ = Annotated[str | None, Query(
    description="The local day (YYYY-MM-DD) in the meter's zone; default today.")]


def _json(data: Any) -> Response:
    return json_response({"data": data})


def parse_day(text: str, name: str) -> dt.date:
    try:
        day = dt.date.fromisoformat(text.strip())
    except ValueError:
        day = None
    if day is None or not FIRST_DAY <= day <= LAST_DAY or len(text.strip()) != 10:
        raise Problem(400, f"{name} must be a date like 2024-10-27 (from {FIRST_DAY} to "
                      f"{LAST_DAY}), not {text[:40]!r}")
    return day


def parse_month(text: str, name: str) -> dt.date:
    """The first day of a month written ``YYYY-MM``."""
    stripped = text.strip()
    try:
        day = dt.date.fromisoformat(stripped + "-01") if len(stripped) == 7 else None
    except ValueError:
        day = None
    if day is None or not FIRST_DAY <= day <= LAST_DAY.replace(day=1):
        raise Problem(400, f"{name} must be a month like 2024-10 (from "
                      f"{FIRST_DAY:%Y-%m} to {LAST_DAY:%Y-%m}), not {text[:40]!r}")
    return day


def next_month(first: dt.date) -> dt.date:
    return (first + dt.timedelta(days=32)).replace(day=1)


def local_hours(day: dt.date, tz: str) -> int:
    """How many hours the local day has: 23 or 25 on the days clocks change."""
    local = zone(tz)
    start = dt.datetime.combine(day, dt.time(), local).astimezone(dt.UTC)
    end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), local).astimezone(dt.UTC)
    return round((end - start).total_seconds() / 3600)


def hour_costs(hour: dict[str, Any], price: dict[str, Decimal]) -> dict[str, Decimal]:
    """An hour's costs by the day's rule (`meterhub.dsmr.statistics.costs`), with no fixed
    cost (that is per day), and their total."""
    out = costs(hour, hour["gas"], price)
    out["total_cost"] = round2(sum(out.values(), Decimal(0)))
    return out


def hour_json(hour: dict[str, Any], tz: str, price: dict[str, Decimal] | None
              ) -> dict[str, Any]:
    """`/api/v2/statistics/hour`'s row, with the hour's costs (null without a contract)."""
    out: dict[str, Any] = {"id": int(hour["hour_start"].timestamp()) // 3600,
                           "hour_start": local_time(hour["hour_start"], tz)}
    for name in (*REGISTERS, "gas"):
        out[name] = money(hour[name], 3)
    costs = hour_costs(hour, price) if price is not None else None
    for name in ("electricity1_cost", "electricity2_cost", "gas_cost", "total_cost"):
        out[name] = money(costs[name], 2) if costs is not None else None
    return out


def day_row(stats: dict[str, Any], tz: str, today: dt.date, every: list[Prices]
            ) -> dict[str, Any]:
    """`/api/v2/statistics/day`'s row, with the merged tariffs, the day's last minus first
    gas (``gas_span``: today so far's gas, and what gas costs count), whether a contract
    prices the day and whether the day is over."""
    out = day_json(stats, tz)
    out["electricity_merged"] = money(stats["electricity1"] + stats["electricity2"], 3)
    out["electricity_returned_merged"] = money(
        stats["electricity1_returned"] + stats["electricity2_returned"], 3)
    out["gas_span"] = money(stats["gas_span"], 3)
    out["priced"] = day_prices(stats["day"], every) is not None
    out["complete"] = stats["day"] < today
    return out


SUMMED = ("electricity1", "electricity2", "electricity1_returned", "electricity2_returned",
          "electricity_merged", "electricity_returned_merged", "gas", "gas_span")
COSTS = ("electricity1_cost", "electricity2_cost", "gas_cost", "fixed_cost", "total_cost")


def month_row(first: dt.date, rows: list[dict[str, Any]], today: dt.date) -> dict[str, Any]:
    """The sum of a month's day rows (their written values, so the month is the sum of the
    days shown)."""
    out: dict[str, Any] = {"month": f"{first:%Y-%m}", "days": len(rows),
                           "priced_days": sum(r["priced"] for r in rows),
                           "complete": next_month(first) <= today}
    for names, places in ((SUMMED, 3), (COSTS, 2)):
        for name in names:
            out[name] = money(sum((Decimal(r[name]) for r in rows), Decimal(0)), places)
    return out


def install(app: FastAPI, hub: Hub, settings: DsmrSettings | None, *,
            clock: Clock | None = None) -> None:
    """Add the ``/api/v1/energy`` paths for the meter ``settings`` describe (else the
    defaults); ``clock`` tells today and which minutes are over (the wall clock)."""
    settings = settings or DsmrSettings()
    device, tz = settings.device, settings.timezone
    rules = {"gas_shift": gas_shift(settings), "by_minute": by_minute(settings)}
    clock = clock or RealClock()
    read = Depends(require(Scope.READ))

    def now() -> dt.datetime:
        return dt.datetime.fromtimestamp(clock.now(), dt.UTC)

    def meter() -> dict[str, Any]:
        return {"device": device, "timezone": tz}

    def days_of(first: dt.date, end: dt.date, moment: dt.datetime,
                every: list[Prices]) -> list[dict[str, Any]]:
        today = moment.astimezone(zone(tz)).date()
        return [day_row(stats, tz, today, every) for stats in days_statistics(
            hub, device, tz, each_day(first, end), every, **rules, now=moment)]

    @app.get("/api/v1/energy/day", tags=["energy"], response_model=None, dependencies=[read],
             responses={200: {"model": schemas.EnergyDay}, **ERRORS})
    async def energy_day(day: DayQ = None) -> Response:
        """The DSMR meter's statistics of one local day by DSMR-reader's rules: its hours
        (as ``/api/v2/statistics/hour`` has them once the day has passed, with costs) and
        its totals (as ``/api/v2/statistics/day`` has them, and ``gas_span``, which is
        ``/api/v2/consumption/today``'s gas), for any day, today so far included.
        ``totals`` is null for a day without consumption rows."""
        moment = now()
        today = moment.astimezone(zone(tz)).date()
        chosen = parse_day(day, "day") if day else today

        def compute() -> dict[str, Any]:
            every = contracts(hub, settings)
            price = day_prices(chosen, every)
            stats, hours = day_with_hours(hub, device, tz, chosen, every, **rules,
                                          now=moment)
            return {**meter(), "day": chosen.isoformat(), "today": chosen == today,
                    "complete": chosen < today, "local_hours": local_hours(chosen, tz),
                    "priced": price is not None,
                    "totals": None if stats is None else day_row(stats, tz, today, every),
                    "hours": [hour_json(h, tz, price) for h in hours]}

        return _json(await run_in_threadpool(compute))

    @app.get("/api/v1/energy/days", tags=["energy"], response_model=None, dependencies=[read],
             responses={200: {"model": schemas.EnergyDays}, **ERRORS})
    async def energy_days(
            start: Annotated[str, Query(description="First local day, YYYY-MM-DD.")],
            end: Annotated[str, Query(description="The day after the last, YYYY-MM-DD "
                                                  f"(at most {MAX_DAYS} days on).")]
    ) -> Response:
        """The DSMR meter's day statistics of each day in [start, end) that has consumption
        rows, as ``/api/v2/statistics/day`` has them once DSMR-reader has made them, today
        so far included (``complete`` false)."""
        first, stop = parse_day(start, "start"), parse_day(end, "end")
        if not first < stop <= first + dt.timedelta(days=MAX_DAYS):
            raise Problem(400, f"end must be after start, by at most {MAX_DAYS} days")
        moment = now()
        rows = await run_in_threadpool(
            lambda: days_of(first, stop, moment, contracts(hub, settings)))
        return _json({**meter(), "start": first.isoformat(), "end": stop.isoformat(),
                      "days": rows})

    @app.get("/api/v1/energy/months", tags=["energy"], response_model=None,
             dependencies=[read], responses={200: {"model": schemas.EnergyMonths}, **ERRORS})
    async def energy_months(
            start: Annotated[str, Query(description="First month, YYYY-MM.")],
            end: Annotated[str, Query(description="The month after the last, YYYY-MM "
                                                  f"(at most {MAX_MONTHS} months on).")]
    ) -> Response:
        """Per month in [start, end) with day statistics: the sum of its days' (as
        ``/api/v1/energy/days`` has them), how many days that is and how many a contract
        prices."""
        first, stop = parse_month(start, "start"), parse_month(end, "end")
        if not first < stop or (stop.year - first.year) * 12 + stop.month - first.month \
                > MAX_MONTHS:
            raise Problem(400, f"end must be after start, by at most {MAX_MONTHS} months")
        moment = now()
        today = moment.astimezone(zone(tz)).date()

        def compute() -> list[dict[str, Any]]:
            rows = days_of(first, stop, moment, contracts(hub, settings))
            months = []
            month = first
            while month < stop:
                following = next_month(month)
                mine = [r for r in rows if month.isoformat() <= r["day"] < following.isoformat()]
                if mine:
                    months.append(month_row(month, mine, today))
                month = following
            return months

        months = await run_in_threadpool(compute)
        return _json({**meter(), "start": f"{first:%Y-%m}", "end": f"{stop:%Y-%m}",
                      "months": months})

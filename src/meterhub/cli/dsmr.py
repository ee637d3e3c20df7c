"""Smart-meter commands: p1 (a meter's P1 port or a capture) and energy (DSMR-reader's
hour and day statistics with costs)."""

from __future__ import annotations

import calendar
import datetime as dt
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

import pyarrow as pa
import typer

from meterhub.cli.common import (
    OptionalConfig,
    StoreOption,
    app,
    fail,
    opened,
    out,
    settings_of,
    user_errors,
)
from meterhub.cli.output import FormatOption, chosen, emit
from meterhub.errors import InputError, MeterhubError
from meterhub.model import TS_MAX, TS_MIN, TS_RANGE_TEXT

#: the rules `meterhub energy` follows, said under its numbers
ENERGY_RULE = ("DSMR-reader's rules: a day's and an hour's electricity is the last minus the "
               "first minute row within that local day or hour (a minute's highest "
               "reading, stamped at the minute's end); gas per hour as DSMR-reader "
               "counts it, a past day's gas the sum of its hours (today's: its last minus "
               "first gas reading); costs at the day's contract "
               "prices, rounded half up to cents. `meterhub query --every 1d` counts edge "
               "to edge instead (from the last reading before the day), so the two differ "
               "by the rise across midnight.")


@app.command()
def p1(
    serial: Annotated[str | None, typer.Option(
        help="Serial port of the meter's P1 cable, e.g. /dev/ttyUSB0.")] = None,
    file: Annotated[Path | None, typer.Option(
        help="Replay the telegrams of a capture file (CRLF or LF line ends).")] = None,
    dsmr_version: Annotated[str | None, typer.Option(
        help="DSMR version or dialect: 2.2, 4, 5, belgium, luxembourg ... (default: [dsmr] "
             "version, 5).")] = None,
    count: Annotated[int | None, typer.Option(
        min=1, help="Stop after this many telegrams (default: read until stopped).")] = None,
    config: OptionalConfig = None, store: StoreOption = None,
) -> None:
    """Store telegrams from a P1 port (reopened when it fails) or from a capture file."""
    from meterhub.dsmr.p1 import read_serial, replay_file

    if (serial is None) == (file is None):
        raise fail("give either --serial PORT or --file CAPTURE")
    settings = settings_of(config)
    dsmr = settings.dsmr
    if dsmr_version is not None:
        with user_errors():
            from meterhub.dsmr.settings import DsmrSettings

            try:
                dsmr = DsmrSettings(**{**dsmr.model_dump(), "version": dsmr_version})
            except ValueError as exc:
                raise MeterhubError(f"--dsmr-version: unknown DSMR version "
                                    f"{dsmr_version!r}") from exc
    with opened(store or settings.store.url, create=True) as hub, user_errors():
        if file is not None:
            counts = replay_file(hub, file, dsmr)
        else:
            assert serial is not None
            out.print(f"reading DSMR {dsmr.version} telegrams from {serial} into {hub.url}; "
                      "stop with Ctrl-C", markup=False, soft_wrap=True)
            out.file.flush()
            try:
                counts = read_serial(hub, serial, dsmr, count=count)
            except KeyboardInterrupt:
                out.print("stopped")
                return
    out.print(f"{counts.accepted + counts.rejected:,} telegram(s) read, {counts.rejected:,} "
              f"rejected; readings: {counts.new:,} new, {counts.replaced:,} replaced, "
              f"{counts.unchanged:,} unchanged", markup=False, highlight=False, soft_wrap=True)


def _kept(first: dt.date, last: dt.date, what: str) -> dt.date:
    """``first`` when the days ``first`` to ``last`` lie within the times meterhub keeps
    (their midnights, in any zone, must be times Python holds), else an `InputError`."""
    if not TS_MIN.date() <= first <= last < TS_MAX.date():
        raise InputError(f"{what} is outside the times meterhub keeps: {TS_RANGE_TEXT}")
    return first


def wall_clock() -> dt.datetime:
    """Now, for what "today" and "so far" mean (tests set it)."""
    return dt.datetime.now(dt.UTC)


def _period(day: str | None, month: str | None, tz: str, now: dt.datetime
            ) -> tuple[dt.date, dt.date, bool]:
    """(first day, last day, whether hours are shown) of --day, --month or today."""
    if day is not None and month is not None:
        raise InputError("give --day or --month, not both")
    try:
        if month is not None:
            first = dt.date.fromisoformat(f"{month}-01")
            last = first.replace(day=calendar.monthrange(first.year, first.month)[1])
            return _kept(first, last, f"--month {month}"), last, False
        if day is not None:
            chosen_day = dt.date.fromisoformat(day)
            return _kept(chosen_day, chosen_day, f"--day {day}"), chosen_day, True
    except ValueError:
        raise InputError(f"--day takes YYYY-MM-DD and --month YYYY-MM, not "
                         f"{day if day is not None else month!r}") from None
    from meterhub.timebase import zone

    today = now.astimezone(zone(tz)).date()
    return today, today, True


_NUMBERS = ("electricity1", "electricity2", "electricity1_returned", "electricity2_returned",
            "gas")
_COSTS = ("electricity1_cost", "electricity2_cost", "gas_cost", "fixed_cost", "total_cost")


def _energy_table(hours: list[dict[str, Any]], days: list[dict[str, Any]], tz: str
                  ) -> pa.Table:
    from meterhub.timebase import zone

    def number(value: Decimal | None) -> float | None:
        return None if value is None else float(value)

    rows = [{"period": h["hour_start"].astimezone(zone(tz)).isoformat(sep=" "),
             **{n: number(h[n]) for n in _NUMBERS}, **dict.fromkeys(_COSTS)} for h in hours]
    rows += [{"period": d["day"].isoformat(), **{n: number(d[n]) for n in _NUMBERS},
              **{n: number(d[n]) for n in _COSTS}} for d in days]
    if len(days) > 1:
        rows.append({"period": "total", **{n: float(sum((d[n] for d in days), Decimal(0)))
                                           for n in (*_NUMBERS, *_COSTS)}})
    schema = pa.schema([("period", pa.string()),
                        *((n, pa.float64()) for n in (*_NUMBERS, *_COSTS))])
    return pa.Table.from_pylist(rows, schema=schema)


@app.command()
def energy(
    day: Annotated[str | None, typer.Option(
        help="A local day, YYYY-MM-DD: its hours and its totals with costs.")] = None,
    month: Annotated[str | None, typer.Option(
        help="A month, YYYY-MM: each day's totals with costs, and the month's.")] = None,
    tz: Annotated[str | None, typer.Option(
        help="Time zone of the days and hours (default: [dsmr] timezone).")] = None,
    config: OptionalConfig = None, store: StoreOption = None, fmt: FormatOption = None,
) -> None:
    """The DSMR meter's hour and day statistics with costs, as DSMR-reader computes them
    (default: today so far)."""
    from meterhub.dsmr.prices import contracts
    from meterhub.dsmr.statistics import by_minute, day_statistics, gas_shift, hour_statistics
    from meterhub.timebase import zone

    settings = settings_of(config)
    dsmr = settings.dsmr
    zone_name = tz or dsmr.timezone
    now = wall_clock()
    with user_errors():
        first, last, with_hours = _period(day, month, zone_name, now)
        today = now.astimezone(zone(zone_name)).date()
    with opened(store or settings.store.url, create=False) as hub, user_errors():
        every = contracts(hub, dsmr)
        days = []
        current = first
        while current <= last:
            stats = day_statistics(hub, dsmr.device, zone_name, current, every,
                                   gas_shift=gas_shift(dsmr), by_minute=by_minute(dsmr),
                                   now=now)
            if stats is not None:
                if current == today:  # today so far: its gas as its gas cost counts it
                    stats["gas"] = stats["gas_span"]
                days.append(stats)
            current += dt.timedelta(days=1)
        hours = hour_statistics(hub, dsmr.device, zone_name, first, last,
                                gas_shift=gas_shift(dsmr), by_minute=by_minute(dsmr),
                                now=now) if with_hours else []
    if not days:
        raise fail(f"no readings of meter {dsmr.device!r} from {first} to {last} "
                   f"({zone_name})")
    notes = [ENERGY_RULE] + ([] if every else [
        "no energy contract: costs are 0 (add [[dsmr.prices]] to meterhub.toml)"])
    emit(_energy_table(hours, days, zone_name), chosen(fmt), {},
         title=f"Meter {dsmr.device}, {first}" + (f" to {last}" if last != first else "")
         + f" ({zone_name}): kWh, m³ and costs",
         drop_first=["electricity2_returned", "electricity1_returned", "fixed_cost",
                     "electricity2_cost", "electricity1_cost", "gas_cost"],
         notes=notes)

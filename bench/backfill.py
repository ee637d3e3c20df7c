"""Backfill benchmark: calls and virtual time to pull one year, against the floor.

For each vendor and 1, 10 and 100 devices, the connector pulls a year of history from its
emulator in-process on a virtual clock (every documented limit enforced by the emulator),
all devices concurrently through one shared limiter. The floor is computed from the
documented limits alone: the fewest calls the page sizes allow, and the earliest moment the
last of them may start. Run: ``make bench`` or ``python bench/backfill.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from meterhub.clock import VirtualClock
from meterhub.emulators import climkit as climkit_emulator
from meterhub.emulators import copper as copper_emulator
from meterhub.emulators import tandd as tandd_emulator
from meterhub.emulators import zentra as zentra_emulator
from meterhub.sources.climkit import ClimkitConfig, ClimkitConnector
from meterhub.sources.copper import CopperConfig, CopperConnector
from meterhub.sources.tandd import NUMBER, TanddConfig, TanddConnector
from meterhub.sources.zentra import PAGE_SIZE, ZentraConfig, ZentraConnector

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sections import replace_section

ROOT = Path(__file__).resolve().parents[1]


def window_floor(calls: int, per_window: int, period: float) -> float:
    """When the last of ``calls`` may start under ``per_window`` calls per ``period``."""
    return (math.ceil(calls / per_window) - 1) * period if calls else 0.0


async def drain(connector: Any, devices: list[str], discover: bool = False) -> int:
    async def one(device: str) -> int:
        return sum([page.records async for page in connector.fetch(device, None)])

    try:
        if discover:
            await connector.discover()
        return sum(await asyncio.gather(*(one(d) for d in devices)))
    finally:
        await connector.aclose()


def zentra(n: int) -> dict[str, Any]:
    clock = VirtualClock()
    world = zentra_emulator.ZentraWorld.create(clock, devices=n, days=365)
    records = {sn: len(world.records(sn)[0]) for sn in world.devices}
    config = ZentraConfig(name="tahmo", base_url="https://tahmo.zentracloud.com",
                          token=world.token, devices=sorted(world.devices))
    con = ZentraConnector(config, clock=clock, transport=httpx.ASGITransport(
        app=zentra_emulator.create_app(world)))
    return run(clock, con, sorted(world.devices), world, lambda: {
        "floor_calls": sum(math.ceil(r / PAGE_SIZE) for r in records.values()),
        "floor_time": max(max((math.ceil(r / PAGE_SIZE) - 1) * 60.0
                              for r in records.values()),
                          window_floor(sum(math.ceil(r / PAGE_SIZE)
                                           for r in records.values()), 60, 60.0)),
        "records": sum(records.values())})


def tandd(n: int) -> dict[str, Any]:
    clock = VirtualClock()
    world = tandd_emulator.TanddWorld.create(clock, devices=n, days=365)
    records = {s: len(world.records(s)[0]) for s in world.loggers}
    config = TanddConfig(name="lab", api_key=tandd_emulator.API_KEY,
                         login_id=tandd_emulator.LOGIN_ID,
                         login_pass=tandd_emulator.LOGIN_PASS)
    con = TanddConnector(config, clock=clock, transport=httpx.ASGITransport(
        app=tandd_emulator.create_app(world)))
    calls = sum(max(1, math.ceil(r / NUMBER)) for r in records.values())
    return run(clock, con, sorted(world.loggers), world, lambda: {
        "floor_calls": calls, "floor_time": window_floor(calls, 20, 60.0),
        "records": sum(records.values())})


def climkit(n: int) -> dict[str, Any]:
    clock = VirtualClock()
    world = climkit_emulator.ClimkitWorld.create(clock, sites=1, meters=n, days=365)
    meters = [m.id for site in world.sites.values() for m in site.meters]
    config = ClimkitConfig(name="ck", username=climkit_emulator.USERNAME,
                           password=climkit_emulator.PASSWORD, devices=meters)
    con = ClimkitConnector(config, clock=clock, transport=httpx.ASGITransport(
        app=climkit_emulator.create_app(world)))
    # discovery: sites, site infos, meter lists, sensor lists (not limited); 2 calls a meter
    limited = 1 + 2 + 2 * n
    return run(clock, con, meters, world, lambda: {
        "floor_calls": limited + 1, "floor_time": window_floor(limited, 1, 1.0),
        "records": sum(len(world.truth(m)[0]) for m in meters)}, discover=True,
        calls=lambda: world.calls - world.auths)


def copper(n: int) -> dict[str, Any]:
    clock = VirtualClock()
    world = copper_emulator.CopperWorld.create(clock, meters=n, days=365)
    config = CopperConfig(name="cu", client_id=copper_emulator.CLIENT_ID,
                          client_secret=copper_emulator.CLIENT_SECRET,
                          enterprise_id=copper_emulator.ENTERPRISE)
    con = CopperConnector(config, clock=clock, transport=httpx.ASGITransport(
        app=copper_emulator.create_app(world)))
    calls = 2 + n  # premise and meter listings, then one usage call per meter-year
    return run(clock, con, sorted(world.meters), world, lambda: {
        "floor_calls": calls,
        "floor_time": max(window_floor(calls, 100, 3600.0), window_floor(calls, 1000, 86400.0)),
        "records": sum(len(world.truth(m)[0]) for m in world.meters)}, discover=True)


def run(clock: VirtualClock, con: Any, devices: list[str], world: Any,
        floor: Callable[[], dict[str, Any]], *, discover: bool = False,
        calls: Callable[[], int] | None = None) -> dict[str, Any]:
    expected = floor()
    started, wall = clock.now(), time.perf_counter()
    records = asyncio.run(drain(con, devices, discover))
    return {**expected, "calls": calls() if calls else world.calls,
            "rejected": world.rejected,
            "time": clock.now() - started, "wall": time.perf_counter() - wall,
            "got": records}


def fmt(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.2f} h"
    if seconds >= 60:
        return f"{seconds / 60:.1f} min"
    return f"{seconds:.0f} s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, nargs="+", default=[1, 10, 100])
    parser.add_argument("--vendors", nargs="+", default=["zentra", "tandd", "climkit",
                                                         "copper"])
    parser.add_argument("--output", type=Path, default=ROOT / "BENCHMARKS.md")
    args = parser.parse_args()
    rows = []
    total = time.perf_counter()
    benches = {"zentra": ("ZENTRA v4, 5-minute records", zentra),
               "tandd": ("T&D WebStorage, 10-minute readings", tandd),
               "climkit": ("Climkit, 15-minute meter data", climkit),
               "copper": ("Copper, hourly usage", copper)}
    for vendor, bench in (benches[name] for name in args.vendors):
        for n in args.devices:
            result = bench(n)
            print(vendor, n, result, file=sys.stderr)
            assert result["rejected"] == 0, "the emulator answered 429"
            assert result["got"] >= result["records"], "readings were lost"
            call_ratio = result["calls"] / result["floor_calls"]
            time_ok = result["time"] <= 1.10 * result["floor_time"] + 1.0
            rows.append(
                f"| {vendor} | {n} | {result['records']:,} | {result['calls']:,} | "
                f"{result['floor_calls']:,} | {call_ratio:.2f}x | {fmt(result['time'])} | "
                f"{fmt(result['floor_time'])} | "
                + (f"{result['time'] / result['floor_time']:.2f}x"
                   if result["floor_time"] else "-")
                + f" | {'yes' if call_ratio <= 1.05 and time_ok else '**no**'} | "
                f"{result['wall']:.1f} s |")
    command = "make bench" if len(sys.argv) == 1 else "python bench/backfill.py " + \
        " ".join(sys.argv[1:])
    text = "\n".join([
        "## Backfill: calls and time against the documented limits",
        "",
        f"Command: `{command}` ({time.perf_counter() - total:.0f} s of wall time, "
        f"{dt.datetime.now(dt.UTC):%Y-%m-%d}, same machine as above). Each connector pulls "
        "one year from its emulator in-process on a virtual clock; the emulator enforces "
        "the documented limits and answered no 429. Floor: the fewest calls the page sizes "
        "allow, and the earliest start of the last call under the documented limits "
        "(bursting at the start of each window). Targets: calls <= 1.05x, time <= 1.10x.",
        "",
        "| vendor | devices | records | calls | floor calls | ratio | virtual time | "
        "floor time | ratio | met | wall time |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        "ZENTRA: 1 call per minute per device and 60 per minute per token, 2,000 records "
        "per call (mrid cursor). T&D: 20 `data` calls per minute per account and 160,000 "
        "readings per hour per device, 65,535 readings per call; a year of 10-minute "
        "readings fits one call per logger. Climkit: 1 request per second; discovery "
        "(site list, site info, meter list; the sensor list is not limited) and then one "
        "validated and one raw call per meter-year; records are 15-minute periods. Copper: "
        "100 requests per hour and 1,000 per day; the premise and meter listings, then one "
        "hourly usage call per meter-year; records are hourly buckets.",
    ])
    replace_section(args.output, "backfill", text)
    print(text)


if __name__ == "__main__":
    main()

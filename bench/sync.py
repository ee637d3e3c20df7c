"""Sync benchmark: all four vendors at once, and the write rate of a real-clock demo sync.

(1) One `sync_all` over the four emulators in-process on a virtual clock, 10 devices each,
    a year of history: virtual time beside the sum (and the largest) of the per-vendor
    floors computed from the documented limits, and readings written.
(2) The `meterhub demo` sync on the real clock against the emulators as HTTP servers on
    loopback: readings written per second of wall time.
Run: ``make bench`` or ``python bench/sync.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import math
import sys
import tempfile
import time
from pathlib import Path

import httpx

import meterhub
from meterhub.clock import VirtualClock
from meterhub.config import parse
from meterhub.demo import config_text, emulators
from meterhub.emulators import climkit, copper, tandd, zentra
from meterhub.sync import sync_all

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sections import replace_section

ROOT = Path(__file__).resolve().parents[1]


def multi_vendor(devices: int, workdir: Path) -> dict[str, float]:
    clock = VirtualClock()
    worlds = {"tahmo": (zentra, zentra.ZentraWorld.create(clock, devices=devices, days=365)),
              "lab": (tandd, tandd.TanddWorld.create(clock, devices=devices, days=365)),
              "site": (climkit, climkit.ClimkitWorld.create(clock, sites=1, meters=devices,
                                                            days=365)),
              "homes": (copper, copper.CopperWorld.create(clock, meters=devices, days=365))}
    sources = parse({"source": [
        {"name": "tahmo", "type": "zentra", "base_url": "https://tahmo.zentracloud.com",
         "token": "emulator-token", "devices": sorted(worlds["tahmo"][1].devices)},
        {"name": "lab", "type": "tandd", "api_key": tandd.API_KEY,
         "login_id": tandd.LOGIN_ID, "login_pass": tandd.LOGIN_PASS},
        {"name": "site", "type": "climkit", "username": climkit.USERNAME,
         "password": climkit.PASSWORD},
        {"name": "homes", "type": "copper", "client_id": copper.CLIENT_ID,
         "client_secret": copper.CLIENT_SECRET, "enterprise_id": copper.ENTERPRISE},
    ]}, environ={}).sources
    transports = {name: httpx.ASGITransport(app=module.create_app(world))
                  for name, (module, world) in worlds.items()}
    # floors from the documented limits (see the backfill section for each on its own)
    zentra_calls = devices * math.ceil(365 * 288 / 2000)
    floors = {
        "ZENTRA": max((math.ceil(365 * 288 / 2000) - 1) * 60.0,
                      (math.ceil(zentra_calls / 60) - 1) * 60.0),
        "T&D": (math.ceil((devices + 1) / 20) - 1) * 60.0,
        # Climkit: 3 discovery calls, 2 per meter and 1 for the site's sensor, 1 a second
        "Climkit": float(3 + 2 * devices + 1 - 1),
        "Copper": (math.ceil((2 + devices) / 100) - 1) * 3600.0,
    }
    store = workdir / "multi.duckdb"
    with meterhub.open(f"duckdb:///{store}") as hub:
        started, wall = clock.now(), time.perf_counter()
        results = asyncio.run(sync_all(hub, sources, clock=clock, transports=transports))
        elapsed, wall = clock.now() - started, time.perf_counter() - wall
        assert all(r.error is None and r.failed == 0 for r in results), results
        readings = hub.count()
    rejected = sum(world.rejected for _, world in worlds.values())
    assert rejected == 0, "an emulator answered 429"
    return {"time": elapsed, "sum_floor": sum(floors.values()),
            "max_floor": max(floors.values()), "readings": readings, "wall": wall,
            **{f"floor_{k}": v for k, v in floors.items()}}


def demo_rate(workdir: Path) -> dict[str, float]:
    store = workdir / "demo.duckdb"
    with emulators(devices=3) as served:
        text = config_text(served, f"duckdb:///{store}")
        import tomllib

        sources = parse(tomllib.loads(text), environ={}).sources
        with meterhub.open(f"duckdb:///{store}") as hub:
            wall = time.perf_counter()
            results = asyncio.run(sync_all(hub, sources))
            wall = time.perf_counter() - wall
            assert all(r.error is None and r.failed == 0 for r in results), results
            readings = hub.count()
    return {"readings": readings, "wall": wall}


def fmt(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=10)
    parser.add_argument("--output", type=Path, default=ROOT / "BENCHMARKS.md")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="meterhub-sync-bench-") as tmp:
        multi = multi_vendor(args.devices, Path(tmp))
        print("multi-vendor", multi, file=sys.stderr)
        demo = demo_rate(Path(tmp))
        print("demo", demo, file=sys.stderr)
    command = "make bench" if len(sys.argv) == 1 else "python bench/sync.py " + " ".join(
        sys.argv[1:])
    floors = ", ".join(f"{k[6:]} {fmt(v)}" for k, v in multi.items() if k.startswith("floor_"))
    text = "\n".join([
        "## Sync: all vendors at once, and the write rate of a real sync",
        "",
        f"Command: `{command}` ({dt.datetime.now(dt.UTC):%Y-%m-%d}, same machine as above).",
        "",
        "| measurement | meterhub | reference | ratio |",
        "|---|---|---|---|",
        f"| one `sync` of four vendors x {args.devices} devices, a year each, virtual clock "
        f"({multi['readings']:,.0f} readings stored, {multi['wall']:.0f} s of wall time) | "
        f"{fmt(multi['time'])} | sum of the per-vendor floors {fmt(multi['sum_floor'])} "
        f"({floors}) | {multi['time'] / multi['sum_floor']:.2f}x the sum; "
        f"{multi['time'] / multi['max_floor']:.2f}x the largest floor |",
        f"| `meterhub demo` sync on the real clock, emulators on loopback HTTP, 3 devices of "
        f"each vendor, 6.9 days | {demo['readings'] / demo['wall']:,.0f} readings/s written "
        f"({demo['readings']:,.0f} in {demo['wall']:.1f} s) | - | - |",
        "",
        "Sources run concurrently, so a multi-vendor sync takes about the longest vendor's "
        "floor, not their sum. The demo's rate is bound by Climkit's one request a second "
        "(its 4 s floor), not by the store.",
    ])
    replace_section(args.output, "sync", text)
    print(text)


if __name__ == "__main__":
    main()

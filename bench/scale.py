"""The embedded store from 1 M to 300 M readings: what grows and what stays flat.

For each size a new DuckDB store is filled the way a sync round writes: 100 one-minute
channels, each write a day of every channel (144,000 readings), oldest first. Then, on that
store, in this order:
- write rate (readings/s over the whole fill) and the filling process's peak memory;
- bytes per reading on disk before and after `meterhub compact`, compact's time and its
  peak memory (in its own process);
- single-series reads in process: an hourly aggregate of one channel over one day, and the
  newest page of 1,000 readings of one channel;
- the newest reading of every channel (`Hub.channels`, kept at write time) beside the scan
  that answered it before (count, first and newest of every channel);
- the small aggregate over HTTP: `meterhub serve` on the store, wrk -t1 -c16 for 5 s, a
  different day each request (computed, not from memory).
Run: ``python bench/scale.py`` (all sizes: about 15 minutes and 5 GB of disk) or
``--sizes 1,10`` (millions); ``make bench`` runs it whole.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

import meterhub
from meterhub.keys import new_key
from meterhub.model import TS_TYPE

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from api import distinct, server, wrk  # noqa: E402
from sections import replace_section  # noqa: E402

CHANNELS = 100
DAY = 1440
START = np.datetime64("2015-01-01T00:00:00", "us")


def day_of_all(index: int) -> pa.Table:
    """Day ``index`` of every channel's one-minute readings: a slow drift with noise."""
    ts = START + (index * DAY + np.arange(DAY)) * np.timedelta64(60, "s")
    n = DAY * CHANNELS
    rng = np.random.default_rng(index)
    base = np.repeat(np.arange(CHANNELS) % 30, DAY).astype(np.float64)
    return pa.table({
        "source": pa.array(["bench"] * n), "device": pa.array(
            [f"station-{i:03}" for i in range(CHANNELS) for _ in range(DAY)]),
        "channel": pa.array(["temperature"] * n),
        "ts": pa.array(np.tile(ts, CHANNELS)).cast(TS_TYPE),
        "value": np.round(base + rng.normal(0, 0.5, n), 2), "unit": pa.array(["degC"] * n)})


def days_of(millions: int) -> int:
    """Whole days of all channels in about ``millions`` of readings."""
    return millions * 1_000_000 // (DAY * CHANNELS)


def fill(path: Path, days: int) -> dict[str, float]:
    """Fill in a child process (its own peak memory); readings/s and peak MB."""
    code = ("import sys, time, json, resource, meterhub\n"
            "sys.path.insert(0, sys.argv[3])\nfrom scale import day_of_all\n"
            "days = int(sys.argv[2])\nbegun = time.perf_counter()\n"
            "with meterhub.open(sys.argv[1]) as hub:\n"
            "    for d in range(days):\n        hub.write(day_of_all(d), source='bench')\n"
            "print(json.dumps({'seconds': time.perf_counter() - begun, 'peak_mb': "
            "resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))\n")
    done = subprocess.run([sys.executable, "-c", code, f"duckdb:///{path}", str(days),
                           str(ROOT / "bench")], capture_output=True, text=True, check=True)
    out = json.loads(done.stdout.splitlines()[-1])
    return {"rate": days * DAY * CHANNELS / out["seconds"], "fill_peak_mb": out["peak_mb"]}


def compact(path: Path) -> dict[str, float]:
    code = ("import sys, time, json, resource, meterhub\nbegun = time.perf_counter()\n"
            "with meterhub.open(sys.argv[1]) as hub:\n    hub.compact()\n"
            "print(json.dumps({'seconds': time.perf_counter() - begun, 'peak_mb': "
            "resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))\n")
    done = subprocess.run([sys.executable, "-c", code, f"duckdb:///{path}"],
                          capture_output=True, text=True, check=True)
    out = json.loads(done.stdout.splitlines()[-1])
    return {"compact_s": out["seconds"], "compact_peak_mb": out["peak_mb"]}


def median_ms(call: Any, repeat: int = 15) -> float:
    call()
    times = []
    for _ in range(repeat):
        begun = time.perf_counter()
        call()
        times.append(time.perf_counter() - begun)
    return 1000 * statistics.median(times)


def reads(path: Path, days: int) -> dict[str, float]:
    last = (START + days * DAY * np.timedelta64(60, "s")).astype(dt.datetime)
    one_day = {"start": (last - dt.timedelta(days=2)).isoformat() + "Z",
               "end": (last - dt.timedelta(days=1)).isoformat() + "Z"}
    with meterhub.open(f"duckdb:///{path}") as hub:
        con = hub.store._con  # type: ignore[attr-defined]
        return {
            "hourly_ms": median_ms(lambda: hub.aggregate(
                device="station-042", every="1h", as_="arrow", **one_day)),
            "page_ms": median_ms(lambda: hub.page(
                device="station-042", limit=1000,
                start=(last - dt.timedelta(days=1)).isoformat() + "Z")[0].read_all()),
            "newest_ms": median_ms(lambda: hub.channels(as_="arrow")),
            "newest_scan_ms": median_ms(lambda: con.execute(
                "SELECT series_id, count(*), min(ts), max(ts) FROM readings "
                "GROUP BY series_id").fetchall(), repeat=3),
        }


def over_http(path: Path, folder: Path) -> dict[str, float]:
    with meterhub.open(f"duckdb:///{path}") as hub:
        record, key = new_key("bench", "read", "100000000/minute")
        hub.store.add_key(record)
    hourly = "/api/v1/aggregates?device=station-042&every=1h&fn=mean&fn=min&fn=max&fn=count"
    script = distinct(hourly, folder, day=True)
    with server([sys.executable, "-m", "meterhub.cli", "serve", "--store",
                 f"duckdb:///{path}", "--port", "0"]) as base:
        rate, p99 = wrk(f"{base}{hourly}", key, seconds=5, script=script)
    return {"http_rps": rate, "http_p99": p99}


def measure(millions: int, folder: Path) -> dict[str, float]:
    path = folder / f"scale{millions}.duckdb"
    days = days_of(millions)
    readings = days * DAY * CHANNELS
    row: dict[str, float] = {"millions": readings / 1e6}
    row |= fill(path, days)
    row["bytes_before"] = path.stat().st_size / readings
    row |= compact(path)
    row["bytes_after"] = path.stat().st_size / readings
    row |= reads(path, days)
    row |= over_http(path, folder)
    print(json.dumps(row), flush=True)
    for leftover in folder.glob(f"scale{millions}.duckdb*"):
        if leftover.is_dir():
            shutil.rmtree(leftover)
        else:
            leftover.unlink()
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,10,100,300", help="millions of readings, "
                        "comma-separated (default 1,10,100,300)")
    parser.add_argument("--no-write", action="store_true", help="print, do not update "
                        "BENCHMARKS.md")
    args = parser.parse_args()
    started = time.monotonic()
    rows = []
    with tempfile.TemporaryDirectory(dir=os.environ.get("METERHUB_BENCH_DIR")) as tmp:
        for millions in (int(s) for s in args.sizes.split(",")):
            rows.append(measure(millions, Path(tmp)))
    first = rows[0]
    lines = [
        "## Scale: the embedded store from 1 M to 300 M readings",
        "",
        f"Command: `make bench` (`python bench/scale.py`, {time.monotonic() - started:.0f} s, "
        f"{dt.datetime.now(dt.UTC).date().isoformat()}, same machine as above). 100 "
        "one-minute channels; each write a day of all of them (144,000 readings), as a sync "
        "round writes; DuckDB's memory limit at its default (1 GB). Reads are medians in "
        f"process; the last columns are `meterhub serve` under wrk -c16, a different day "
        "each request. Ratios are to the smallest store.",
        "",
        "| readings | write rate | fill peak memory | bytes/reading | compact | compact peak "
        "memory | bytes/reading compacted | hourly, one day | newest page of 1,000 | "
        "newest of every channel | the scan it replaced | HTTP aggregate req/s | p99 |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['millions']:,.1f} M | {row['rate'] / 1e6:.2f} M/s | "
            f"{row['fill_peak_mb']:,.0f} MB | {row['bytes_before']:.1f} | "
            f"{row['compact_s']:.1f} s | {row['compact_peak_mb']:,.0f} MB | "
            f"{row['bytes_after']:.1f} | {row['hourly_ms']:.2f} ms "
            f"({row['hourly_ms'] / first['hourly_ms']:.1f}x) | {row['page_ms']:.2f} ms "
            f"({row['page_ms'] / first['page_ms']:.1f}x) | {row['newest_ms']:.2f} ms "
            f"({row['newest_ms'] / first['newest_ms']:.1f}x) | "
            f"{row['newest_scan_ms']:,.1f} ms | {row['http_rps']:,.0f} | "
            f"{row['http_p99']:.1f} ms |")
    text = "\n".join(lines)
    print(text)
    if not args.no_write:
        replace_section(ROOT / "BENCHMARKS.md", "scale", text)


if __name__ == "__main__":
    main()

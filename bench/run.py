"""Store benchmarks; writes BENCHMARKS.md.  Run: ``make bench`` (or python bench/run.py).

(a) idempotent write of 10 M readings vs a raw DuckDB Arrow append of the same table;
(b) hourly mean/min/max of one 1-minute channel over a year inside a 100-channel store, vs
    hand-written DuckDB SQL and vs pandas reading the history from Parquet and resampling;
(c) daily consumption of 100 counter channels over a year of 15-minute data in
    Europe/Amsterdam, vs hand-written DuckDB SQL and vs pandas from Parquet.

Every reference runs in the same process on the same data, so ratios are comparable even
when the machine is noisy.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

import meterhub

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sections import replace_section

ROOT = Path(__file__).resolve().parents[1]
YEAR_START = np.datetime64("2023-01-01T00:00:00", "us")


def timed(fn: Callable[[], Any], repeat: int) -> tuple[float, float, float, Any]:
    """median, min, max seconds over ``repeat`` runs, and the last result."""
    return timed_in_turn({"": fn}, repeat)[""]


def timed_in_turn(calls: dict[str, Callable[[], Any]], repeat: int
                  ) -> dict[str, tuple[float, float, float, Any]]:
    """`timed` of each call, the calls taking turns (each round runs every one once): what
    else the machine does meanwhile (a merge, a neighbour on the host) falls on all alike,
    where timing one's repeats after another's put a slow minute on one only."""
    times: dict[str, list[float]] = {key: [] for key in calls}
    results: dict[str, Any] = {}
    for _ in range(repeat):
        for key, call in calls.items():
            gc.collect()
            begun = time.perf_counter()
            results[key] = call()
            times[key].append(time.perf_counter() - begun)
    return {key: (statistics.median(spent), min(spent), max(spent), results[key])
            for key, spent in times.items()}


def readings_table(devices: int, channels: int, steps: int, step_us: int,
                   values: np.ndarray | None = None, unit: str = "kWh",
                   kind: str | None = None) -> pa.Table:
    """Synthetic readings in arrival (timestamp-major) order, as a harvester writes them."""
    n_series = devices * channels
    n = n_series * steps
    series = np.tile(np.arange(n_series), steps)
    ts = YEAR_START.astype("int64") + np.repeat(np.arange(steps, dtype=np.int64) * step_us,
                                                n_series)
    dev_names = pa.array([f"dev{i:04d}" for i in range(devices)])
    ch_names = pa.array([f"ch{i}" for i in range(channels)])
    columns = {
        "source": pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, np.int32)),
                                                 pa.array(["bench"])).cast(pa.string()),
        "device": dev_names.take(pa.array(series // channels)),
        "channel": ch_names.take(pa.array(series % channels)),
        "ts": pa.array(ts, pa.timestamp("us", tz="UTC")),
        "value": pa.array(np.random.default_rng(1).random(n) if values is None else values),
        "unit": pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, np.int32)),
                                               pa.array([unit])).cast(pa.string()),
    }
    if kind is not None:
        columns["kind"] = pa.DictionaryArray.from_arrays(
            pa.array(np.zeros(n, np.int32)), pa.array([kind])).cast(pa.string())
    return pa.table(columns)


def bench_write(workdir: Path, rows: int, repeat: int) -> list[dict[str, Any]]:
    steps = rows // 250
    table = readings_table(50, 5, steps, 60_000_000, unit="kW")  # random levels: instant
    n = table.num_rows

    def raw() -> None:
        path = workdir / "raw.duckdb"
        path.unlink(missing_ok=True)
        con = duckdb.connect(str(path))
        con.execute("CREATE TABLE readings (source VARCHAR, device VARCHAR, channel VARCHAR, "
                    "ts TIMESTAMPTZ, value DOUBLE, unit VARCHAR)")
        con.register("incoming", table)
        con.execute("INSERT INTO readings SELECT * FROM incoming")
        con.close()

    def ours() -> None:
        path = workdir / "ours.duckdb"
        path.unlink(missing_ok=True)
        with meterhub.open(f"duckdb:///{path}") as hub:
            hub.write(table)

    def ours_again() -> None:
        with meterhub.open(f"duckdb:///{workdir / 'ours.duckdb'}") as hub:
            hub.write(table)

    raw_t = timed(raw, repeat)
    ours_t = timed(ours, repeat)
    again_t = timed(ours_again, repeat)
    with meterhub.open(f"duckdb:///{workdir / 'ours.duckdb'}") as hub:
        assert hub.count() == n, "the rewrite must leave one row per key"
    return [
        {"case": f"(a) write {n / 1e6:.0f} M readings, new store", "ours": ours_t,
         "refs": {"raw DuckDB Arrow append": raw_t}, "rows": n,
         "target": ("ratio of rates >= 0.2", lambda r: raw_t[0] / ours_t[0] >= 0.2)},
        {"case": f"(a') rewrite the same {n / 1e6:.0f} M readings (all keys replaced)",
         "ours": again_t, "refs": {"raw DuckDB Arrow append": raw_t}, "rows": n,
         "target": None},
    ]


def to_parquet(hub: meterhub.Hub, path: Path) -> Path:
    """The store's whole history as one Parquet file, what a pandas user would read."""
    with pq.ParquetWriter(path, meterhub.READING_SCHEMA) as writer:
        for batch in hub.scan():
            writer.write_batch(batch)
    return path


def bench_hourly(workdir: Path, repeat: int) -> dict[str, Any]:
    """99 channels of 15-minute data plus one 1-minute channel, one year (PERF.md 2c)."""
    quarter = readings_table(99, 1, 35_040, 900_000_000, unit="°C", kind="instant")
    minute = readings_table(1, 1, 525_600, 60_000_000, unit="°C", kind="instant")
    minute = minute.set_column(1, "device", pa.array(["minute"] * minute.num_rows))
    path = workdir / "hourly.duckdb"
    path.unlink(missing_ok=True)
    hub = meterhub.open(f"duckdb:///{path}")
    hub.write(quarter)
    hub.write(minute)
    hub.compact()
    parquet = to_parquet(hub, workdir / "hourly.parquet")
    con = hub.store._con  # type: ignore[attr-defined]  # the same file, hand-written SQL
    series_id = con.execute("SELECT series_id FROM channels WHERE device = 'minute'"
                            ).fetchall()[0][0]

    def ours() -> pa.Table:
        return hub.aggregate(device="minute", channel="ch0", every="1h",
                             fn=["mean", "min", "max"], as_="arrow")

    def sql() -> pa.Table:
        return con.sql(f"""
            SELECT date_trunc('hour', ts) AS bucket, avg(value) AS mean, min(value) AS min,
                   max(value) AS max
            FROM readings WHERE series_id = {series_id} GROUP BY bucket ORDER BY bucket
            """).to_arrow_table()

    def pandas_ref() -> pd.DataFrame:
        frame = pd.read_parquet(parquet, columns=["device", "channel", "ts", "value"])
        one = frame[(frame["device"] == "minute") & (frame["channel"] == "ch0")]
        return one.set_index("ts")["value"].resample("h").agg(["mean", "min", "max"])

    ours_t, sql_t, pandas_t = (timed(ours, repeat), timed(sql, repeat),
                               timed(pandas_ref, repeat))
    check = ours_t[3]
    reference = pandas_t[3]
    np.testing.assert_allclose(check.column("mean").to_numpy(), reference["mean"].to_numpy())
    assert check.num_rows == 8760
    hub.close()
    return {"case": "(b) hourly mean/min/max, one 1-minute channel, one year, "
                    "100-channel store (4.0 M rows)",
            "ours": ours_t, "refs": {"hand-written DuckDB SQL": sql_t,
                                     "pandas: read Parquet, filter, resample": pandas_t},
            "target": ("<= 1.5x SQL and >= 3x faster than pandas",
                       lambda r: ours_t[0] <= 1.5 * sql_t[0] and pandas_t[0] >= 3 * ours_t[0])}


def bench_daily(workdir: Path, repeat: int) -> dict[str, Any]:
    steps = 35_040
    rng = np.random.default_rng(7)
    rises = rng.gamma(1.0, 0.1, size=steps * 100).reshape(steps, 100)
    values = (1000.0 + np.cumsum(rises, axis=0)).reshape(-1)
    table = readings_table(100, 1, steps, 900_000_000, values=values, kind="counter")
    path = workdir / "daily.duckdb"
    path.unlink(missing_ok=True)
    hub = meterhub.open(f"duckdb:///{path}")
    hub.write(table)
    hub.compact()
    parquet = to_parquet(hub, workdir / "daily.parquet")
    con = hub.store._con  # type: ignore[attr-defined]
    tz = "Europe/Amsterdam"

    def ours() -> pa.Table:
        return hub.aggregate(every="1d", tz=tz, fn="consumption", as_="arrow")

    def sql() -> pa.Table:
        # What one writes by hand: the index at each local midnight (the last reading at or
        # before it) minus the one a day earlier.
        return con.sql(f"""
            SELECT series_id, day, last - lag(last) OVER (PARTITION BY series_id ORDER BY day)
                   AS consumption
            FROM (SELECT series_id,
                         date_trunc('day', timezone('{tz}', (ts - INTERVAL 1 MICROSECOND)
                                                   ::TIMESTAMPTZ)) AS day,
                         arg_max(value, ts) AS last
                  FROM readings GROUP BY ALL)
            ORDER BY series_id, day""").to_arrow_table()

    def pandas_ref() -> pd.DataFrame:
        frame = pd.read_parquet(parquet, columns=["device", "ts", "value"])
        # a reading exactly at midnight closes the day before (the store's convention)
        frame["day"] = (frame["ts"] - pd.Timedelta(1, "us")).dt.tz_convert(tz).dt.normalize()
        last = frame.groupby(["device", "day"], sort=True)["value"].last()
        return last.groupby(level="device").diff().dropna()

    ours_t, sql_t, pandas_t = (timed(ours, repeat), timed(sql, repeat),
                               timed(pandas_ref, repeat))
    # The three must agree wherever the references define a value (day 2 onwards).
    got = ours_t[3].to_pandas()
    ref = pandas_t[3].reset_index()
    got_days = got[got["bucket"] > got["bucket"].min()]
    np.testing.assert_allclose(np.sort(got_days["consumption"].to_numpy()),
                               np.sort(ref["value"].to_numpy()), rtol=1e-9)
    hub.close()
    return {"case": "(c) daily consumption, 100 counters, one year of 15-minute data, "
                    "Europe/Amsterdam (3.5 M rows)",
            "ours": ours_t, "refs": {"hand-written DuckDB SQL (TIMESTAMPTZ)": sql_t,
                                     "pandas: read Parquet, local days, diff": pandas_t},
            "target": ("<= 1.5x SQL and >= 3x faster than pandas",
                       lambda r: ours_t[0] <= 1.5 * sql_t[0] and pandas_t[0] >= 3 * ours_t[0])}


def fmt_time(t: tuple[float, float, float, Any]) -> str:
    if t[0] >= 1:
        return f"{t[0]:.2f} s ({t[1]:.2f}-{t[2]:.2f})"
    return f"{t[0] * 1000:.1f} ms ({t[1] * 1000:.1f}-{t[2] * 1000:.1f})"


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kib = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f", {kib / 1024 / 1024:.0f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    return (f"{os.cpu_count()} vCPU {cpu}{mem}; {platform.system()} {platform.release()}; "
            f"Python {platform.python_version()}, DuckDB {duckdb.__version__}, "
            f"pyarrow {pa.__version__}, pandas {pd.__version__}")


def report(results: list[dict[str, Any]], command: str, seconds: float) -> str:
    lines = [
        "## Store: writes and aggregation",
        "",
        f"Machine: {machine()}.",
        f"Command: `{command}` ({seconds:.0f} s in all, "
        f"{dt.datetime.now(dt.UTC):%Y-%m-%d}). Times are median (min-max) of the runs; every "
        "reference ran in the same process on the same data, so read the ratios rather than "
        "the absolute times (PERF.md saw runs differ by about 20 % on this machine kind).",
        "",
        "| case | meterhub | reference | reference time | ratio | target | met |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        first = True
        for name, ref in r["refs"].items():
            if "rows" in r:
                ours_rate = r["rows"] / r["ours"][0] / 1e6
                ref_rate = r["rows"] / ref[0] / 1e6
                ours_cell = f"{fmt_time(r['ours'])}, {ours_rate:.2f} M rows/s"
                ref_cell = f"{fmt_time(ref)}, {ref_rate:.2f} M rows/s"
                ratio = f"{ours_rate / ref_rate:.2f}x the reference rate"
            else:
                ours_cell = fmt_time(r["ours"])
                ref_cell = fmt_time(ref)
                ratio = (f"{r['ours'][0] / ref[0]:.2f}x the reference time"
                         if r["ours"][0] >= ref[0] else
                         f"{ref[0] / r['ours'][0]:.1f}x faster")
            target = r["target"]
            met = ("yes" if target[1](r) else "**no**") if target else "-"
            lines.append(f"| {r['case'] if first else ''} | {ours_cell if first else ''} | "
                         f"{name} | {ref_cell} | {ratio} | "
                         f"{target[0] if target and first else ''} | {met if first else ''} |")
            first = False
    lines += [
        "",
        "What is measured:",
        "",
        "- (a) `hub.write(table)` of a 10 M-row Arrow table (50 devices x 5 channels x 40,000 "
        "one-minute timestamps in arrival order, string device and channel columns) into a new "
        "store: validation, catalog, in-batch de-duplication check, delete of replaced keys, "
        "insert sorted by (series, ts), and closing the file. The reference appends the same "
        "table into a DuckDB table with no constraints and closes the file. (a') writes the "
        "same table again into the full store, so every key is replaced. Every write also "
        "counts its keys as new, replaced or unchanged (`WriteResult`): a write into new "
        "channels looks nothing up, (a') pays one join of the staged keys against the stored "
        "ones (it was 0.35x the reference rate before that count, on 2026-11-21).",
        "- (b) and (c): the store is compacted (clustered by series and time) before the "
        "queries; the Parquet file for pandas is written from the same store. Results are "
        "checked against each other before the times are reported.",
        "- (c)'s hand-written SQL takes the last index of each local day minus the previous "
        "day's, with DuckDB's ICU time-zone conversion; it ignores counter resets, which "
        "meterhub handles.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--query-repeat", type=int, default=7)
    parser.add_argument("--output", type=Path, default=ROOT / "BENCHMARKS.md")
    args = parser.parse_args()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="meterhub-bench-") as tmp:
        workdir = Path(tmp)
        results = bench_write(workdir, args.rows, args.repeat)
        print("write done", file=sys.stderr)
        results.append(bench_hourly(workdir, args.query_repeat))
        print("hourly done", file=sys.stderr)
        results.append(bench_daily(workdir, args.query_repeat))
    command = "make bench" if len(sys.argv) == 1 else "python bench/run.py " + " ".join(
        sys.argv[1:])
    text = report(results, command, time.perf_counter() - started)
    replace_section(args.output, "store", text)
    print(text)


if __name__ == "__main__":
    main()

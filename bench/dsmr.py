"""DSMR ingest benchmark: telegrams/s through the DSMR-reader v1 endpoint and in process,
beside dsmr-parser's raw parse rate measured in the same run.

(1) raw: dsmr-parser's TelegramParser(V5).parse with CRC, one process, no storage;
(2) in process: meterhub's parse_telegram (CRC, checks, readings rows) and a store write
    per 100 telegrams (what the group commit does under load);
(3) HTTP: `meterhub serve` in its own process, 8 client threads each on a keep-alive
    connection POSTing form-encoded telegrams to /api/v1/datalogger/dsmrreading for 10 s;
    every answer must be 201.
Telegrams are DSMR 5 three-phase with gas, each with its own time stamp and CRC.
Run: ``make bench`` or ``python bench/dsmr.py``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import statistics
import sys
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path

import pyarrow as pa
from dsmr_parser import telegram_specifications
from dsmr_parser.parsers import TelegramParser

import meterhub
from meterhub.dsmr import parse_telegram
from meterhub.keys import new_key

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from tests.dsmr.telegrams import v5  # noqa: E402

from api import server  # noqa: E402
from sections import replace_section  # noqa: E402


def corpus(n: int) -> list[str]:
    """Telegrams 5 s apart; the gas meter reports every 5 minutes (as DSMR 5 meters do), so
    60 telegrams in a row repeat its last reading."""
    start = dt.datetime(2024, 6, 1, tzinfo=dt.UTC)  # only its wall-clock digits are used
    telegrams = []
    for i in range(n):
        at = start + dt.timedelta(seconds=5 * i)
        gas_at = start + dt.timedelta(minutes=5 * (i // 60))
        telegrams.append(v5(stamp=at.strftime("%y%m%d%H%M%SS"), t1=f"{1000 + i / 1000:010.3f}",
                            gas_stamp=gas_at.strftime("%y%m%d%H%M%SS"),
                            gas=f"{100 + i // 60 / 100:09.3f}"))
    return telegrams


def rate(work: int, seconds: float) -> float:
    return work / seconds


def raw_parse(telegrams: list[str]) -> float:
    parser = TelegramParser(telegram_specifications.V5)
    runs = []
    for _ in range(3):
        started = time.perf_counter()
        for text in telegrams:
            parser.parse(text)
        runs.append(rate(len(telegrams), time.perf_counter() - started))
    return statistics.median(runs)


def in_process(telegrams: list[str], workdir: Path) -> float:
    runs = []
    now = dt.datetime(2024, 6, 2, tzinfo=dt.UTC)
    for run in range(3):
        with meterhub.open(f"duckdb:///{workdir / f'inproc{run}.duckdb'}") as hub:
            started = time.perf_counter()
            pending = []
            for text in telegrams:
                pending.append(parse_telegram(text, now=now))
                if len(pending) == 100:
                    hub.write(pa.concat_tables(pending), origin="bench")
                    pending = []
            if pending:
                hub.write(pa.concat_tables(pending), origin="bench")
            runs.append(rate(len(telegrams), time.perf_counter() - started))
    return statistics.median(runs)


def over_http(telegrams: list[str], workdir: Path, clients: int = 8,
              seconds: float = 10.0) -> tuple[float, float]:
    store = workdir / "http.duckdb"
    with meterhub.open(f"duckdb:///{store}") as hub:
        record, key = new_key("bench", "write", "100000000/minute")
        hub.store.add_key(record)
    bodies = [urllib.parse.urlencode({"telegram": t}).encode() for t in telegrams]
    done, errors, latencies = [0] * clients, [0] * clients, [[] for _ in range(clients)]
    with server([sys.executable, "-m", "meterhub.cli", "serve", "--store",
                 f"duckdb:///{store}", "--port", "0"]) as base:
        host, port = base.removeprefix("http://").split(":")
        stop = time.monotonic() + seconds

        def client(number: int) -> None:
            conn = http.client.HTTPConnection(host, int(port), timeout=30)
            i = number
            while time.monotonic() < stop:
                body = bodies[i % len(bodies)]
                started = time.perf_counter()
                conn.request("POST", "/api/v1/datalogger/dsmrreading", body=body, headers={
                    "X-AUTHKEY": key, "Content-Type": "application/x-www-form-urlencoded"})
                response = conn.getresponse()
                response.read()
                latencies[number].append(time.perf_counter() - started)
                if response.status != 201:
                    errors[number] += 1
                done[number] += 1
                i += clients
            conn.close()

        started = time.monotonic()
        threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.monotonic() - started
    if any(errors):
        raise RuntimeError(f"{sum(errors)} pushes did not get 201")
    every = sorted(x for per in latencies for x in per)
    p99 = every[int(0.99 * (len(every) - 1))] * 1000
    return rate(sum(done), elapsed), p99


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    started = time.monotonic()
    telegrams = corpus(3000)
    raw = raw_parse(telegrams)
    with tempfile.TemporaryDirectory() as tmp:
        local = in_process(telegrams, Path(tmp))
        http_rate, p99 = over_http(telegrams, Path(tmp))
    lines = [
        "## DSMR: telegram ingest",
        "",
        f"Command: `make bench` (`python bench/dsmr.py`, {time.monotonic() - started:.0f} s, "
        f"{dt.datetime.now(dt.UTC).date().isoformat()}, same machine as above). DSMR 5 "
        "three-phase telegrams with gas (about 830 bytes), each with its own stamp and CRC. "
        "The reference is dsmr-parser's raw parse with CRC in the same run.",
        "",
        "| path | telegrams/s | vs raw parse | target | met |",
        "|---|---|---|---|---|",
        f"| dsmr-parser raw parse (CRC, no storage) | {raw:,.0f} | 1.00x | | |",
        f"| in process: parse_telegram + a store write per 100 | {local:,.0f} | "
        f"{local / raw:.2f}x | | |",
        f"| HTTP: POST /api/v1/datalogger/dsmrreading, 8 keep-alive clients, 10 s "
        f"(p99 {p99:.0f} ms, every answer 201) | {http_rate:,.0f} | {http_rate / raw:.2f}x | "
        f">= 0.70x | {'yes' if http_rate >= 0.7 * raw else 'no'} |",
        "",
        "DSMR-reader 5.11 on this machine kind (DSMR-READER.md): 70 pushes/s with one client, "
        "122 with eight.",
        "",
        "The HTTP path is bound by the store's fixed cost per write (about 20 ms whether it "
        "holds 1 or 8 telegrams: staging, the replace-by-key delete, catalog lookups, "
        "commit), so 8 clients give about 8 telegrams per commit. The in-process figure "
        "(a write per 100) shows the parse side is not the limit.",
    ]
    text = "\n".join(lines)
    print(text)
    if not args.no_write:
        replace_section(ROOT / "BENCHMARKS.md", "dsmr", text)


if __name__ == "__main__":
    main()

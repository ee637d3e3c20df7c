"""Peak memory of a real `meterhub serve` for the largest batch POST /api/v1/readings takes.

For each push format the server accepts (JSON, CSV) and two shapes of reading (narrow:
the five required fields with short names; wide: every optional field too, with long
names), a fresh `meterhub serve` over a new store gets one reading (so that what any push
loads once is in the "before" figure), then one batch as large as the format's limits
allow: just under the byte limit or at the readings limit, whichever comes first. The
script reads the server's peak resident set (VmHWM in /proc/<pid>/status; Linux only)
before and after, and the push's wall time. Bodies are generated into a temporary file
and streamed from there; the client is another process, so its memory is not counted.

The DSMR-reader paths take bodies of at most 64 kB; for each (v1 telegram push, v2 reading,
v2 contract) a fresh server gets 200 bodies of just under that size (a valid item and a
filler field the path ignores) and its peak is read the same way.

Run: ``python bench/push_memory.py`` (about a minute). ``--mb 100`` and ``--rows N`` push
other sizes (over the limits the answer is 413); ``--runs 3`` repeats each case (the table
shows the median time and the highest peak).
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import httpx

import meterhub
from meterhub.keys import new_key

MEDIA = {"json": "application/json", "csv": "text/csv"}
SHAPES = ("narrow", "wide")
FIELDS = {"narrow": ["device", "channel", "ts", "value", "unit"],
          "wide": ["source", "device", "channel", "ts", "value", "unit", "quality", "seq",
                   "kind", "quantity"]}


def limits(fmt: str) -> tuple[int, int]:
    """The largest body the server takes for ``fmt`` in bytes, and the most readings."""
    try:
        from meterhub.api.push import MAX_PUSH_ROWS, PUSH_LIMITS
    except ImportError:  # before per-format limits: one byte limit, no readings limit
        from meterhub.api.app import MAX_PUSH_BYTES  # type: ignore[attr-defined]
        return int(MAX_PUSH_BYTES), 10**12
    return PUSH_LIMITS[MEDIA[fmt]], MAX_PUSH_ROWS


def readings(shape: str, devices: int = 20) -> Iterator[list[object]]:
    """``devices`` devices x 3 channels, one reading a minute from 2020 on, without end."""
    long = shape == "wide"
    minute = 0
    while True:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(1_577_836_800 + 60 * minute))
        for d in range(devices):
            device = f"building-7-floor-3-east-wing-meter-{d:03d}" if long else f"dev{d:03d}"
            for channel, unit, quantity in (("power", "kW", "power"),
                                            ("temp", "degC", "temperature"),
                                            ("voltage", "V", "voltage")):
                name = f"{channel}-phase-one-average" if long else channel
                value = round(1 + (minute * 7 + d) % 1000 / 7, 3)
                row = {"source": "bench-logger", "device": device, "channel": name,
                       "ts": stamp, "value": value, "unit": unit, "quality": "ok",
                       "seq": minute, "kind": "instant", "quantity": quantity}
                yield [row[f] for f in FIELDS[shape]]
        minute += 1


def write_body(path: Path, fmt: str, shape: str, size: int, most: int) -> int:
    """A body of at most ``size`` bytes and ``most`` readings; how many it holds."""
    names = FIELDS[shape]
    count = 0
    with path.open("wb") as out:
        if fmt == "json":
            written, sep = 2, b""  # "[" and "]"
            out.write(b"[")
            for row in readings(shape):
                item = (b"{" + b",".join(b'"%s":%s' % (n.encode(), _json(v))
                                         for n, v in zip(names, row, strict=True)) + b"}")
                if written + len(sep) + len(item) > size or count == most:
                    break
                out.write(sep + item)
                written += len(sep) + len(item)
                sep, count = b",", count + 1
            out.write(b"]")
        else:
            head = (",".join(names) + "\n").encode()
            out.write(head)
            written = len(head)
            for row in readings(shape):
                line = (",".join(str(v) for v in row) + "\n").encode()
                if written + len(line) > size or count == most:
                    break
                out.write(line)
                written += len(line)
                count += 1
    return count


def _json(value: object) -> bytes:
    return (b'"%s"' % str(value).encode()) if isinstance(value, str) else str(value).encode()


def vm(pid: int, field: str) -> int:
    """A memory field of /proc/<pid>/status (VmHWM, VmRSS) in bytes."""
    text = Path(f"/proc/{pid}/status").read_text()
    match = re.search(rf"^{field}:\s+(\d+) kB", text, re.M)
    assert match, text
    return int(match.group(1)) * 1024


def measure(fmt: str, shape: str, size: int, most: int, folder: Path) -> dict[str, float]:
    """One fresh server, one reading, then the batch: its figures."""
    store = folder / f"{fmt}-{shape}.duckdb"
    store.unlink(missing_ok=True)
    with meterhub.open(f"duckdb:///{store}") as hub:
        record, key = new_key("bench", "write", "1000000/minute")
        hub.store.add_key(record)
    body, warm = folder / f"body.{fmt}", folder / f"warm.{fmt}"
    count = write_body(body, fmt, shape, size, most)
    write_body(warm, fmt, shape, 10_000, 1)
    process = subprocess.Popen([sys.executable, "-m", "meterhub.cli", "serve", "--store",
                                f"duckdb:///{store}", "--port", "0"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, cwd=folder)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        match = re.search(r"http://127\.0\.0\.1:\d+", line)
        if not match:
            raise RuntimeError(f"server did not start: {line!r}")
        headers = {"X-API-Key": key, "Content-Type": MEDIA[fmt]}
        with httpx.Client(base_url=match.group(0), timeout=600, headers=headers) as client:
            client.post("/api/v1/readings", content=warm.read_bytes()).raise_for_status()
            before = vm(process.pid, "VmHWM")
            started = time.perf_counter()
            with body.open("rb") as handle:
                response = client.post("/api/v1/readings", content=handle,
                                       headers={"Content-Length": str(body.stat().st_size)})
            seconds = time.perf_counter() - started
            if response.status_code != 200 or response.json()["received"] != count:
                raise RuntimeError(f"{fmt}: {response.status_code} {response.text[:300]}")
            peak = vm(process.pid, "VmHWM")
    finally:
        process.terminate()
        process.communicate(timeout=60)
    return {"bytes": body.stat().st_size, "rows": count, "seconds": seconds,
            "before": before, "peak": peak}


def dsmr_bodies(path: str, n: int) -> Iterator[tuple[dict[str, str], bytes]]:
    """``n`` bodies for a DSMR-reader path, each just under its 64 kB limit."""
    from meterhub.api.dsmr_reader.common import MAX_BODY

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.dsmr.telegrams import v5

    for i in range(n):
        if path == "v1":
            stamp = time.strftime("%y%m%d%H%M%S", time.gmtime(1_700_000_000 + 10 * i)) + "W"
            body = urllib.parse.urlencode({"telegram": v5(stamp=stamp)}).encode()
            media = "application/x-www-form-urlencoded"
            body += b"&pad=" + b"x" * (MAX_BODY - len(body) - 100)
        else:
            if path == "v2 reading":
                item: dict[str, object] = {
                    "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                               time.gmtime(1_700_000_000 + 10 * i)),
                    **{f"electricity_{d}_{n}": "1.000" for d in ("delivered", "returned")
                       for n in (1, 2)},
                    "electricity_currently_delivered": "0.5",
                    "electricity_currently_returned": "0"}
            else:
                item = {"start": "2024-01-01", "end": "2024-12-31", "description": "d" * 255,
                        "gas_price": "1.5"}
            text = json.dumps(item)
            body = (text[:-1] + ', "pad": "' + "x" * (MAX_BODY - len(text) - 100) + '"}'
                    ).encode()
            media = "application/json"
        yield {"Content-Type": media}, body


DSMR_URLS = {"v1": "/api/v1/datalogger/dsmrreading",
             "v2 reading": "/api/v2/datalogger/dsmrreading",
             "v2 contract": "/api/v2/consumption/energy-supplier-prices"}


def measure_dsmr(path: str, folder: Path, n: int = 200) -> dict[str, float]:
    """One fresh server, one body, then ``n`` more: the peak before and after."""
    store = folder / "dsmr.duckdb"
    store.unlink(missing_ok=True)
    with meterhub.open(f"duckdb:///{store}") as hub:
        record, key = new_key("bench", "write", "1000000/minute")
        hub.store.add_key(record)
    process = subprocess.Popen([sys.executable, "-m", "meterhub.cli", "serve", "--store",
                                f"duckdb:///{store}", "--port", "0"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, cwd=folder)
    try:
        assert process.stdout is not None
        match = re.search(r"http://127\.0\.0\.1:\d+", process.stdout.readline())
        assert match, "server did not start"
        bodies = list(dsmr_bodies(path, n + 1))
        with httpx.Client(base_url=match.group(0), timeout=60,
                          headers={"X-AUTHKEY": key}) as client:
            def send(headers: dict[str, str], body: bytes) -> None:
                response = client.post(DSMR_URLS[path], content=body, headers=headers)
                if response.status_code != 201:
                    raise RuntimeError(f"{path}: {response.status_code} {response.text[:200]}")

            send(*bodies[0])
            before = vm(process.pid, "VmHWM")
            for headers, body in bodies[1:]:
                send(headers, body)
            peak = vm(process.pid, "VmHWM")
    finally:
        process.terminate()
        process.communicate(timeout=60)
    return {"bytes": len(bodies[1][1]), "before": before, "peak": peak}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--formats", nargs="*", default=list(MEDIA), choices=list(MEDIA))
    parser.add_argument("--shapes", nargs="*", default=list(SHAPES), choices=SHAPES)
    parser.add_argument("--mb", type=float, help="body size in MB (default: the limit)")
    parser.add_argument("--rows", type=int, help="readings (default: the limit)")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--no-dsmr", action="store_true", help="leave out the DSMR paths")
    args = parser.parse_args()
    print("| format | readings | body | push time | readings/s | server peak RSS before "
          "| server peak RSS |")
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for fmt in args.formats:
            for shape in args.shapes:
                size, most = limits(fmt)
                size = int(args.mb * 1_000_000) if args.mb else size
                most = args.rows or (10**12 if args.mb else most)
                runs = [measure(fmt, shape, size, most, Path(tmp)) for _ in range(args.runs)]
                m = runs[0]
                seconds = statistics.median(r["seconds"] for r in runs)
                before = max(r["before"] for r in runs)
                peak = max(r["peak"] for r in runs)
                print(f"| {fmt} | {shape}: {m['rows']:,.0f} | {m['bytes'] / 1e6:.1f} MB | "
                      f"{seconds:.2f} s | {m['rows'] / seconds / 1000:,.0f} k | "
                      f"{before / 2**20:.0f} MiB | {peak / 2**20:.0f} MiB "
                      f"({peak / 1e6:.0f} MB) |", flush=True)
        if args.no_dsmr:
            return
        print()
        print("| DSMR-reader path | body | bodies | server peak RSS before | server peak RSS |")
        print("|---|---|---|---|---|")
        for path in DSMR_URLS:
            runs = [measure_dsmr(path, Path(tmp)) for _ in range(args.runs)]
            before = max(r["before"] for r in runs)
            peak = max(r["peak"] for r in runs)
            print(f"| {path} | {runs[0]['bytes'] / 1000:.1f} kB | 200 | "
                  f"{before / 2**20:.0f} MiB | {peak / 2**20:.0f} MiB ({peak / 1e6:.0f} MB) |",
                  flush=True)


if __name__ == "__main__":
    main()

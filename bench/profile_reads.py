"""Where a small read's time goes: py-spy samples `meterhub serve` under wrk load.

Three loads, each 10 s of wrk -t1 -c16 after a warm-up: an hourly aggregate of one day
(24 buckets) for a different day each request (computed), the same day each request
(answered from memory), and a page of 1,000 readings as JSON from a different start each
request. py-spy (a dev dependency) samples every thread of the server 200 times a second;
each sample is put under the first of `PARTS` that its stack meets from the innermost frame
out, so a pyarrow call counts for the meterhub code that made it.
Run: ``make bench`` or ``python bench/profile_reads.py``.
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from api import build_store, distinct, server, wrk  # noqa: E402
from sections import replace_section  # noqa: E402

#: (part, the path fragments of a frame that put a sample there), innermost frame first
PARTS: list[tuple[str, tuple[str, ...]]] = [
    # DuckDB's calls are C: their time shows in the store line that made them
    ("DuckDB: the store's queries (parse, plan, run, fetch) and their SQL text",
     ("/duckdb/", "meterhub/store/duckdb.py")),
    ("a read thread waiting for work", ("queue.py",)),
    ("event loop waiting for the network", ("asyncio/runners.py", "uvloop")),
    ("aggregation: per-kind columns, assembly, bucket labels",
     ("meterhub/store/aggregation.py", "meterhub/store/buckets.py",
      "meterhub/store/counters.py")),
    ("readings: page plan and batches", ("meterhub/store/reads.py",)),
    ("JSON / Arrow encoding", ("meterhub/encode.py",)),
    ("answers kept in memory", ("meterhub/answers.py", "meterhub/api/reads.py")),
    ("key check and rate limit", ("meterhub/api/security.py",)),
    ("store: catalog, selection", ("meterhub/store/",)),
    ("hub: selection, units", ("meterhub/hub.py", "meterhub/timebase.py")),
    ("HTTP: uvicorn, Starlette, FastAPI, meterhub's middleware",
     ("uvicorn/", "starlette/", "fastapi/", "anyio/", "meterhub/api/")),
]
OTHER = "other"
HOURLY = "/api/v1/aggregates?device=small&every=1h&fn=mean&fn=min&fn=max&fn=count"
DAY = "start=2023-01-03T00:00:00Z&end=2023-01-04T00:00:00Z"
PAGE = "/api/v1/readings?device=small&limit=1000&format=json"


def part_of(stack: str) -> str:
    frames = stack.split(";")
    for frame in reversed(frames):
        for part, fragments in PARTS:
            if any(fragment in frame for fragment in fragments):
                return part
    return OTHER


def profile(pid: int, seconds: int, out: Path) -> subprocess.Popen[bytes]:
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    return subprocess.Popen([spy, "record", "-p", str(pid), "-d", str(seconds), "-r", "200",
                             "-f", "raw", "-o", str(out), "--nonblocking"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def shares(raw: Path) -> tuple[dict[str, float], int]:
    counts: collections.Counter[str] = collections.Counter()
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        counts[part_of(stack)] += int(n)
    total = sum(counts.values())
    return {part: 100 * n / total for part, n in counts.items()}, total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-write", action="store_true", help="print, do not update "
                        "BENCHMARKS.md")
    args = parser.parse_args()
    started = time.monotonic()
    loads = [("aggregate, a different day each request (computed)", f"{HOURLY}&{DAY}",
              (HOURLY, True)),
             ("aggregate, the same day each request (from memory)", f"{HOURLY}&{DAY}", None),
             ("page of 1,000, JSON, a different start each request (computed)", PAGE,
              (PAGE, False))]
    results: dict[str, tuple[dict[str, float], int, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        db = folder / "api.duckdb"
        key = build_store(db)
        command = [sys.executable, "-m", "meterhub.cli", "serve", "--store", f"duckdb:///{db}",
                   "--port", "0"]
        for label, path, varying in loads:
            pids: list[int] = []
            with server(command, pids) as base:
                pid = pids[0]
                script = (distinct(varying[0], folder, day=varying[1]) if varying else None)
                wrk(f"{base}{path}", key, seconds=2, script=script)  # warm up
                raw = folder / f"{len(results)}.txt"
                spy = profile(pid, 8, raw)  # samples 8 s of the 10 s run
                rate, _ = wrk(f"{base}{path}", key, seconds=10, script=script, warm=False)
                spy.wait()
                found, total = shares(raw)
                results[label] = (found, total, rate)
                print(label, f"{rate:,.0f} req/s", total, "samples", flush=True)
    parts = [part for part, _ in PARTS] + [OTHER]
    lines = [
        "## Profile: where a small read's time goes",
        "",
        f"Command: `make bench` (`python bench/profile_reads.py`, "
        f"{time.monotonic() - started:.0f} s, {dt.datetime.now(dt.UTC).date().isoformat()}, "
        "same machine as above). py-spy samples every thread of `meterhub serve` 200 times "
        "a second for 8 s of wrk -t1 -c16 load; each sample counts for the first part its "
        "stack meets from the innermost frame out (a pyarrow call counts for the meterhub "
        "code that made it). Shares of all samples, idle threads included.",
        "",
        "| part | " + " | ".join(results) + " |",
        "|---|" + "---|" * len(results),
    ]
    for part in parts:
        if any(found.get(part, 0) >= 0.05 for found, _, _ in results.values()):
            lines.append(f"| {part} | " + " | ".join(
                f"{found.get(part, 0):.1f} %" for found, _, _ in results.values()) + " |")
    lines.append("| requests/s while sampled | " + " | ".join(
        f"{rate:,.0f}" for _, _, rate in results.values()) + " |")
    text = "\n".join(lines)
    print(text)
    if not args.no_write:
        replace_section(ROOT / "BENCHMARKS.md", "profile", text)


if __name__ == "__main__":
    main()

"""Soak: `meterhub run` with all four vendor emulators and a stream of DSMR pushes.

The emulators serve in this process on a clock that runs ``--speed`` times faster than the
wall clock (10 minutes of real time are an hour of theirs at the default 6), so their
stations and meters keep producing readings; `meterhub run` (its own process, the API in
it) syncs them every ``--every`` seconds while clients push DSMR telegrams to its
DSMR-reader v1 path. Every ``--sample`` seconds the resident memory of the run process and
its children (the telegram parse helper) is recorded. At the end: every pushed telegram
that was answered 201 must be in the store exactly once, no round may have failed, no push
may have failed, and the memory over time goes into BENCHMARKS.md.

Run: ``python bench/soak.py`` (10 minutes), ``--minutes 1`` for a quick look.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

import meterhub
from meterhub.demo import config_text, emulators
from meterhub.keys import new_key

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from dsmr import corpus  # noqa: E402
from sections import replace_section  # noqa: E402


class ScaledClock:
    """The wall clock, running ``speed`` times faster from the moment it is made."""

    slack = 0.25

    def __init__(self, speed: float) -> None:
        self.speed, self.origin = speed, time.time()

    def now(self) -> float:
        return self.origin + (time.time() - self.origin) * self.speed

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(seconds, 0.0) / self.speed)


def rss_mb(pid: int) -> float:
    """Resident memory of ``pid`` and its children, in MB."""
    total = 0
    pids = [pid]
    children = Path(f"/proc/{pid}/task/{pid}/children")
    if children.exists():
        pids += [int(p) for p in children.read_text().split()]
    for each in pids:
        try:
            status = Path(f"/proc/{each}/status").read_text()
        except FileNotFoundError:
            continue
        match = re.search(r"VmRSS:\s+(\d+) kB", status)
        total += int(match.group(1)) if match else 0
    return total / 1024


@contextmanager
def run_process(config: Path, every: int) -> Iterator[tuple[subprocess.Popen[str], str,
                                                            list[str]]]:
    """`meterhub run` on a free port: the process, its base URL and its output lines."""
    process = subprocess.Popen(
        [sys.executable, "-m", "meterhub.cli", "run", "--config", str(config), "--every",
         str(every), "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, cwd=config.parent)
    lines: list[str] = []
    found = threading.Event()

    def drain() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line.rstrip("\n"))
            if re.search(r"http://127\.0\.0\.1:\d+", line):
                found.set()

    threading.Thread(target=drain, daemon=True).start()
    try:
        if not found.wait(60):
            raise RuntimeError("meterhub run did not start:\n" + "\n".join(lines))
        base = next(m.group(0) for line in lines
                    if (m := re.search(r"http://127\.0\.0\.1:\d+", line)))
        yield process, base, lines
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()


def push_stream(base: str, key: str, telegrams: list[str], per_second: float,
                deadline: float, results: dict[str, int]) -> None:
    """POST telegrams in order at ``per_second`` until they run out or time is up."""
    url = f"{base}/api/v1/datalogger/dsmrreading"
    started = time.monotonic()
    with httpx.Client(timeout=30, headers={"X-AUTHKEY": key}) as client:
        for index, text in enumerate(telegrams):
            due = started + index / per_second
            if due > deadline:
                break
            time.sleep(max(0.0, due - time.monotonic()))
            try:
                status = client.post(url, data={"telegram": text}).status_code
            except httpx.HTTPError:
                status = 0
            results[str(status)] = results.get(str(status), 0) + 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--speed", type=float, default=6.0,
                        help="how much faster the emulators' clock runs")
    parser.add_argument("--every", type=int, default=30, help="seconds between sync rounds")
    parser.add_argument("--pushes", type=float, default=4.0, help="DSMR telegrams a second")
    parser.add_argument("--sample", type=float, default=30.0, help="seconds between samples")
    parser.add_argument("--no-write", action="store_true",
                        help="print, do not update BENCHMARKS.md")
    args = parser.parse_args()
    seconds = args.minutes * 60
    telegrams = corpus(int(seconds * args.pushes) + 10)
    with tempfile.TemporaryDirectory() as tmp, \
            emulators(devices=3, clock=ScaledClock(args.speed)) as served:
        store = f"duckdb:///{Path(tmp) / 'soak.duckdb'}"
        config = Path(tmp) / "meterhub.toml"
        config.write_text(config_text(served, store))
        with meterhub.open(store) as hub:
            record, key = new_key("soak", "write", "1000000/minute")
            hub.store.add_key(record)
        pushed: dict[str, int] = {}
        samples: list[tuple[float, float]] = []
        with run_process(config, args.every) as (process, base, lines):
            started = time.monotonic()
            deadline = started + seconds
            pusher = threading.Thread(target=push_stream, args=(
                base, key, telegrams, args.pushes, deadline, pushed), daemon=True)
            pusher.start()
            while time.monotonic() < deadline:
                samples.append((time.monotonic() - started, rss_mb(process.pid)))
                print(f"{samples[-1][0]:6.0f} s  {samples[-1][1]:6.1f} MB  pushes {pushed}",
                      flush=True)
                time.sleep(min(args.sample, max(0.0, deadline - time.monotonic())))
            pusher.join(timeout=60)
            samples.append((time.monotonic() - started, rss_mb(process.pid)))
        rounds = [line for line in lines if " round " in line]
        failed = [line for line in rounds if "failed" in line]
        tracebacks = [line for line in lines if "Traceback" in line]
        with meterhub.open(store, create=False) as hub:
            stored = hub.count(device="p1", channel="electricity_delivered_1")
            distinct = hub.readings(device="p1", channel="electricity_delivered_1",
                                    as_="arrow").column("ts").unique()
            synced = {row["source"]: row for row in hub.devices().to_dict("records")}
    accepted = pushed.get("201", 0)
    problems = []
    if stored != accepted or len(distinct) != stored:
        problems.append(f"{accepted} pushes answered 201, {stored} stored "
                        f"({len(distinct)} distinct times)")
    if set(pushed) != {"201"}:
        problems.append(f"push answers {pushed}")
    if failed or tracebacks:
        problems.append(f"{len(failed)} failed rounds, {len(tracebacks)} tracebacks")
    if not rounds:
        problems.append("no sync round finished")
    first = [mb for at, mb in samples if at >= 60] or [samples[-1][1]]
    text = "\n".join([
        "## Soak: `meterhub run` with four vendors and DSMR pushes",
        "",
        f"`python bench/soak.py --minutes {args.minutes:g}` on {platform.machine()} "
        f"({os.cpu_count()} cores, Python {platform.python_version()}), "
        f"{time.strftime('%Y-%m-%d')}: `meterhub run --every {args.every}` (API in the same "
        f"process) syncing the four emulators (3 devices each, their clock {args.speed:g}x "
        f"the wall clock: {args.minutes * args.speed:g} minutes of theirs) while a client "
        f"pushed {args.pushes:g} DSMR telegrams a second to /api/v1/datalogger/dsmrreading.",
        "",
        f"- {len(rounds)} sync rounds, {len(failed)} failed; {accepted:,} pushes answered "
        f"201, {stored:,} stored, each once; sources in the store: "
        f"{', '.join(sorted(synced)) or 'none'}.",
        f"- resident memory of the run process and its parse helper: "
        f"{samples[0][1]:.0f} MB at start, {first[0]:.0f} MB after the first minute, "
        f"{max(mb for _, mb in samples):.0f} MB at most, {samples[-1][1]:.0f} MB at the end "
        f"({samples[-1][1] - first[0]:+.0f} MB over the last "
        f"{(samples[-1][0] - 60) / 60:.0f} minutes).",
        "",
        "| minute | " + " | ".join(f"{at / 60:.0f}" for at, _ in samples[::2]) + " |",
        "|---|" + "---|" * len(samples[::2]),
        "| RSS MB | " + " | ".join(f"{mb:.0f}" for _, mb in samples[::2]) + " |",
    ])
    print(text)
    if problems:
        print("SOAK FAILED: " + "; ".join(problems), file=sys.stderr)
        print("\n".join(lines[-40:]), file=sys.stderr)
        sys.exit(1)
    if not args.no_write:
        replace_section(ROOT / "BENCHMARKS.md", "soak", text)


if __name__ == "__main__":
    main()

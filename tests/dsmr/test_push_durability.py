"""A 201 to a pushed telegram means stored: the next read answers with it, and it survives
the server being killed (SIGKILL) right after, though it was only journaled, not yet in
the store's file. A real `meterhub serve` process on a DuckDB file."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

import meterhub
from meterhub.keys import new_key
from tests.dsmr.telegrams import p1_stamp, v5

START = dt.datetime(2026, 11, 20, 12, 0, tzinfo=dt.UTC)


def telegram(n: int) -> tuple[str, dt.datetime]:
    at = START + dt.timedelta(seconds=10 * n)
    return v5(stamp=p1_stamp(at), t1=f"{1000 + n / 1000:010.3f}",
              gas_stamp=p1_stamp(START)), at


def serve(store: Path) -> tuple[subprocess.Popen[str], str, str]:
    """A `meterhub serve` process over ``store``, its base URL and a write key."""
    with meterhub.open(f"duckdb:///{store}") as hub:
        record, key = new_key("logger", "write", "100000/minute")
        hub.store.add_key(record)
    process = subprocess.Popen([sys.executable, "-m", "meterhub.cli", "serve", "--store",
                                f"duckdb:///{store}", "--port", "0"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, cwd=store.parent)
    assert process.stdout is not None
    line = process.stdout.readline()
    assert "meterhub API on http://127.0.0.1:" in line, line
    return process, line.split()[3].removesuffix("/api/v1"), key


def test_every_acknowledged_telegram_is_read_back_and_survives_a_kill(tmp_path: Path) -> None:
    store = tmp_path / "p1.duckdb"
    process, base, key = serve(store)
    try:
        headers = {"X-AUTHKEY": key}
        with httpx.Client(base_url=base, headers=headers, timeout=30) as client:
            for n in range(12):  # each read right after its push answers with it
                text, at = telegram(n)
                push = client.post("/api/v1/datalogger/dsmrreading", data={"telegram": text})
                assert push.status_code == 201, push.text
                latest = client.get("/api/v2/datalogger/dsmrreading",
                                    params={"ordering": "-timestamp", "limit": 1}).json()
                assert latest["count"] == n + 1
                assert dt.datetime.fromisoformat(latest["results"][0]["timestamp"]) == at
                assert latest["results"][0]["electricity_delivered_1"] == \
                    f"{1000 + n / 1000:.3f}"
            for n in range(12, 40):  # these only journaled: no read folds them in
                push = client.post("/api/v1/datalogger/dsmrreading",
                                   data={"telegram": telegram(n)[0]})
                assert push.status_code == 201, push.text
        os.kill(process.pid, signal.SIGKILL)  # at once: the fold is due in seconds
        process.communicate(timeout=30)
        segments = list(tmp_path.glob("p1.duckdb.journal.*"))
        assert segments, "the last telegrams were to be in the journal only"
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate(timeout=30)
    with meterhub.open(f"duckdb:///{store}") as hub:
        stored = hub.readings(device="p1", channel="electricity_delivered_1")
        assert len(stored) == 40
        assert list(stored["value"]) == [1000 + n / 1000 for n in range(40)]
    assert not list(tmp_path.glob("p1.duckdb.journal.*"))


def test_a_server_stopped_by_a_signal_folds_the_journal_first(tmp_path: Path) -> None:
    store = tmp_path / "p1.duckdb"
    process, base, key = serve(store)
    try:
        pushed = 0
        with httpx.Client(base_url=base, headers={"X-AUTHKEY": key}, timeout=30) as client:
            for _ in range(5):
                for _ in range(3):
                    push = client.post("/api/v1/datalogger/dsmrreading",
                                       data={"telegram": telegram(pushed)[0]})
                    assert push.status_code == 201, push.text
                    pushed += 1
                # past the meter status's save (1 s, journaled too) and before the fold
                # due 2 s after the first push since the last: only the shutdown folds
                # what the journal holds now (a slow machine may take another round)
                time.sleep(1.3)
                if list(tmp_path.glob("p1.duckdb.journal.*")):
                    break
        assert list(tmp_path.glob("p1.duckdb.journal.*"))
        process.terminate()
        process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate(timeout=30)
    assert not list(tmp_path.glob("p1.duckdb.journal.*"))  # nothing left to replay
    with meterhub.open(f"duckdb:///{store}") as hub:
        assert hub.count(device="p1", channel="electricity_delivered_1") == pushed

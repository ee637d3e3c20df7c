"""DuckDB's compact: a sorted copy that takes the file's place, in pieces of series, never
larger than the file it replaces, harmless when killed; and the store's memory limit."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pytest

import meterhub
from meterhub.errors import StoreError
from meterhub.keys import new_key
from meterhub.model import TS_TYPE
from meterhub.store import duckdb as duckdb_store

T0 = np.datetime64("2024-01-01T00:00:00", "us")


def day(device_count: int, index: int, per_day: int = 288) -> pa.Table:
    """One day of every device's 5-minute readings (a sync's shape: each write a day of
    all devices, so an unsorted file interleaves them)."""
    ts = T0 + (index * per_day + np.arange(per_day)) * np.timedelta64(300, "s")
    n = per_day * device_count
    return pa.table({
        "source": ["s"] * n, "device": [f"d{i:02}" for i in range(device_count)
                                        for _ in range(per_day)],
        "channel": ["p"] * n, "ts": pa.array(np.tile(ts, device_count)).cast(TS_TYPE),
        "value": np.random.default_rng(index).random(n) * 10, "unit": ["kW"] * n})


def fill(url: str, days: int = 30, devices: int = 12) -> None:
    with meterhub.open(url) as hub:
        for index in range(days):
            hub.write(day(devices, index))
        hub.write([{"source": "s", "device": "d00", "channel": "p", "ts": "2024-01-01T00:05",
                    "value": None, "unit": "kW", "quality": "sensor_error",
                    "error_code": "E7"}])  # a late error over a stored reading
        hub.write(None, cursors=[meterhub.store.SyncCursor("s", "d00", "c1")],
                  state={"k": "v"})
        record, _ = new_key("k", "read")
        hub.store.add_key(record)
    with duckdb.connect(url.removeprefix("duckdb:///")) as con:  # a row from before checks
        con.execute("INSERT INTO readings VALUES (1, TIMESTAMP '1700-01-01', 1, 'ok', true, "
                    "NULL, NULL, 1)")


def everything(url: str) -> dict[str, Any]:
    """What a store holds, in an order that does not depend on how it is laid out."""
    with duckdb.connect(url.removeprefix("duckdb:///"), read_only=True) as con:
        out = {table: con.execute(f"SELECT * FROM {table} ORDER BY ALL").fetchall()
               for (table,) in con.execute("SELECT table_name FROM duckdb_tables() "
                                           "WHERE table_name <> 'readings'").fetchall()}
        # every column of every row, summed exactly whatever the rows' order
        out["readings"] = con.execute(
            "SELECT count(*), sum(hash(series_id, ts, value, quality, validated, seq, "
            "error_code, batch_id)::HUGEINT) FROM readings").fetchall()
    return out


def in_order(url: str) -> bool:
    with duckdb.connect(url.removeprefix("duckdb:///"), read_only=True) as con:
        sid, ts = (np.asarray(c) for c in zip(*con.execute(
            "SELECT series_id, epoch_us(ts) FROM readings ORDER BY rowid").fetchall(),
            strict=True))
    return bool(np.all((sid[1:] > sid[:-1]) | ((sid[1:] == sid[:-1]) & (ts[1:] > ts[:-1]))))


@pytest.mark.parametrize("piece_rows", [20_000_000, 10_000])
def test_compact_sorts_a_copy_that_holds_everything_and_is_no_larger(
        tmp_path: Path, piece_rows: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(duckdb_store, "COMPACT_PIECE_ROWS", piece_rows)  # 1 or 10 pieces
    url = f"duckdb:///{tmp_path / 's.duckdb'}"
    fill(url)
    before, size = everything(url), os.path.getsize(tmp_path / "s.duckdb")
    assert not in_order(url)
    with meterhub.open(url) as hub:
        hub.compact()
    assert everything(url) == before
    assert in_order(url)
    assert os.path.getsize(tmp_path / "s.duckdb") <= size
    assert not Path(f"{tmp_path / 's.duckdb'}.compacting").exists()


def test_the_store_works_on_after_compact(tmp_path: Path) -> None:
    url = f"duckdb:///{tmp_path / 's.duckdb'}"
    fill(url, days=3, devices=2)
    with meterhub.open(url) as hub:
        hub.compact()
        assert hub.count() == 3 * 2 * 288
        result = hub.write(day(2, 2))  # every key stored: found again after the reopen
        assert (result.unchanged, result.new) == (2 * 288, 0)
        hub.write(day(1, 3))
        assert hub.channels(as_="arrow").column("readings").to_pylist() == [4 * 288, 3 * 288]
        assert len(hub.aggregate(device="d00", every="1d")) == 4


def test_compact_keeps_every_table_exactly(tmp_path: Path) -> None:
    url = f"duckdb:///{tmp_path / 's.duckdb'}"
    fill(url, days=5, devices=3)
    before = everything(url)
    with meterhub.open(url) as hub:
        hub.compact()
    assert everything(url) == before
    assert in_order(url)


def test_a_killed_compact_leaves_the_store_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "s.duckdb"
    url = f"duckdb:///{path}"
    fill(url, days=60, devices=40)  # 690,000 readings: a copy of a second or so
    before = everything(url)
    # in pieces of 10,000 readings: a copy of many steps, long enough to be killed in
    child = subprocess.Popen([sys.executable, "-c", "import sys, meterhub\n"
                              "import meterhub.store.duckdb as store\n"
                              "store.COMPACT_PIECE_ROWS = 10_000\n"
                              "with meterhub.open(sys.argv[1]) as hub: hub.compact()", url])
    copy = Path(f"{path}.compacting")
    deadline = time.monotonic() + 60
    while not copy.exists() and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    time.sleep(0.05)  # into the copy
    child.send_signal(signal.SIGKILL)
    assert child.wait() == -signal.SIGKILL  # killed while copying, not after
    assert copy.exists()
    assert everything(url) == before
    with meterhub.open(url) as hub:  # and the next compact clears what was left
        hub.compact()
    assert not copy.exists()
    assert everything(url) == before
    assert in_order(url)


def test_compact_refuses_while_other_threads_read(tmp_path: Path) -> None:
    url = f"duckdb:///{tmp_path / 's.duckdb'}"
    fill(url, days=1, devices=1)
    with meterhub.open(url) as hub:
        reader = threading.Thread(target=lambda: hub.count())
        reader.start()
        reader.join()
        with pytest.raises(StoreError, match="needs the store to itself"):
            hub.compact()
        assert hub.count() == 288


def test_the_memory_limit_comes_from_the_url_or_the_default(tmp_path: Path) -> None:
    def limit(url: str) -> str:
        with meterhub.open(url) as hub:
            row = hub.store._con.execute(  # type: ignore[attr-defined]
                "SELECT current_setting('memory_limit')").fetchone()
            return str(row[0])

    path = tmp_path / "s.duckdb"
    assert limit(f"duckdb:///{path}") == "953.6 MiB"  # 1 GB, DuckDB shows it in MiB
    assert limit(f"duckdb:///{path}?memory_limit=256MB") == "244.1 MiB"
    for bad, message in (("memory_limit=lots", "is not a size"),
                         ("memory_limit=0B", "too small"), ("memory_limit=1000%25", "1% to 100%"),
                         ("threads=4", "unknown parameter 'threads'")):
        other = tmp_path / "other.duckdb"
        with pytest.raises(StoreError, match=message):
            meterhub.open(f"duckdb:///{other}?{bad}")
        assert not other.exists()  # nothing made of a refused URL


def test_a_killed_write_after_compact_is_still_durable(tmp_path: Path) -> None:
    """The reopened file logs writes as the first one did (its log beside it)."""
    path = tmp_path / "s.duckdb"
    url = f"duckdb:///{path}"
    fill(url, days=2, devices=2)
    code = ("import sys, meterhub, os\n"
            "hub = meterhub.open(sys.argv[1])\nhub.compact()\n"
            "hub.write([{'source': 's', 'device': 'late', 'channel': 'p', "
            "'ts': '2024-03-01T00:00', 'value': 1.5, 'unit': 'kW'}])\n"
            "print('written', flush=True)\nos.kill(os.getpid(), 9)\n")
    done = subprocess.run([sys.executable, "-c", code, url], capture_output=True, text=True)
    assert "written" in done.stdout
    with meterhub.open(url) as hub:
        assert hub.readings(device="late")["value"].tolist() == [1.5]
        assert hub.count() == 2 * 2 * 288 + 1

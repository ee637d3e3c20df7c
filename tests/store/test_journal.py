"""The DuckDB store's journal: writes acknowledged by an append and a sync, seen by every read
at once, folded into the store in one commit, and replayed after a crash, never twice."""

from __future__ import annotations

import datetime as dt
import logging
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pytest

import meterhub
from meterhub.model import READING_SCHEMA, to_readings
from meterhub.store.duckdb import DuckDBStore
from meterhub.store.journal import Journal, decode, encode

START = dt.datetime(2024, 6, 1, tzinfo=dt.UTC)


def rows(first: int, count: int = 3, *, device: str = "m") -> pa.Table:
    return pa.table({"source": ["t"] * count, "device": [device] * count,
                     "channel": ["power"] * count,
                     "ts": [START + dt.timedelta(minutes=first + i) for i in range(count)],
                     "value": [float(first + i) for i in range(count)],
                     "unit": ["kW"] * count})


def segments(store: Path) -> list[Path]:
    return sorted(store.parent.glob(f"{store.name}.journal.*"))


def push_in_thread(hub: meterhub.Hub, first: int) -> threading.Thread:
    """`write_soon` of ``rows(first)`` from another thread, started."""
    push = threading.Thread(target=hub.write_soon, args=(rows(first),),
                            kwargs={"origin": "push"})
    push.start()
    return push


def batches(store: Path) -> int:
    with duckdb.connect(str(store), read_only=True) as con:
        row = con.execute("SELECT count(*) FROM batches").fetchone()
    assert row is not None
    return int(row[0])


def test_records_read_back_until_a_torn_or_damaged_one() -> None:
    tables = [to_readings(rows(i * 10)) for i in range(3)]
    data = b"".join(encode(i + 1, table, "dsmr", {"k": str(i)})
                    for i, table in enumerate(tables))
    records = list(decode(data))
    assert [r.seq for r in records] == [1, 2, 3]
    assert [r.state for r in records] == [{"k": "0"}, {"k": "1"}, {"k": "2"}]
    assert {r.origin for r in records} == {"dsmr"}
    assert all(r.table.equals(t) for r, t in zip(records, tables, strict=True))
    last = len(encode(3, tables[2], "dsmr", {"k": "2"}))
    for cut in (1, 10, last // 2, last - 1):  # a crash while the last one was appended
        assert [r.seq for r in decode(data[:-cut])] == [1, 2]
    damaged = bytearray(data)
    damaged[-5] ^= 0xFF  # a flipped bit in the last record's payload
    assert [r.seq for r in decode(bytes(damaged))] == [1, 2]


def test_journaled_writes_are_read_at_once_and_folded_in_one_commit(tmp_path: Path) -> None:
    store = tmp_path / "j.duckdb"
    with meterhub.open(f"duckdb:///{store}") as hub:
        hub.write(rows(0), origin="first")  # the channel is new: a plain write
        for group in range(5):
            assert hub.write_soon(rows(10 + 3 * group), origin="push",
                                  state={"last": str(group)}) is False
        assert len(segments(store)) == 1
        # every read sees them, and reading folded them into the store in one commit
        assert hub.count(device="m") == 18
        assert hub.get_state("last") == "4"
        assert list(hub.readings(device="m")["value"]) == [float(v) for v in range(3)] + [
            float(v) for v in range(10, 25)]
        assert segments(store) == []
        hub.write_soon(rows(40), origin="push")
    # closing folds what is held and leaves no journal behind
    assert segments(store) == []
    assert batches(store) == 3  # the first write, one fold of five, one fold at close
    with meterhub.open(f"duckdb:///{store}") as hub:
        assert hub.count(device="m") == 21


def test_a_write_for_a_new_channel_or_an_in_memory_store_is_a_plain_write(
        tmp_path: Path) -> None:
    store = tmp_path / "new.duckdb"
    with meterhub.open(f"duckdb:///{store}") as hub:
        hub.write_soon(rows(0), origin="push")
        assert segments(store) == []  # the channel had to be made: written at once
        hub.write_soon(rows(3), origin="push")
        assert len(segments(store)) == 1
    with meterhub.open("duckdb:///:memory:") as hub:
        hub.write_soon(rows(0), origin="push")
        hub.write_soon(rows(3), origin="push")
        assert hub.count(device="m") == 6


CRASH = textwrap.dedent("""
    import datetime as dt, os, sys
    import pyarrow as pa
    import meterhub
    start = dt.datetime(2024, 6, 1, tzinfo=dt.UTC)
    def rows(first):
        return pa.table({"source": ["t"] * 3, "device": ["m"] * 3, "channel": ["power"] * 3,
                         "ts": [start + dt.timedelta(minutes=first + i) for i in range(3)],
                         "value": [float(first + i) for i in range(3)], "unit": ["kW"] * 3})
    hub = meterhub.open("duckdb:///" + sys.argv[1])
    hub.write(rows(0))
    for group in range(1, int(sys.argv[2]) + 1):
        hub.write_soon(rows(3 * group), origin="push", state={"last": str(group)})
        if group == int(sys.argv[3]):
            hub.fold_journal()
    print("acknowledged", flush=True)
    os._exit(0)  # as a kill: nothing is closed, nothing folded
""")


def crash_after(store: Path, groups: int, fold_at: int = 0) -> None:
    done = subprocess.run([sys.executable, "-c", CRASH, str(store), str(groups), str(fold_at)],
                          capture_output=True, text=True, timeout=120)
    assert "acknowledged" in done.stdout, done.stderr


def test_acknowledged_writes_survive_a_crash_and_are_replayed_once(tmp_path: Path,
                                                                   caplog: pytest.LogCaptureFixture
                                                                   ) -> None:
    store = tmp_path / "crash.duckdb"
    crash_after(store, groups=6, fold_at=2)  # two folded before the crash, four held
    assert len(segments(store)) == 1
    assert len(Journal(tmp_path / "crash.duckdb.journal").records()) == 4
    with caplog.at_level(logging.WARNING, logger="meterhub.store"), \
            meterhub.open(f"duckdb:///{store}") as hub:
        assert hub.count(device="m") == 21
        assert hub.get_state("last") == "6"
        assert segments(store) == []
    assert "replaying 4 journaled write(s)" in caplog.text
    with meterhub.open(f"duckdb:///{store}") as hub:  # nothing replayed twice
        assert hub.count(device="m") == 21
    assert batches(store) == 3  # the first write, the fold of two, the replay of four


def test_a_record_torn_by_the_crash_was_never_acknowledged_and_is_skipped(
        tmp_path: Path) -> None:
    store = tmp_path / "torn.duckdb"
    crash_after(store, groups=3)
    [segment] = segments(store)
    whole = encode(99, to_readings(rows(100)), "push", {"last": "torn"})
    with segment.open("ab") as file:
        file.write(whole[:len(whole) // 2])
    with meterhub.open(f"duckdb:///{store}") as hub:
        assert hub.count(device="m") == 12
        assert hub.get_state("last") == "3"
        # the journal goes on from there: a new write is durable and read back
        hub.write_soon(rows(200), origin="push")
        assert hub.count(device="m") == 15


def test_a_replay_after_records_were_already_folded_writes_nothing_again(
        tmp_path: Path) -> None:
    store = tmp_path / "again.duckdb"
    crash_after(store, groups=4)
    [segment] = segments(store)
    kept = segment.read_bytes()
    with meterhub.open(f"duckdb:///{store}") as hub:
        hub.write(rows(100), origin="later")
        assert hub.get_state("last") == "4"
    segment.write_bytes(kept)  # as if a crash had come between the fold's commit and the drop
    with meterhub.open(f"duckdb:///{store}") as hub:
        hub.write_soon(rows(100)[:1].set_column(4, "value", pa.array([-1.0])), origin="push",
                       state={"last": "newer"})
        assert hub.get_state("last") == "newer"  # the old records' state was not replayed
        assert hub.count(device="m") == 18
    assert batches(store) == 4  # first write, replay, the later write, the fold at close


def test_writes_go_on_into_the_journal_while_a_fold_writes(tmp_path: Path) -> None:
    store = tmp_path / "busy.duckdb"
    with meterhub.open(f"duckdb:///{store}") as hub:
        hub.write(rows(0))
        hub.write_soon(rows(3), origin="push")
        duck = hub.store
        assert isinstance(duck, DuckDBStore)
        entered, release = threading.Event(), threading.Event()
        write = duck.write

        def slow_write(*args: Any, **kwargs: Any) -> Any:
            entered.set()
            assert release.wait(30)
            return write(*args, **kwargs)

        duck.write = slow_write  # type: ignore[method-assign]
        folding = threading.Thread(target=hub.fold_journal)
        folding.start()
        assert entered.wait(30)
        appended = push_in_thread(hub, 6)
        appended.join(10)
        assert not appended.is_alive()  # not held up by the fold
        assert len(segments(store)) == 2  # the fold's segment and the new one
        release.set()
        folding.join(30)
        duck.write = write  # type: ignore[method-assign]
        assert len(segments(store)) == 1  # the folded segment is gone, the new one stays
        assert hub.count(device="m") == 9


def test_a_journaled_write_a_fold_refuses_is_left_out_and_reads_go_on(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = tmp_path / "bad.duckdb"
    with meterhub.open(f"duckdb:///{store}") as hub:
        hub.write(rows(0))
        good = to_readings(rows(3))
        # in reading form but not valid: only a parser's bug could make it, and a fold
        # checks again
        bad = to_readings(rows(6)).set_column(4, "value", pa.array([1.0, float("inf"), 2.0]))
        assert bad.schema == READING_SCHEMA
        hub.write_soon(good, origin="push", checked=True)
        hub.write_soon(bad, origin="push", checked=True)
        hub.write_soon(to_readings(rows(9)), origin="push", checked=True)
        with caplog.at_level(logging.ERROR, logger="meterhub.store"):
            assert hub.count(device="m") == 9
        assert "was refused and left out" in caplog.text
        assert segments(store) == []
        assert hub.count(device="m") == 9


def test_a_push_journaled_during_another_write_waits_for_that_write_to_commit(
        tmp_path: Path) -> None:
    """A fold never starts inside a write's transaction (it would commit or roll back
    the write's rows with its own): the write commits, then reads fold the push in."""
    store = tmp_path / "both.duckdb"
    with meterhub.open(f"duckdb:///{store}") as hub:
        hub.write(rows(0))
        duck = hub.store
        assert isinstance(duck, DuckDBStore)
        insert = duck._insert_channels
        pushed: list[threading.Thread] = []

        def insert_then_push(*args: Any, **kwargs: Any) -> Any:
            done = insert(*args, **kwargs)
            push = push_in_thread(hub, 3)  # the journal does not wait for the store's lock
            push.join(10)
            pushed.append(push)
            return done

        duck._insert_channels = insert_then_push  # type: ignore[method-assign]
        hub.write(rows(0, device="new"), origin="sync")  # makes a channel: the long path
        duck._insert_channels = insert  # type: ignore[method-assign]
        assert pushed
        assert not pushed[0].is_alive()
        assert hub.count(device="new") == 3
        assert hub.count(device="m") == 6
    assert batches(store) == 3  # the first write, the new device's, the fold of the push


def test_a_push_during_a_compact_is_written_to_the_compacted_store(tmp_path: Path) -> None:
    store = tmp_path / "compact.duckdb"
    with meterhub.open(f"duckdb:///{store}") as hub:
        hub.write(rows(0))
        hub.write_soon(rows(3), origin="push")
        duck = hub.store
        assert isinstance(duck, DuckDBStore)
        pieces = duck._pieces
        pushes: list[threading.Thread] = []

        def push_while_copying() -> Any:
            # not journaled now: it waits for the compact, then writes
            pushes.append(push_in_thread(hub, 6))
            return pieces()

        duck._pieces = push_while_copying  # type: ignore[method-assign]
        hub.compact()
        pushes[0].join(30)
        assert not pushes[0].is_alive()
        assert hub.count(device="m") == 9
    with meterhub.open(f"duckdb:///{store}") as hub:
        assert hub.count(device="m") == 9
        assert list(hub.readings(device="m")["value"]) == [float(v) for v in range(9)]

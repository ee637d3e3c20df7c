"""Readings planted straight into a closed DuckDB store file with SQL, past every check:
what a store written before times were checked may hold."""

from __future__ import annotations

from pathlib import Path

import duckdb

#: SQL times outside 1800-01-01 to 2199-12-31 (UTC): year 0 (what 0001-01-01T00:00+01:00
#: became), year 1, the last second of 9999, a year beyond any calendar library, DuckDB's
#: infinities, and the two instants just outside the range
HOSTILE_TIMES = (
    "make_timestamp(-62135600400000000)",
    "TIMESTAMP '0001-01-01 00:00:00'",
    "TIMESTAMP '9999-12-31 23:59:59'",
    "make_timestamp(6000000000000000000)",
    "TIMESTAMP 'infinity'",
    "TIMESTAMP '-infinity'",
    "TIMESTAMP '1799-12-31 23:59:59.999999'",
    "TIMESTAMP '2200-01-01 00:00:00'",
)


def plant(path: Path, times: tuple[str, ...] = HOSTILE_TIMES) -> int:
    """Insert one ok reading per time into every channel of the store file at ``path`` (no
    process may hold it); returns how many rows went in."""
    con = duckdb.connect(str(path))
    try:
        ids = [row[0] for row in con.execute("SELECT series_id FROM channels").fetchall()]
        batch = int(con.execute("SELECT max(batch_id) FROM batches").fetchall()[0][0])
        for series_id in ids:
            for time in times:
                con.execute(f"INSERT INTO readings VALUES (?, {time}, 1.0, 'ok', false, "
                            "NULL, NULL, ?)", [series_id, batch])
    finally:
        con.close()
    return len(ids) * len(times)

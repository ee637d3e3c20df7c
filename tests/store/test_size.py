"""`Store.size_bytes` (GET /metrics' store size): what the store takes on disk, on every
backend, against the disk itself (DuckDB's files) or each server asked on its own."""

from __future__ import annotations

import urllib.parse
from pathlib import Path

import pytest

import meterhub
from tests.api.conftest import sample_frame
from tests.clickhouse_servers import ClickHouseServer


def on_disk(url: str, request: pytest.FixtureRequest, backend: str) -> int | None:
    """The size by other means: the DuckDB file and its journal, or every server's active
    parts of the database, each server asked directly; None for chdb (in process)."""
    parsed = urllib.parse.urlparse(url)
    if backend == "duckdb":
        path = Path(parsed.path)
        return sum(f.stat().st_size for f in path.parent.iterdir()
                   if f.is_file() and f.name.startswith(path.name))
    servers: list[ClickHouseServer]
    if backend == "clickhouse":
        servers = [request.getfixturevalue("clickhouse_single")]
    elif backend == "clickhouse-2shards":
        servers = request.getfixturevalue("clickhouse_cluster")
    else:
        return None
    database = parsed.path.strip("/")
    return sum(int(server.query(
        f"SELECT sum(bytes_on_disk) FROM system.parts WHERE database = '{database}' "
        "AND active").strip() or 0) for server in servers)


def test_the_store_says_what_it_takes_on_disk(store_url: str, backend: str,
                                              request: pytest.FixtureRequest) -> None:
    with meterhub.open(store_url) as hub:
        empty = hub.store.size_bytes()
        hub.write(sample_frame(), source="lab")
        size = hub.store.size_bytes()
        assert size is not None
        assert empty is not None
        assert size > empty
        expected = on_disk(store_url, request, backend)
        if expected is not None:
            assert size == expected

"""Pytest fixtures for real ClickHouse servers (a plugin: load it with `pytest_plugins`).

The servers are session-scoped, so each pytest-xdist worker starts at most one single server
and one cluster, and only when one of its tests asks for it; they are killed at session end.
Tests keep apart by database: `clickhouse_database` makes a fresh one per test.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from meterhub.store import clickhouse as clickhouse_store
from meterhub.store.clickhouse_http import ClickHouseClient, ClickHouseURL
from tests.clickhouse_servers import (
    CLUSTER,
    ClickHouseServer,
    start_cluster,
    start_single,
    stop_all,
)

# a server, or every server of a cluster (a database is made on each shard)
Servers = ClickHouseServer | Sequence[ClickHouseServer]
MakeDatabase = Callable[[Servers], str]


@contextlib.contextmanager
def scratch(tmp_path_factory: pytest.TempPathFactory, name: str) -> Iterator[Path]:
    """A directory for a server's data: in memory (/dev/shm) where the machine has it, as
    a disk makes every insert of a few rows cost 30-40 ms (ClickHouse writes a part of
    some 30 files per insert), 1-3 ms in memory; else pytest's temporary directory."""
    shm = Path("/dev/shm")
    if not (shm.is_dir() and os.access(shm, os.W_OK)):
        yield tmp_path_factory.mktemp(name)
        return
    folder = Path(tempfile.mkdtemp(prefix=f"meterhub-{name}-", dir=shm))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def clickhouse_single(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClickHouseServer]:
    """One server on 127.0.0.1 (server zone Australia/Lord_Howe, not UTC)."""
    with scratch(tmp_path_factory, "clickhouse-single") as folder:
        server = start_single(folder)
        yield server
        server.stop()


@pytest.fixture(scope="session")
def clickhouse_cluster(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[list[ClickHouseServer]]:
    """Two servers on 127.0.0.2 and 127.0.0.3, same ports, one shard each of the cluster
    `meterhub_test` (server zones Asia/Kolkata and America/New_York)."""
    with scratch(tmp_path_factory, "clickhouse-cluster") as folder:
        servers = start_cluster(folder)
        yield servers
        stop_all(servers)


@pytest.fixture
def clickhouse_database() -> Iterator[MakeDatabase]:
    """A factory: `clickhouse_database(servers)` creates a database of a new name on each of
    the servers (one, or a cluster's list) and returns the name; all are dropped after the test.

    It takes the servers rather than asking for a server fixture itself, so that a test which
    uses only the single server never starts a cluster (and the other way round)."""
    made: list[tuple[ClickHouseServer, str]] = []

    def make(servers: Servers) -> str:
        # a name unique across tests and xdist workers (each worker has its own servers, but
        # a test may make several databases)
        name = f"meterhub_test_{uuid.uuid4().hex[:12]}"
        for server in [servers] if isinstance(servers, ClickHouseServer) else servers:
            # no ON CLUSTER (it needs ZooKeeper): each shard is told on its own
            server.query(f"CREATE DATABASE IF NOT EXISTS {name}")
            made.append((server, name))
        return name

    yield make
    for server, name in made:
        server.query(f"DROP DATABASE IF EXISTS {name}")


#: the store backends a shared suite runs against (a `backend` fixture parametrised by
#: these picks one per test)
BACKENDS = ("duckdb", "clickhouse", "clickhouse-2shards")
#: and, for the store suite, current ClickHouse (26.x) in process: every statement the
#: ClickHouse store issues runs on both dialects (18.16 serves, 26.x is what users run)
STORE_BACKENDS = (*BACKENDS, "chdb")
NewURL = Callable[[], str]


@pytest.fixture
def new_store_url(backend: str, request: pytest.FixtureRequest) -> NewURL:
    """A factory of URLs of new, empty stores of the test's ``backend``: a DuckDB file, a
    database on the single ClickHouse server, or one on the two-shard cluster."""
    return store_urls(backend, request)


def store_urls(backend: str, request: pytest.FixtureRequest) -> NewURL:
    """`new_store_url` for any backend (a test may want stores of several)."""
    if backend == "duckdb":
        folder = request.getfixturevalue("tmp_path_factory").mktemp("store")
        numbers = iter(range(1_000_000))
        return lambda: f"duckdb:///{folder / f'store{next(numbers)}.duckdb'}"
    make: MakeDatabase = request.getfixturevalue("clickhouse_database")
    if backend == "clickhouse":
        single: ClickHouseServer = request.getfixturevalue("clickhouse_single")
        return lambda: f"clickhouse://{single.host}:{single.http_port}/{make(single)}"
    if backend == "clickhouse-2shards":
        cluster: list[ClickHouseServer] = request.getfixturevalue("clickhouse_cluster")
        first = cluster[0]
        return lambda: (f"clickhouse://{first.host}:{first.http_port}/{make(cluster)}"
                        f"?cluster={CLUSTER}")
    if backend == "chdb":
        return _chdb_urls(request)
    raise ValueError(f"no store backend {backend!r}: one of {', '.join(STORE_BACKENDS)}")


def _chdb_urls(request: pytest.FixtureRequest) -> NewURL:
    """Stores on chdb: the store's clients for host ``chdb`` talk to it in process."""
    from tests.chdb_transport import ChdbHTTP, memory_folder

    transport = ChdbHTTP(Path(tempfile.mkdtemp(prefix="meterhub-chdb-", dir=memory_folder())))
    request.addfinalizer(lambda: shutil.rmtree(transport.dir, ignore_errors=True))
    monkeypatch: pytest.MonkeyPatch = request.getfixturevalue("monkeypatch")

    def client(url: ClickHouseURL | str, **options: Any) -> ClickHouseClient:
        where = url if isinstance(url, ClickHouseURL) else ClickHouseURL.parse(url)
        if where.host == "chdb":
            options["transport"] = transport
        return ClickHouseClient(where, **options)

    monkeypatch.setattr(clickhouse_store, "ClickHouseClient", client)
    made: list[str] = []

    def drop() -> None:
        with ClickHouseClient("clickhouse://chdb/default", transport=transport) as admin:
            for name in made:
                admin.execute(f"DROP DATABASE IF EXISTS {name}", use_database=False)

    request.addfinalizer(drop)

    def url() -> str:
        made.append(f"meterhub_test_{uuid.uuid4().hex[:12]}")
        return f"clickhouse://chdb/{made[-1]}"

    return url

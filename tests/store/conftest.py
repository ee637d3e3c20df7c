"""The store suite runs against every backend: DuckDB, a ClickHouse server and a two-shard
ClickHouse cluster (18.16), and current ClickHouse in process (chdb), all from
`tests.clickhouse_fixtures`. Tests of one backend's own mechanics
open their store by URL instead of through these fixtures."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from meterhub.store import clickhouse as clickhouse_store
from meterhub.store import duckdb as duckdb_store
from tests.clickhouse_fixtures import STORE_BACKENDS, NewURL


@pytest.fixture(params=STORE_BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def store_url(new_store_url: NewURL) -> str:
    return new_store_url()


SHORT, OVERFLOWING, GENERAL = "short", "short, key probe overflowing", "general"


def take_path(path: str, backend: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make writes of known channels take ``path`` in ``backend``'s store:

    - short: small writes of known channels find their series in the cached catalog, and
      the stored rows of their keys with one probe;
    - short, key probe overflowing: the same, but the probe gives up (DuckDB: too many
      stored rows to bring over, every older key goes to the DELETE) or reads ranges
      (ClickHouse: more keys than it lists one by one);
    - general: every write looks its channels up in the store.
    """
    module: Any = duckdb_store if backend == "duckdb" else clickhouse_store
    if path == GENERAL:
        monkeypatch.setattr(module, "SHORT_WRITE_ROWS", 0)
    elif path == OVERFLOWING:
        monkeypatch.setattr(module, "_KEYS_IN_LIST" if module is clickhouse_store
                            else "_PROBE_ROWS", 0)


@pytest.fixture
def taken(backend: str, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The path each write of readings took ("short" or "general")."""
    paths: list[str] = []
    looked_up: list[bool] = []  # ClickHouse: whether this write looked its channels up

    def spy(cls: Any, name: str, record: Callable[[], None]) -> None:
        original = getattr(cls, name)

        def called(self: Any, *args: Any, **kwargs: Any) -> Any:
            record()
            return original(self, *args, **kwargs)

        monkeypatch.setattr(cls, name, called)

    if backend == "duckdb":
        spy(duckdb_store.DuckDBStore, "_append_rows", lambda: paths.append("short"))
        spy(duckdb_store.DuckDBStore, "_upsert_rows", lambda: paths.append("general"))
    else:  # every write stores its rows one way; the general path looks channels up first
        def stored() -> None:
            paths.append("general" if looked_up else "short")
            looked_up.clear()

        spy(clickhouse_store.ClickHouseStore, "_ensure_catalog",
            lambda: looked_up.append(True))
        spy(clickhouse_store.ClickHouseStore, "_store_rows", stored)
    return paths

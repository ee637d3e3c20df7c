from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import meterhub
from meterhub.hub import Hub

# real ClickHouse servers, started when a test asks for one
pytest_plugins = ["tests.clickhouse_fixtures"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests marked ``early`` first (a stable sort keeps the rest in order): with xdist's
    load distribution they start at once instead of ending the run on their own."""
    items.sort(key=lambda item: item.get_closest_marker("early") is None)


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    return f"duckdb:///{tmp_path / 'test.duckdb'}"


@pytest.fixture
def hub(store_url: str) -> Iterator[Hub]:
    with meterhub.open(store_url) as opened:
        yield opened

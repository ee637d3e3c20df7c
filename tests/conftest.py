from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import meterhub
from meterhub.hub import Hub


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    return f"duckdb:///{tmp_path / 'test.duckdb'}"


@pytest.fixture
def hub(store_url: str) -> Iterator[Hub]:
    with meterhub.open(store_url) as opened:
        yield opened

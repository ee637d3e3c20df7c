"""Stores: the `Store` protocol and the backends, chosen by URL."""

from __future__ import annotations

from meterhub.errors import StoreError
from meterhub.store.base import PageKey, Selection, Store, SyncCursor, WriteResult

DEFAULT_URL = "duckdb:///meterhub.duckdb"

__all__ = ["DEFAULT_URL", "PageKey", "Selection", "Store", "SyncCursor", "WriteResult",
           "open_store"]


def open_store(url: str | None = None) -> Store:
    """The store a URL names: ``duckdb:///path/file.duckdb`` (default ``./meterhub.duckdb``).

    A bare path ending in ``.duckdb`` is accepted as a DuckDB file.
    """
    url = url or DEFAULT_URL
    if url.endswith(".duckdb") and "://" not in url:
        url = "duckdb:///" + url
    scheme = url.split("://", 1)[0] if "://" in url else ""
    if scheme == "duckdb":
        from meterhub.store.duckdb import DuckDBStore

        return DuckDBStore(url)
    raise StoreError(f"unsupported store URL {url!r}: use duckdb:///path/file.duckdb")

"""Stores: the `Store` protocol and the backends, chosen by URL."""

from __future__ import annotations

from pathlib import Path

from meterhub.errors import StoreError, StoreNotFoundError
from meterhub.store.base import PageKey, Selection, Store, SyncCursor, WriteResult

DEFAULT_URL = "duckdb:///meterhub.duckdb"

__all__ = ["DEFAULT_URL", "PageKey", "Selection", "Store", "SyncCursor", "WriteResult",
           "open_store"]


def open_store(url: str | None = None, *, create: bool = True) -> Store:
    """The store a URL names: ``duckdb:///path/file.duckdb`` (default ``./meterhub.duckdb``).

    A bare path ending in ``.duckdb`` is accepted as a DuckDB file. With ``create=False`` a
    store that does not exist yet is an error (`StoreNotFoundError`) instead of a new, empty
    one: a reader with a typo in its URL should hear so, not see "0 devices".
    """
    url = url or DEFAULT_URL
    if url.endswith(".duckdb") and "://" not in url:
        url = "duckdb:///" + url
    scheme = url.split("://", 1)[0] if "://" in url else ""
    if scheme == "duckdb":
        from meterhub.store.duckdb import DuckDBStore, path_from_url

        path = path_from_url(url)
        if not create and path != ":memory:" and not Path(path).is_file():
            raise StoreNotFoundError(f"no store at {path}", path=path)
        return DuckDBStore(url)
    raise StoreError(f"unsupported store URL {url!r}: use duckdb:///path/file.duckdb")

"""Stores: the `Store` protocol and the backends, chosen by URL."""

from __future__ import annotations

from pathlib import Path

from meterhub.errors import StoreError, StoreNotFoundError
from meterhub.store.base import PageKey, Selection, Store, SyncCursor, WriteResult

DEFAULT_URL = "duckdb:///meterhub.duckdb"
#: the URL schemes `open_store` opens (the configuration refuses any other)
SCHEMES: tuple[str, ...] = ("duckdb", "clickhouse")

__all__ = ["DEFAULT_URL", "SCHEMES", "PageKey", "Selection", "Store", "SyncCursor",
           "WriteResult", "open_store", "same_store", "scheme_of", "shown_url"]


def scheme_of(url: str) -> str:
    """A store URL's scheme; a bare path ending in ``.duckdb`` is a DuckDB file, anything
    else without ``://`` has none ("")."""
    if url.endswith(".duckdb") and "://" not in url:
        return "duckdb"
    return url.split("://", 1)[0] if "://" in url else ""


def open_store(url: str | None = None, *, create: bool = True) -> Store:
    """The store a URL names: ``duckdb:///path/file.duckdb`` (default ``./meterhub.duckdb``),
    or ``clickhouse://[user[:password]@]host[:port]/database[?cluster=NAME&secure=1]``.

    A bare path ending in ``.duckdb`` is accepted as a DuckDB file. With ``create=False`` a
    store that does not exist yet is an error (`StoreNotFoundError`) instead of a new, empty
    one: a reader with a typo in its URL should hear so, not see "0 devices".
    """
    url = url or DEFAULT_URL
    scheme = scheme_of(url)
    if scheme == "duckdb":
        if "://" not in url:
            url = "duckdb:///" + url
        from meterhub.store.duckdb import DuckDBStore, path_from_url

        path = path_from_url(url)
        if not create and path != ":memory:" and not Path(path).is_file():
            raise StoreNotFoundError(f"no store at {path}", path=path)
        return DuckDBStore(url)
    if scheme == "clickhouse":
        from meterhub.store.clickhouse import ClickHouseStore

        return ClickHouseStore(url, create=create)
    raise StoreError(f"unsupported store URL {shown_url(url)!r}: use "
                     "duckdb:///path/file.duckdb or clickhouse://host:port/database")


def same_store(first: str, second: str) -> bool:
    """Whether two URLs name one store: DuckDB files by their resolved paths (whatever the
    URL's parameters), others by their URLs."""
    if scheme_of(first) == scheme_of(second) == "duckdb":
        from meterhub.store.duckdb import path_from_url

        paths = [path_from_url(url if "://" in url else "duckdb:///" + url)
                 for url in (first, second)]
        return ":memory:" not in paths and Path(paths[0]).resolve() == Path(paths[1]).resolve()
    return shown_url(first) == shown_url(second)


def shown_url(url: str) -> str:
    """A store URL as a message or log may show it: its password, if any, as ``***``."""
    scheme, sep, rest = url.partition("://")
    # up to the last '@': a password left unencoded may hold '/', '?', '#' or '@' (as one
    # interpolated from the environment may), and all of it must be hidden
    if sep and not rest.startswith("/") and "@" in rest:
        credentials, _, host = rest.rpartition("@")
        return f"{scheme}://{credentials.split(':', 1)[0]}:***@{host}"
    return url

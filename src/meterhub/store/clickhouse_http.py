"""A thin ClickHouse client over HTTP, for servers from 18.16 to current.

clickhouse-connect cannot talk to 18.16 (it fails with "Unknown identifier: readonly"), so
this module speaks the plain HTTP interface that every version has:

- the SQL is the POST body, or the ``query=`` parameter when the body carries rows;
- the user and password travel in ``X-ClickHouse-User``/``X-ClickHouse-Key`` headers, never in
  the URL, so no log line or error message can show the password;
- reads ask for ``wait_end_of_query=1``: the server then sends an error as an error status,
  instead of appending its text to a 200 answer that was already under way;
- rows are read and written in the Native format (`meterhub.store.clickhouse_native`); small
  answers in TabSeparatedWithNamesAndTypes, which is exact where JSON is not (JSON prints NaN
  and infinities as null, and 64-bit integers as strings or numbers by version);
- 18.16 has no server-side query parameters, so values are inlined with `literal`.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlsplit

import httpx
import numpy as np

from meterhub.errors import StoreError
from meterhub.store.clickhouse_native import (
    DEFAULT_BLOCK_ROWS,
    NativeFormatError,
    arrow_schema,
    decode_native,
    encode_native,
    prepare_columns,
    unescape,
)

__all__ = ["RETRIED_CODES", "UNKNOWN_DATABASE", "UNKNOWN_TABLE", "ClickHouseClient",
           "ClickHouseError", "ClickHouseURL", "literal", "quote_identifier", "rows_from_tsv"]

log = logging.getLogger("meterhub.clickhouse")

#: ClickHouse's error code for a table that does not exist
UNKNOWN_TABLE = 60
#: ClickHouse's error code for a database that does not exist
UNKNOWN_DATABASE = 81

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_TABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?")
_CLUSTER = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
_CODE = re.compile(rb"Code:\s*(\d+)")
_WHAT = re.compile(r",? ?e\.what\(\) = \S+$")
#: a server could not reach another (NETWORK_ERROR, ALL_CONNECTION_TRIES_FAILED): the
#: request is tried again. (Not SOCKET_TIMEOUT: that one comes after the receive timeout,
#: five minutes by default, which each try would wait again.)
RETRIED_CODES = frozenset({210, 279})
_OPTIONS = ("cluster", "secure")
Settings = Mapping[str, str | int | float | bool]
#: SQL longer than this (ClickHouse parses at most 256 KiB by default) raises the limit
_LONG_SQL = 200_000
# parameters this client sets itself, which settings must not override
_RESERVED = frozenset({"query", "database", "user", "password", "default_format"})


class ClickHouseError(StoreError):
    """ClickHouse refused a request, or could not be reached (then ``code`` is None)."""

    def __init__(self, message: str, *, code: int | None = None,
                 status: int | None = None) -> None:
        super().__init__(message)
        #: ClickHouse's error code (`UNKNOWN_TABLE`, `UNKNOWN_DATABASE`, ...), when it answered
        self.code = code
        #: the HTTP status of the answer, when there was one
        self.status = status


# -- the URL -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ClickHouseURL:
    """``clickhouse://[user[:password]@]host[:port]/database[?cluster=NAME&secure=1]``."""

    host: str
    database: str
    port: int = 8123
    user: str = "default"
    password: str = field(default="", repr=False)
    cluster: str | None = None
    secure: bool = False

    @classmethod
    def parse(cls, url: str) -> ClickHouseURL:
        """The parts of a store URL; StoreError, never showing the password, when malformed."""
        if not url.startswith("clickhouse://"):
            raise StoreError("a ClickHouse store URL starts with clickhouse://")
        parts = urlsplit(url)
        if "@" in parts.path + parts.query + parts.fragment:
            # an unencoded '/', '?' or '#' in the password ended the host part early
            raise StoreError("the ClickHouse URL has an '@' after its host: percent-encode "
                             "'@', ':', '/', '?' and '#' in the user and password")
        try:
            port = parts.port
        except ValueError:
            raise StoreError(f"the ClickHouse URL's port is not a number from 0 to 65535 (in "
                             f"{_redact(parts.netloc)})") from None
        if not parts.hostname:
            raise StoreError("the ClickHouse URL names no host: clickhouse://host/database")
        options = _options(parts.query)
        secure = _flag(options.get("secure", "0"))
        database = parts.path.lstrip("/")
        if not database:
            raise StoreError("the ClickHouse URL names no database: "
                             "clickhouse://host/database")
        if not _IDENTIFIER.fullmatch(database):
            raise StoreError(f"ClickHouse database {database!r} is not a plain name: use "
                             "letters, digits and '_', not starting with a digit")
        cluster = options.get("cluster")
        if cluster is not None and not _CLUSTER.fullmatch(cluster):
            raise StoreError(f"ClickHouse cluster {cluster!r} is not a plain name: use "
                             "letters, digits, '_', '-' and '.'")
        return cls(host=parts.hostname, database=database,
                   port=port if port is not None else (8443 if secure else 8123),
                   user=unquote(parts.username) if parts.username else "default",
                   password=unquote(parts.password) if parts.password else "",
                   cluster=cluster, secure=secure)

    @property
    def http_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self.secure else 'http'}://{host}:{self.port}/"

    @property
    def address(self) -> str:
        """``host:port``, for messages."""
        return f"{self.host}:{self.port}"

    def redacted(self) -> str:
        """The URL with the password replaced by ``***``."""
        user = quote(self.user, safe="") + (":***" if self.password else "")
        host = f"[{self.host}]" if ":" in self.host else self.host
        query = "&".join(
            ([f"cluster={self.cluster}"] if self.cluster else [])
            + (["secure=1"] if self.secure else []))
        return (f"clickhouse://{user}@{host}:{self.port}/{self.database}"
                + (f"?{query}" if query else ""))

    def __repr__(self) -> str:
        return f"ClickHouseURL({self.redacted()!r})"

    __str__ = redacted


def _redact(netloc: str) -> str:
    user, at, host = netloc.rpartition("@")
    return f"{user.partition(':')[0]}:***@{host}" if at else netloc


def _options(query: str) -> dict[str, str]:
    options: dict[str, str] = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key not in _OPTIONS:
            raise StoreError(f"unknown ClickHouse URL option {key!r}: known are "
                             f"{', '.join(_OPTIONS)}")
        if key in options:
            raise StoreError(f"the ClickHouse URL option {key!r} is given twice")
        if not value:
            raise StoreError(f"the ClickHouse URL option {key!r} has no value")
        options[key] = value
    return options


def _flag(value: str) -> bool:
    if value.lower() in ("1", "true", "yes"):
        return True
    if value.lower() in ("0", "false", "no"):
        return False
    raise StoreError(f"the ClickHouse URL option secure is 1 or 0, not {value!r}")


# -- SQL text ----------------------------------------------------------------------------

_STRING_ESCAPES = {"\\": "\\\\", "'": "\\'"}
_SUBNORMAL_SCALE = 2.0 ** 600


def _escape_char(char: str) -> str:
    if char in _STRING_ESCAPES:
        return _STRING_ESCAPES[char]
    if ord(char) < 0x20 or ord(char) == 0x7F:
        return f"\\x{ord(char):02x}"
    return char


_NEEDS_ESCAPE = re.compile(r"[\\'\x00-\x1f\x7f]")


def literal(value: object) -> str:
    """A SQL literal for `value`, to inline (18.16 has no server-side parameters).

    str (backslash, quote and control characters escaped), int (64-bit range), finite float
    (exact: shortest repr), bool (1/0: 18.16 has no true/false), None (NULL), and a list or
    tuple of those as ``(a, b, c)`` for IN. Negative numbers come in parentheses, so that
    ``x-{literal(-1)}`` cannot become the comment ``x--1``. Anything else is a TypeError.
    """
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        if not -(1 << 63) <= value < (1 << 64):
            raise ValueError(f"{value} is outside ClickHouse's 64-bit integers")
        return str(value) if value >= 0 else f"({value})"
    if isinstance(value, float):
        return _float_literal(value)
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("a string with a lone surrogate has no UTF-8 literal") from None
        return "'" + _NEEDS_ESCAPE.sub(lambda m: _escape_char(m.group()), value) + "'"
    if isinstance(value, list | tuple):
        if not value:
            raise ValueError("an empty list has no SQL literal: leave the IN out instead")
        return "(" + ", ".join(literal(item) for item in value) + ")"
    raise TypeError(f"no SQL literal for a {type(value).__name__}")


def _float_literal(value: float) -> str:
    if not math.isfinite(value):
        raise ValueError(f"{value} has no ClickHouse literal (only finite floats)")
    if value != 0 and abs(value) < 2.2250738585072014e-308:
        # 18.16's parser refuses subnormal literals; scaling by a power of two is exact
        return f"({value * _SUBNORMAL_SCALE!r} / {_SUBNORMAL_SCALE!r})"
    text = repr(value)
    return f"({text})" if text.startswith("-") else text


def quote_identifier(name: str) -> str:
    """A column or table name for SQL: as is when plain, else in backquotes."""
    if _IDENTIFIER.fullmatch(name):
        return name
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


# -- the client --------------------------------------------------------------------------


class ClickHouseClient:
    """One keep-alive HTTP connection pool to one ClickHouse server; safe to share between
    threads (httpx.Client is).

    The server refusing, or not answering, is a `ClickHouseError` (a StoreError); values that
    do not fit their column are an InputError, raised before anything is sent; a column type
    the Native codec lacks is a StoreError; misuse (a bad setting name) is a ValueError.
    """

    def __init__(self, url: ClickHouseURL | str, *, timeout: float = 300.0,
                 connect_timeout: float = 10.0,
                 transport: httpx.BaseTransport | None = None,
                 retry_delays: Sequence[float] = (0.25, 1.0, 3.0)) -> None:
        """``transport`` replaces the network (tests answer with an in-process ClickHouse);
        ``retry_delays``: the seconds waited before each new try of a request that failed
        for a connection between servers (a shard restarting, a network hiccup)."""
        self.url = url if isinstance(url, ClickHouseURL) else ClickHouseURL.parse(url)
        self.retry_delays = tuple(retry_delays)
        self._http = httpx.Client(
            base_url=self.url.http_url,
            transport=transport,
            headers={"X-ClickHouse-User": self.url.user, "X-ClickHouse-Key": self.url.password},
            timeout=httpx.Timeout(timeout, connect=connect_timeout),
            # below the server's keep-alive (3 s by default now, 10 s in 18.16), so that a
            # pooled connection is never one the server is closing
            limits=httpx.Limits(keepalive_expiry=2.0),
        )
        self._version: tuple[int, ...] | None = None
        self._version_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"ClickHouseClient({self.url.redacted()!r})"

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ClickHouseClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- statements and reads -------------------------------------------------------------

    def execute(self, sql: str, settings: Settings | None = None, *,
                use_database: bool = True) -> None:
        """Run a statement that answers no rows (DDL, ALTER, INSERT ... SELECT).

        ``use_database=False`` runs it outside the URL's database, e.g. to create that
        database (every request naming a missing database fails with `UNKNOWN_DATABASE`).
        """
        self._request(sql, settings, use_database=use_database, read=False)

    def query_text(self, sql: str, settings: Settings | None = None, *,
                   use_database: bool = True) -> str:
        """The answer as text (TabSeparated unless the SQL names a FORMAT), without its final
        newline."""
        body = self._request(sql, settings, use_database=use_database)
        return body.decode("utf-8", "replace").removesuffix("\n")

    def query_rows(self, sql: str, settings: Settings | None = None, *,
                   use_database: bool = True) -> list[tuple[Any, ...]]:
        """A small answer as tuples: ints, exact floats (NaN and infinities too), bools, None
        for NULL, str for everything else (strings, enums; dates and times as the server
        prints them, in its zone, and 18.16 prints the DateTime 0 as 0000-00-00 00:00:00)."""
        body = self._request(f"{_bare(sql)}\nFORMAT TabSeparatedWithNamesAndTypes", settings,
                             use_database=use_database)
        return rows_from_tsv(body)

    def query_arrow(self, sql: str, settings: Settings | None = None, *,
                    columns: Mapping[str, str] | None = None) -> Any:
        """The answer as an Arrow table, read in the Native format (one chunk per block).

        Column types follow `meterhub.store.clickhouse_native`; each field's metadata keeps
        the ClickHouse type. ClickHouse answers no rows with an empty body, so the columns of
        an empty answer come from ``columns`` (name -> ClickHouse type) when given, else from
        a ``DESCRIBE`` of the query (one more round trip, only then).
        """
        body = self._request(f"{_bare(sql)}\nFORMAT Native", _native(settings))
        try:
            table = decode_native(body)
        except NativeFormatError as exc:
            raise _streamed_error(body) or exc from None
        if table is not None:
            return table
        if columns is None:
            described = self.query_rows(f"DESCRIBE TABLE ({_bare(sql)})", settings)
            columns = {row[0]: row[1] for row in described}
        return arrow_schema(columns).empty_table()

    def insert_arrow(self, table_name: str, table: Any,
                     types: Mapping[str, str] | Sequence[str],
                     settings: Settings | None = None, *,
                     block_rows: int = DEFAULT_BLOCK_ROWS) -> None:
        """``INSERT INTO table_name (its columns) FORMAT Native`` with the Arrow table's rows.

        ``types`` gives each column's ClickHouse type, by name or by position. Every value is
        checked before anything is sent (InputError: nothing was written); the body is then
        made a block of ``block_rows`` rows at a time while it is sent. A table without rows
        sends nothing. ``table_name`` is ``name`` or ``database.name``.
        """
        if not _TABLE_NAME.fullmatch(table_name):
            raise ValueError(f"table name {table_name!r} is not a plain name or db.name")
        prepared = prepare_columns(table, types)
        if table.num_rows == 0:
            return
        names = ", ".join(quote_identifier(name) for name in table.column_names)
        self._request(f"INSERT INTO {table_name} ({names}) FORMAT Native", _native(settings),
                      read=False,
                      data=lambda: encode_native(prepared, table.num_rows, block_rows))

    # -- the server -----------------------------------------------------------------------

    def server_version(self) -> tuple[int, ...]:
        """The server's version, e.g. (18, 16, 1); asked once, then cached."""
        with self._version_lock:
            if self._version is None:
                text = self.query_text("SELECT version()", use_database=False)
                try:
                    self._version = tuple(int(part) for part in text.strip().split("."))
                except ValueError:
                    raise StoreError(f"ClickHouse's version {text!r} is not numbers and "
                                     "dots") from None
            return self._version

    def ping(self) -> None:
        """Raise ClickHouseError unless the server answers (``/ping``: no credentials)."""
        response = self._send("GET", "ping", params={}, content=None)
        if response.status_code != 200:
            raise ClickHouseError(f"ClickHouse at {self.url.address} answered /ping with "
                                  f"HTTP {response.status_code}", status=response.status_code)

    # -- plumbing -------------------------------------------------------------------------

    def _request(self, sql: str, settings: Settings | None, *, use_database: bool = True,
                 read: bool = True, data: Callable[[], Iterator[bytes]] | None = None
                 ) -> bytes:
        """Send one request; ``data`` makes the body (again, for each try), and the SQL then
        goes as a parameter. A server that could not reach another (`RETRIED_CODES`) is
        asked again after each of `retry_delays`: every statement the store sends is
        idempotent (rows replace rows of their key, tables are created if not there; those
        errors come only from reads and inserts that span servers)."""
        params = _settings(settings)
        if read:
            params.setdefault("wait_end_of_query", "1")
        if len(sql) > _LONG_SQL:  # a selection of thousands of series names every id
            params.setdefault("max_query_size", str(len(sql) + _LONG_SQL))
        if use_database:
            params["database"] = self.url.database
        if data is not None:
            params["query"] = sql
        for delay in [*self.retry_delays, None]:
            content = sql.encode() if data is None else data()
            response = self._send("POST", "", params=params, content=content)
            if response.status_code == 200:
                return response.content
            error = _answer_error(response)
            if delay is None or error.code not in RETRIED_CODES:
                raise error
            log.warning("%s; asking again in %.2g s", error, delay)
            time.sleep(delay)
        raise AssertionError("unreachable")

    def _send(self, method: str, path: str, *, params: dict[str, str],
              content: bytes | Iterator[bytes] | None) -> httpx.Response:
        try:
            return self._http.request(method, path, params=params, content=content)
        except httpx.TimeoutException as exc:
            raise ClickHouseError(f"ClickHouse at {self.url.address} did not answer in time "
                                  f"({type(exc).__name__})") from None
        except httpx.TransportError as exc:
            raise ClickHouseError(f"cannot reach ClickHouse at {self.url.address}: "
                                  f"{exc or type(exc).__name__}") from None


def _settings(settings: Settings | None) -> dict[str, str]:
    params: dict[str, str] = {}
    for name, value in (settings or {}).items():
        if not _IDENTIFIER.fullmatch(name) or name in _RESERVED:
            raise ValueError(f"{name!r} is not a ClickHouse setting this client passes")
        params[name] = str(int(value)) if isinstance(value, bool) else str(value)
    return params


def _bare(sql: str) -> str:
    """The query without a final ';', so that a FORMAT clause can follow it."""
    return sql.rstrip().removesuffix(";")


def _native(settings: Settings | None) -> dict[str, str | int | float | bool]:
    # plain columns for LowCardinality ones, which this codec does not read (18.16 knows
    # the setting too; chdb, in-process, ignores it)
    return {"low_cardinality_allow_in_native_format": 0, **(settings or {})}


def _server_message(text: bytes) -> str:
    """The server's exception on one line, with the lines nested in it (why each
    connection between servers failed, when a distributed query could reach no shard: the
    whole reason), each line once, without stack traces and `e.what()` tails."""
    lines: list[str] = []
    for line in text.decode("utf-8", "replace").split("Stack trace", 1)[0].splitlines():
        line = _WHAT.sub("", line).strip()
        if line and line not in lines:
            lines.append(line)
    message = " / ".join(lines)
    return message if len(message) <= 2000 else message[:2000] + "..."


def _answer_error(response: httpx.Response) -> ClickHouseError:
    body = response.content
    header = response.headers.get("X-ClickHouse-Exception-Code", "")
    match = _CODE.search(body[:200])
    code = int(header) if header.isdigit() else int(match.group(1)) if match else None
    message = _server_message(body) or f"HTTP {response.status_code}"
    return ClickHouseError(f"ClickHouse: {message}", code=code, status=response.status_code)


def _streamed_error(body: bytes) -> ClickHouseError | None:
    """The error a server appended to an answer already under way, if that is what broke
    it (wait_end_of_query prevents it; servers that ignore the setting still do it)."""
    for match in _CODE.finditer(body, max(0, len(body) - 65536)):
        tail = body[match.start():]
        # the first "Code: N" from which the rest is text naming an exception
        try:
            text = tail.decode("utf-8")
        except UnicodeDecodeError:
            continue
        if "Exception" in text:
            return ClickHouseError(f"ClickHouse: {_server_message(tail)}",
                                   code=int(match.group(1)))
    return None


def rows_from_tsv(body: bytes) -> list[tuple[Any, ...]]:
    """The rows of a TabSeparatedWithNamesAndTypes answer, as `ClickHouseClient.query_rows`
    gives them."""
    lines = body.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    if len(lines) < 2:
        raise StoreError("ClickHouse answered without the column header that "
                         "TabSeparatedWithNamesAndTypes has")
    converters = [_converter(unescape(name).decode()) for name in lines[1].split(b"\t")]
    rows = []
    for line in lines[2:]:
        fields = line.split(b"\t")
        if len(fields) != len(converters):
            raise StoreError("ClickHouse answered a row with a wrong number of fields")
        rows.append(tuple(convert(item) for convert, item in zip(converters, fields,
                                                                 strict=True)))
    return rows


def _converter(type_name: str) -> Any:
    ctype = type_name
    if ctype.startswith("LowCardinality(") and ctype.endswith(")"):
        ctype = ctype[len("LowCardinality("):-1]
    nullable = ctype.startswith("Nullable(") and ctype.endswith(")")
    base = ctype[len("Nullable("):-1] if nullable else ctype
    if base == "Nothing":
        return lambda raw: None
    plain = _plain_converter(base)
    if nullable:
        return lambda raw: None if raw == b"\\N" else plain(raw)
    return plain


def _plain_converter(base: str) -> Any:
    if re.fullmatch(r"U?Int(8|16|32|64|128|256)", base):
        return int
    if base == "Float64":
        return float
    if base == "Float32":
        # the shortest text of a float32, widened exactly as the stored value is
        return lambda raw: float(np.float32(raw.decode()))
    if base == "Bool":
        return lambda raw: raw == b"true"
    return lambda raw: unescape(raw).decode("utf-8", "replace")


"""The thin ClickHouse HTTP client and its Native codec, against both dialects the store
must speak: a real clickhouse-server 18.16 (Debian's, started by `clickhouse_single`) and
current ClickHouse (26.x) in-process through chdb, which answers the client's requests
through an httpx transport as a current server's HTTP interface would. chdb has no HTTP
server, so what only HTTP shows (header auth, status codes, errors appended to a streamed
answer) is checked on 18.16, and on current-shaped answers the tests build from chdb's text.
"""

from __future__ import annotations

import contextlib
import math
import re
import socket
import struct
import tempfile
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import numpy as np
import pyarrow as pa
import pytest

from meterhub.errors import InputError, StoreError
from meterhub.store.clickhouse_http import (
    UNKNOWN_DATABASE,
    UNKNOWN_TABLE,
    ClickHouseClient,
    ClickHouseError,
    ClickHouseURL,
    literal,
    quote_identifier,
    rows_from_tsv,
)
from meterhub.store.clickhouse_native import (
    TYPE_KEY,
    decode_native,
    encode_native,
    parse_type,
    prepare_columns,
)
from tests.chdb_transport import ChdbHTTP, chdb_connection, chdb_native
from tests.clickhouse_servers import ClickHouseServer

pytest_plugins = ["tests.clickhouse_fixtures"]


SECRET = "s3cr%t:p@ss/w?rd#"  # a password that must never show
QUALITY = "Enum8('good' = 1, 'bad' = 2, 'estimated' = 3)"


# -- backends ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server_1816(clickhouse_single: ClickHouseServer) -> Iterator[ClickHouseClient]:
    database = f"chh_{uuid.uuid4().hex[:12]}"
    url = f"clickhouse://{clickhouse_single.host}:{clickhouse_single.http_port}/{database}"
    with ClickHouseClient(url) as client:
        client.execute(f"CREATE DATABASE {database}", use_database=False)
        yield client
        client.execute(f"DROP DATABASE {database}", use_database=False)


@pytest.fixture(scope="module")
def server_chdb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClickHouseClient]:
    transport = ChdbHTTP(tmp_path_factory.mktemp("chdb"))
    client = ClickHouseClient("clickhouse://chdb/chh", transport=transport)
    client.execute("CREATE DATABASE chh", use_database=False)
    yield client
    client.close()


@pytest.fixture(params=["18.16", "chdb"])
def client(request: pytest.FixtureRequest) -> ClickHouseClient:
    """Each test below runs on both dialects."""
    name = "server_1816" if request.param == "18.16" else "server_chdb"
    answer: ClickHouseClient = request.getfixturevalue(name)
    return answer


def table_name() -> str:
    return f"t_{uuid.uuid4().hex[:10]}"


def assert_same(actual: Any, expected: Any) -> None:
    """Arrow equality that tells NaN payloads and -0.0 apart (bits, not values)."""
    assert actual.column_names == expected.column_names
    for name in expected.column_names:
        got = actual.column(name).combine_chunks()
        want = expected.column(name).combine_chunks()
        assert got.type == want.type, name
        if pa.types.is_floating(want.type):
            assert got.is_null().equals(want.is_null()), name
            width = {4: np.uint32, 8: np.uint64}[want.type.byte_width]
            bits = [array.fill_null(0).to_numpy().view(width) for array in (got, want)]
            assert np.array_equal(*bits), name
        else:
            assert got.equals(want), (name, got.to_pylist()[:5], want.to_pylist()[:5])


# -- the URL -----------------------------------------------------------------------------


def test_url_defaults_and_parts() -> None:
    url = ClickHouseURL.parse("clickhouse://db.example/metrics")
    assert (url.user, url.password, url.host, url.port, url.database, url.cluster,
            url.secure) == ("default", "", "db.example", 8123, "metrics", None, False)
    assert url.http_url == "http://db.example:8123/"
    secure = ClickHouseURL.parse("clickhouse://a%40b:p%2Fw@[::1]/m_2?cluster=c-1.x&secure=1")
    assert (secure.user, secure.password, secure.host, secure.port, secure.cluster,
            secure.secure) == ("a@b", "p/w", "::1", 8443, "c-1.x", True)
    assert secure.http_url == "https://[::1]:8443/"
    assert ClickHouseURL.parse("clickhouse://u@h:9000/d?secure=0").port == 9000


def test_url_never_shows_the_password() -> None:
    url = ClickHouseURL.parse(f"clickhouse://alice:{quote(SECRET, safe='')}@h/d")
    assert url.password == SECRET
    for text in (repr(url), str(url), url.redacted(), repr(ClickHouseClient(url))):
        assert "s3cr" not in text, text
    assert url.redacted() == "clickhouse://alice:***@h:8123/d"


@pytest.mark.parametrize(("url", "message"), [
    ("http://h/d", "starts with clickhouse://"),
    ("clickhouse:///d", "names no host"),
    ("clickhouse://h", "names no database"),
    ("clickhouse://h/", "names no database"),
    ("clickhouse://h/my-db", "'my-db' is not a plain name"),
    ("clickhouse://h/a.b", "'a.b' is not a plain name"),
    ("clickhouse://h/1db", "not starting with a digit"),
    ("clickhouse://h/d/e", "'d/e' is not a plain name"),
    ("clickhouse://h/d?user=x", "unknown ClickHouse URL option 'user': known are cluster, "
                                "secure"),
    ("clickhouse://h/d?secure=1&secure=1", "given twice"),
    ("clickhouse://h/d?secure=maybe", "secure is 1 or 0"),
    ("clickhouse://h/d?cluster=", "has no value"),
    ("clickhouse://h/d?cluster=a;b", "cluster 'a;b' is not a plain name"),
    (f"clickhouse://u:{SECRET}@h/d", "percent-encode"),
    ("clickhouse://u:s3cr3t@h:port/d", "port is not a number from 0 to 65535"),
])
def test_url_refused_with_a_clear_message(url: str, message: str) -> None:
    with pytest.raises(StoreError, match=re.escape(message)) as caught:
        ClickHouseURL.parse(url)
    assert "s3cr" not in str(caught.value)


# -- literals ----------------------------------------------------------------------------

HOSTILE = ["", "'", "''", "\\", "\\'", "a'b\\c", "\n\t\r", "\0", "a\0b", "\x01\x1f\x7f",
           "\b\f\v\a\x1b", "é漢字🙂", "\u2028\ufeff", "\\N", "NULL", "-- x", "/* x", "\\x41",
           "';DROP TABLE x;--", "".join(chr(i) for i in range(128)), "x" * 20000]
NUMBERS: list[int | float] = [0, 1, -1, 255, -128, 2**63 - 1, -(2**63), 2**64 - 1, 0.0, -0.0,
                              0.1, -2.5, 1e300, -1e-300, 1e22, 5e-324, -5e-324, 1e-310,
                              2.2250738585072014e-308, 1.7976931348623157e308, 0.1 + 0.2]


def test_literal_text() -> None:
    assert literal(None) == "NULL"
    assert (literal(True), literal(False)) == ("1", "0")
    assert literal(-5) == "(-5)"  # so that x-{literal(-5)} is no comment
    assert literal("it's \\") == "'it\\'s \\\\'"
    assert literal("a\nb\0") == "'a\\x0ab\\x00'"
    assert literal([1, "a", None, (2.5,)]) == "(1, 'a', NULL, (2.5))"
    assert quote_identifier("ok_1") == "ok_1"
    assert quote_identifier("odd `name`") == "`odd \\`name\\``"


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, 2**64, -(2**63) - 1, [],
                                   b"x", object(), {"a": 1}, "\ud800"])
def test_literal_refuses(value: object) -> None:
    with pytest.raises((TypeError, ValueError)):
        literal(value)


def test_literal_strings_round_trip(client: ClickHouseClient) -> None:
    columns = ", ".join(f"{literal(text)} AS c{i}" for i, text in enumerate(HOSTILE))
    assert list(client.query_arrow(f"SELECT {columns}").to_pylist()[0].values()) == HOSTILE
    assert list(client.query_rows(f"SELECT {columns}")[0]) == HOSTILE
    assert client.query_rows(f"SELECT {literal('b')} IN {literal(['a', 'b'])}") == [(1,)]


def test_literal_numbers_round_trip(client: ClickHouseClient) -> None:
    columns = ", ".join(f"{literal(number)} AS c{i}" for i, number in enumerate(NUMBERS))
    answer = client.query_arrow(f"SELECT {columns}").to_pylist()[0]
    for number, got in zip(NUMBERS, answer.values(), strict=True):
        assert type(got) is type(number), (number, got)
        if isinstance(number, float):
            assert struct.pack("<d", got) == struct.pack("<d", number), (number, got)
        else:
            assert got == number
    assert client.query_rows(f"SELECT 5 - {literal(-1)}, {literal(None)}") == [(6, None)]


# -- Native round trips ------------------------------------------------------------------

ENUM = "Enum8('good' = 1, 'it\\'s' = -3, 'a\\\\b' = 127)"
ENUM16 = "Enum16('lo' = -32768, 'hi' = 32767)"
ROWS = 9
TEXTS = ["", "a", "é漢🙂", "\0\t\n\\'", "x" * 127, "y" * 128, "z" * 16383, "w" * 16384,
         "v" * (1 << 21)]  # 1-, 2-, 3- and 4-byte length prefixes


def typed_columns(with_bool: bool) -> dict[str, tuple[str, Any]]:
    """Every supported type (and its Nullable) with edge values, ROWS rows each."""
    def nulls(values: list[Any], kind: Any) -> Any:
        return pa.array([None if i % 3 == 1 else v for i, v in enumerate(values)], kind)

    ints = {name: (info.min, info.max) for name, info in (
        (name, np.iinfo(np.dtype(name.lower()))) for name in
        ("Int8", "Int16", "Int32", "Int64", "UInt8", "UInt16", "UInt32", "UInt64"))}
    columns: dict[str, tuple[str, Any]] = {"id": ("UInt32", pa.array(range(ROWS), pa.uint32()))}
    for name, (low, high) in ints.items():
        values = [low, high, 0, 1, low + 1, high - 1, 7, 0, high // 3]
        kind = pa.from_numpy_dtype(np.dtype(name.lower()))
        columns[name.lower()] = (name, pa.array(values, kind))
        columns[f"n_{name.lower()}"] = (f"Nullable({name})", nulls(values, kind))
    floats = [math.nan, math.inf, -math.inf, -0.0, 0.1, 5e-324, 1.7976931348623157e308,
              -1.5, 0.0]
    columns["f64"] = ("Float64", pa.array(floats, pa.float64()))
    columns["n_f64"] = ("Nullable(Float64)", nulls(floats, pa.float64()))
    columns["f32"] = ("Float32", pa.array(np.array([*floats[:5], 1e-45, 3.4e38, -1.5, 0],
                                                   np.float32)))
    columns["n_f32"] = ("Nullable(Float32)", nulls(columns["f32"][1].to_pylist(),
                                                   pa.float32()))
    columns["s"] = ("String", pa.array(TEXTS))
    columns["n_s"] = ("Nullable(String)", nulls(TEXTS, pa.string()))
    columns["empty_s"] = ("String", pa.array([""] * ROWS))
    columns["null_s"] = ("Nullable(String)", pa.array([None] * ROWS, pa.string()))
    names = ["good", "it's", "a\\b"] * 3
    columns["e"] = (ENUM, pa.array(names))
    columns["n_e"] = (f"Nullable({ENUM})", nulls(names, pa.string()))
    columns["e16"] = (ENUM16, pa.array(["lo", "hi"] * 4 + ["lo"]))
    stamps = [0, 2**32 - 1, 1_700_000_000, 86399, 1, 2, 3, 4, 5]
    columns["dt"] = ("DateTime", pa.array(stamps, pa.timestamp("s", tz="UTC")))
    columns["n_dt"] = ("Nullable(DateTime)", nulls(stamps, pa.timestamp("s", tz="UTC")))
    columns["d"] = ("Date", pa.array([0, 65535, 19000, 1, 2, 3, 4, 5, 6], pa.date32()))
    if with_bool:
        columns["b"] = ("Bool", pa.array([True, False] * 4 + [True]))
        columns["n_b"] = ("Nullable(Bool)", nulls([True, False] * 4 + [True], pa.bool_()))
    return columns


def meaning(type_name: str) -> tuple[str, bool, dict[str, int]]:
    parsed = parse_type(type_name)
    return parsed.base, parsed.nullable, dict(parsed.enum)


def create(client: ClickHouseClient, columns: dict[str, str], engine: str = "Memory") -> str:
    name = table_name()
    body = ", ".join(f"{quote_identifier(col)} {kind}" for col, kind in columns.items())
    client.execute(f"CREATE TABLE {name} ({body}) ENGINE = {engine}")
    return name


def test_native_round_trip_every_type(client: ClickHouseClient) -> None:
    columns = typed_columns(with_bool=client.server_version() >= (21, 12))
    types = {name: kind for name, (kind, _) in columns.items()}
    table = pa.table({name: values for name, (_, values) in columns.items()})
    name = create(client, types)
    client.insert_arrow(name, table, types)
    back = client.query_arrow(f"SELECT * FROM {name} ORDER BY id")
    # servers spell an enum's values sorted by code: compare what the type means
    assert [meaning(field.metadata[TYPE_KEY].decode()) for field in back.schema] == [
        meaning(kind) for kind in types.values()]
    expected = table.cast(pa.schema([parse_type(kind).field(col)
                                     for col, kind in types.items()]))
    assert_same(back, expected)
    assert back.column("e").to_pylist()[:3] == ["good", "it's", "a\\b"]
    lengths = client.query_rows(f"SELECT length(s) FROM {name} ORDER BY id")
    assert [row[0] for row in lengths] == [len(text.encode()) for text in TEXTS]


def test_native_inputs_that_are_cast(client: ClickHouseClient) -> None:
    types = {"id": "Int64", "e": f"Nullable({QUALITY})", "code": QUALITY, "dt": "DateTime",
             "f": "Float64", "s": "Nullable(String)", "large": "Nullable(String)"}
    name = create(client, types)
    dictionary = pa.chunked_array([pa.array(["bad", None]).dictionary_encode(),
                                   pa.array(["estimated", "good"]).dictionary_encode()])
    table = pa.table({
        "id": pa.array([1, 2, 3, 4], pa.int8()),
        "e": dictionary,  # chunks with different dictionaries
        "code": pa.array([3, 2, 1, 1], pa.int64()),
        "dt": pa.array(np.array([0, 1_500_000_000, 2, 3]) * 1_000_000,
                       pa.timestamp("us")),  # naive: UTC
        "f": pa.array([1, 2, 3, 4], pa.int32()),
        # garbage bytes under the NULL must not reach the server
        "s": pa.Array.from_buffers(pa.string(), 4, [
            pa.py_buffer(np.packbits([1, 0, 1, 1], bitorder="little")),
            pa.py_buffer(np.array([0, 1, 4, 5, 6], np.int32)), pa.py_buffer(b"aXYZbc")]),
        "large": pa.array(["ü", "", None, "ß" * 200], pa.large_string()),
    })
    client.insert_arrow(name, table, list(types.values()), block_rows=3)
    assert client.query_rows(f"SELECT id, e, code, toUnixTimestamp(dt), f, s, large "
                             f"FROM {name} ORDER BY id;") == [
        (1, "bad", "estimated", 0, 1.0, "a", "ü"),
        (2, None, "bad", 1500000000, 2.0, None, ""),
        (3, "estimated", "good", 2, 3.0, "b", None),
        (4, "good", "good", 3, 4.0, "c", "ß" * 200)]


@pytest.mark.parametrize(("kind", "values", "message"), [
    ("UInt8", pa.array([1, 300]), "cannot be written as ClickHouse UInt8"),
    ("Int64", pa.array([1.5]), "cannot be written as ClickHouse Int64"),
    ("Int64", pa.array([1, None]), "has 1 NULL(s) but its ClickHouse type Int64"),
    ("DateTime", pa.array([1500], pa.timestamp("ms")), "cannot be written"),
    ("DateTime", pa.array([-1]), "cannot be written"),
    (QUALITY, pa.array(["good", "fine", "okay"]), "['fine', 'okay'] are not in Enum8"),
    (QUALITY, pa.array([1, 4]), "a code that Enum8"),
])
def test_insert_refuses_values_that_do_not_fit(kind: str, values: Any, message: str) -> None:
    with pytest.raises(InputError, match=re.escape(message)):
        prepare_columns(pa.table({"c": values}), [kind])


def test_insert_checks_everything_before_sending(client: ClickHouseClient) -> None:
    name = create(client, {"a": "UInt8"})
    # the bad value is in the last block: no block may have gone out before the check
    with pytest.raises(InputError):
        client.insert_arrow(name, pa.table({"a": [1] * 10 + [256]}), ["UInt8"], block_rows=2)
    assert client.query_rows(f"SELECT count() FROM {name}") == [(0,)]


def test_empty_tables(client: ClickHouseClient) -> None:
    types = {"a": "Int64", "b": "Nullable(String)", "q": QUALITY, "t": "DateTime"}
    name = create(client, types)
    client.insert_arrow(name, pa.table({col: pa.array([], pa.int64()) for col in "abqt"}),
                        types)
    assert client.query_rows(f"SELECT count() FROM {name}") == [(0,)]
    # ClickHouse answers no rows with no block at all (18.16 and 26.x): the columns come from
    # the caller, or from a DESCRIBE of the query
    for columns in (types, None):
        empty = client.query_arrow(f"SELECT * FROM {name}", columns=columns)
        assert empty.num_rows == 0
        assert empty.schema == pa.schema([parse_type(kind).field(col)
                                          for col, kind in types.items()])
        assert [f.metadata[TYPE_KEY].decode() for f in empty.schema] == list(types.values())


def test_multi_block_answers_and_bodies(client: ClickHouseClient) -> None:
    answer = client.query_arrow(
        "SELECT number AS n, toString(number) AS s, if(number % 5 = 0, NULL, number) AS m "
        "FROM numbers(200000)")
    assert answer.num_rows == 200_000
    assert answer.column("n").num_chunks > 1  # one block per ~65k rows
    assert answer.column("n").to_numpy().tolist() == list(range(200_000))
    assert answer.column("s").to_pylist()[-1] == "199999"
    assert answer.column("m").null_count == 40_000
    name = create(client, {"n": "UInt64", "s": "String", "m": "Nullable(UInt64)"})
    client.insert_arrow(name, answer, ["UInt64", "String", "Nullable(UInt64)"],
                        block_rows=30_000)
    assert client.query_rows(f"SELECT count(), sum(n), countIf(m IS NULL), "
                             f"sum(length(s)) FROM {name}") == [
        (200_000, 199_999 * 100_000, 40_000, sum(len(str(i)) for i in range(200_000)))]


def test_errors_carry_clickhouse_codes(client: ClickHouseClient) -> None:
    with pytest.raises(ClickHouseError, match=r"^ClickHouse: Code: 60\b") as caught:
        client.query_rows("SELECT * FROM no_such_table")
    assert caught.value.code == UNKNOWN_TABLE
    with pytest.raises(ClickHouseError) as caught:
        client.insert_arrow("no_such_table", pa.table({"a": [1]}), ["Int64"])
    assert caught.value.code == UNKNOWN_TABLE
    with pytest.raises(ClickHouseError) as caught:
        client.query_arrow("SELECT * FROM no_such_db.t")
    assert caught.value.code == UNKNOWN_DATABASE
    with pytest.raises(ClickHouseError) as caught:
        client.execute("SELEC 1")
    assert caught.value.code == 62  # SYNTAX_ERROR
    assert "\n" not in str(caught.value)
    with pytest.raises(StoreError, match=r"Array\(UInt8\) is not supported"):
        client.query_arrow("SELECT [1, 2] AS a")


def test_query_rows_is_exact(client: ClickHouseClient) -> None:
    rows = client.query_rows(
        "SELECT toInt64(9007199254740993), toUInt64(18446744073709551615), 0.1 + 0.2, nan, "
        "-inf, toFloat32(0.1), NULL, toNullable(toInt32(5)), 'a\\tb\\nc\\\\N', "
        "toNullable('\\\\N'), CAST('bad' AS " + QUALITY + "), toDateTime(1, 'UTC') "
        "FROM numbers(2)")
    assert len(rows) == 2
    big, top, tenth, nan, neg_inf, f32, null, five, text, backslash_n, enum, stamp = rows[0]
    assert (big, top, tenth) == (9007199254740993, 18446744073709551615, 0.30000000000000004)
    assert math.isnan(nan)
    assert neg_inf == -math.inf
    assert f32 == float(np.float32(0.1))
    assert (null, five, text, backslash_n) == (None, 5, "a\tb\nc\\N", "\\N")
    assert (enum, stamp) == ("bad", "1970-01-01 00:00:01")


# -- 18.16 over HTTP -----------------------------------------------------------------------


def test_1816_version_and_ping(server_1816: ClickHouseClient) -> None:
    version = server_1816.server_version()
    print(f"clickhouse-server {'.'.join(map(str, version))}")
    assert version >= (18, 16)
    assert server_1816.server_version() is version  # cached
    server_1816.ping()


def test_1816_credentials_travel_in_headers(clickhouse_single: ClickHouseServer) -> None:
    # the server's default user has no password: a wrong one is refused only if it was sent
    url = (f"clickhouse://default:{quote(SECRET, safe='')}@{clickhouse_single.host}:"
           f"{clickhouse_single.http_port}/default")
    with ClickHouseClient(url) as client, pytest.raises(ClickHouseError) as caught:
        client.query_rows("SELECT 1")
    assert caught.value.code == 193  # WRONG_PASSWORD
    assert "s3cr" not in str(caught.value)
    with ClickHouseClient(url.replace("default:", "nobody:", 1)) as client, \
            pytest.raises(ClickHouseError) as caught:
        client.query_rows("SELECT 1")
    assert caught.value.code == 192  # UNKNOWN_USER


def test_unreachable_server_names_host_and_port() -> None:
    with free_port() as port, ClickHouseClient(
            f"clickhouse://u:{quote(SECRET, safe='')}@127.0.0.1:{port}/d",
            connect_timeout=2) as client:
        with pytest.raises(ClickHouseError, match=f"127.0.0.1:{port}") as caught:
            client.query_rows("SELECT 1")
        assert "s3cr" not in str(caught.value)
        assert caught.value.code is None
        with pytest.raises(ClickHouseError, match=f"127.0.0.1:{port}"):
            client.ping()


@contextlib.contextmanager
def free_port() -> Iterator[int]:
    """A loopback port with nothing listening: bound (so nobody else takes it), never
    listened on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def test_1816_error_after_the_answer_started(server_1816: ClickHouseClient) -> None:
    # without wait_end_of_query 18.16 answers 200 and appends the error to the Native body
    sql = "SELECT throwIf(number = 3000000) AS x FROM numbers(4000000)"
    for settings in ({}, {"wait_end_of_query": 0}):
        with pytest.raises(ClickHouseError, match="throwIf") as caught:
            server_1816.query_arrow(sql, settings)
        assert caught.value.code == 395


class Counting(httpx.BaseTransport):
    """The real network, counting requests; ``fail_first`` answers the first request whose
    SQL starts so with that answer instead (a shard unreachable for a moment)."""

    def __init__(self, fail_first: tuple[str, httpx.Response] | None = None) -> None:
        self.real = httpx.HTTPTransport()
        self.fail_first = fail_first
        self.sent: list[tuple[str, int]] = []  #: (SQL, bytes of body) of each request

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        body = request.read()
        sql = request.url.params.get("query") or body.decode(errors="replace")
        self.sent.append((sql, len(body)))
        if self.fail_first is not None and sql.startswith(self.fail_first[0]):
            answer, self.fail_first = self.fail_first[1], None
            return answer
        return self.real.handle_request(request)

    def close(self) -> None:
        self.real.close()


def test_1816_unreachable_shard_is_asked_again_and_its_reason_told(
        server_1816: ClickHouseClient) -> None:
    # a real ALL_CONNECTION_TRIES_FAILED: the server cannot reach a port nobody listens on
    with free_port() as port:
        transport = Counting()
        with ClickHouseClient(server_1816.url, transport=transport,
                              retry_delays=(0.01, 0.02)) as client:
            with pytest.raises(ClickHouseError) as caught:
                client.query_rows(f"SELECT * FROM remote('127.0.0.1:{port}', system.one)")
            assert caught.value.code == 279
            assert len(transport.sent) == 3  # the first try and one after each delay
            message = str(caught.value)
            # the reason the server gave under its first line, once, on the same line
            assert message.count(f"Connection refused (127.0.0.1:{port})") == 1, message
            assert "\n" not in message
            assert "e.what()" not in message
            # what no new try can mend is not tried again
            with pytest.raises(ClickHouseError) as caught:
                client.query_rows("SELECT * FROM no_such_table")
            assert caught.value.code == UNKNOWN_TABLE
            assert len(transport.sent) == 4
            assert str(caught.value).startswith("ClickHouse: Code: 60, ")
            assert "e.what()" not in str(caught.value)


def test_1816_insert_asked_again_sends_its_whole_body_again(
        server_1816: ClickHouseClient) -> None:
    name = create(server_1816, {"a": "UInt64"})
    with free_port() as port:
        unreachable = httpx.post(
            server_1816.url.http_url,
            content=f"SELECT * FROM remote('127.0.0.1:{port}', system.one)".encode())
    assert unreachable.status_code == 500
    assert unreachable.content.startswith(b"Code: 279")
    transport = Counting(fail_first=(f"INSERT INTO {name}", httpx.Response(
        500, content=unreachable.content)))
    with ClickHouseClient(server_1816.url, transport=transport,
                          retry_delays=(0.01,)) as client:
        client.insert_arrow(name, pa.table({"a": pa.array(range(100_000), pa.uint64())}),
                            ["UInt64"], block_rows=30_000)
    inserts = [size for sql, size in transport.sent if sql.startswith("INSERT")]
    assert len(inserts) == 2
    assert inserts[0] == inserts[1] > 800_000
    assert server_1816.query_rows(f"SELECT count(), sum(a) FROM {name}") == [
        (100_000, 99_999 * 50_000)]


def test_1816_settings_and_execute(server_1816: ClickHouseClient) -> None:
    assert server_1816.query_text(
        "SELECT value FROM system.settings WHERE name = 'max_block_size'",
        {"max_block_size": 1234}) == "1234"
    with pytest.raises(ClickHouseError) as caught:
        server_1816.query_text("SELECT 1", {"no_such_setting": 1})
    assert caught.value.code == 115  # UNKNOWN_SETTING
    with pytest.raises(ValueError, match="not a ClickHouse setting"):
        server_1816.query_text("SELECT 1", {"database": "other"})
    name = create(server_1816, {"a": "UInt64"})
    server_1816.execute(f"INSERT INTO {name} SELECT number FROM numbers(10)",
                        {"insert_distributed_sync": True})
    assert server_1816.query_rows(f"SELECT sum(a) FROM {name}") == [(45,)]


def test_1816_one_client_many_threads(server_1816: ClickHouseClient) -> None:
    def ask(i: int) -> list[tuple[Any, ...]]:
        # never numbers(0): 18.16 reads that as numbers without end
        return server_1816.query_rows(f"SELECT {i}, count() FROM numbers({i * 1000})")

    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(ask, range(1, 61)))
    assert answers == [[(i, i * 1000)] for i in range(1, 61)]


def test_1816_throughput_a_million_rows(server_1816: ClickHouseClient) -> None:
    n = 1_000_000
    rng = np.random.default_rng(7)
    types = {"series": "Int64", "ts": "Int64", "value": "Nullable(Float64)",
             "quality": QUALITY, "flags": "UInt8", "count": "Nullable(Int64)",
             "note": "Nullable(String)"}
    notes = pa.array(["", "reset", "gap before", "estimated from the neighbours"]).take(
        rng.integers(0, 4, n))
    table = pa.table({
        "series": np.arange(n, dtype=np.int64) % 100,
        "ts": np.arange(n, dtype=np.int64) * 1_000_000 + 1_700_000_000_000_000,
        "value": pa.array(rng.normal(size=n), mask=rng.random(n) < 0.05),
        "quality": pa.array(np.array(["good", "bad", "estimated"])[rng.integers(0, 3, n)]),
        "flags": rng.integers(0, 256, n, dtype=np.uint8),
        "count": pa.array(rng.integers(-(2**62), 2**62, n), mask=rng.random(n) < 0.5),
        "note": pa.compute.if_else(pa.array(rng.random(n) < 0.8), pa.scalar(None, pa.string()),
                                   notes),
    })
    name = create(server_1816, types, engine="MergeTree ORDER BY (series, ts)")
    started = time.perf_counter()
    server_1816.insert_arrow(name, table, types)
    inserted = time.perf_counter()
    back = server_1816.query_arrow(f"SELECT * FROM {name} ORDER BY ts")
    read = time.perf_counter()
    print(f"1 M rows on 18.16: insert {inserted - started:.2f} s "
          f"({n / (inserted - started) / 1e6:.2f} M rows/s), read {read - inserted:.2f} s "
          f"({n / (read - inserted) / 1e6:.2f} M rows/s)")
    assert_same(back, table.cast(back.schema))


# -- current answers, built from chdb -----------------------------------------------------


def current_error(sql: str) -> bytes:
    try:
        chdb_native(sql)
    except RuntimeError as exc:  # chdb's errors
        return str(exc).encode() + b"\n"
    raise AssertionError(f"{sql} did not fail")


def answering(status: int, content: bytes, headers: dict[str, str] | None = None
              ) -> ClickHouseClient:
    transport = httpx.MockTransport(lambda _: httpx.Response(status, headers=headers,
                                                             content=content))
    return ClickHouseClient("clickhouse://h/d", transport=transport)


def test_current_error_text_without_the_code_header() -> None:
    text = current_error("SELECT * FROM no_such_table")
    assert text.startswith(b"Code: 60. DB::Exception: ")  # the current shape
    with answering(404, text) as client, pytest.raises(ClickHouseError) as caught:
        client.query_rows("SELECT * FROM no_such_table")
    assert caught.value.code == UNKNOWN_TABLE
    assert caught.value.status == 404
    assert str(caught.value) == "ClickHouse: " + text.decode().strip()


def test_current_error_appended_to_a_streamed_answer() -> None:
    body = chdb_native("SELECT number AS x FROM numbers(100000)")
    error = current_error("SELECT throwIf(number = 5) FROM numbers(10)")
    # current servers mark it with an exception tag (24.11 on); older ones append bare text
    for trailer in (error, b"__exception__\r\nabcd1234\r\n" + error + b"180 abcd1234\r\n"
                    b"__exception__\r\n"):
        with answering(200, body[:-1000] + trailer) as client, \
                pytest.raises(ClickHouseError, match="throwIf") as caught:
            client.query_arrow("SELECT x")
        assert caught.value.code == 395
    with answering(200, body[:-1000]) as client, pytest.raises(StoreError, match="cut short"):
        client.query_arrow("SELECT x")


def test_current_native_answers_decode() -> None:
    answer = decode_native(chdb_native(
        "SELECT number % 2 = 0 AS cmp, toBool(number % 2) AS b, "
        "toDateTime(number, 'Asia/Kolkata') AS t, toDate(number) AS d, NULL AS n, "
        "CAST(number AS Enum16('x' = 0, 'y' = 1)) AS e "
        "FROM numbers(2)"))
    assert answer is not None
    assert [answer.schema.field(c).metadata[TYPE_KEY] for c in answer.column_names] == [
        b"UInt8", b"Bool", b"DateTime", b"Date", b"Nullable(Nothing)",
        b"Enum16('x' = 0, 'y' = 1)"]
    assert answer.to_pylist()[1] == {
        "cmp": 0, "b": True, "t": pa.scalar(1, pa.timestamp("s", tz="UTC")).as_py(),
        "d": pa.scalar(1, pa.date32()).as_py(), "n": None, "e": "y"}
    assert decode_native(chdb_native("SELECT 1 WHERE 0")) is None
    # Native drops a DateTime's zone from its type (18.16 too); were it sent, it would read
    assert parse_type("Nullable(DateTime('Asia/Kolkata'))").arrow_type == pa.timestamp(
        "s", tz="UTC")
    with pytest.raises(StoreError, match=r"LowCardinality\(String\) is not supported"):
        decode_native(chdb_native("SELECT toLowCardinality('a') AS x"))


def test_current_reads_the_encoded_body() -> None:
    # chdb's own reader, not ours, takes our bytes: via file() and via format(Native, '...')
    columns = typed_columns(with_bool=True)
    types = [kind for kind, _ in columns.values()]
    table = pa.table({name: values for name, (_, values) in columns.items()})
    body = b"".join(encode_native(prepare_columns(table, types), ROWS, block_rows=4))
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "body.native"
        path.write_bytes(body)
        back = decode_native(chdb_native(f"SELECT * FROM file('{path}', Native) ORDER BY id"))
    assert back is not None
    assert [meaning(f.metadata[TYPE_KEY].decode()) for f in back.schema] == [
        meaning(kind) for kind in types]
    assert_same(back, table.cast(back.schema))
    small = b"".join(encode_native(prepare_columns(pa.table({"q": ["bad", None]}),
                                                   [f"Nullable({QUALITY})"]), 2))
    escaped = "".join(f"\\x{byte:02x}" for byte in small)
    assert chdb_connection().query(f"SELECT q FROM format(Native, '{escaped}')",
                                   "CSV").bytes() == b'"bad"\n\\N\n'


def test_current_tsv_rows() -> None:
    answer = chdb_connection().query(
        "SELECT true AS b, toUInt64(18446744073709551615) AS u, nan AS f, NULL AS n "
        "FORMAT TabSeparatedWithNamesAndTypes", "CSV").bytes()
    rows = rows_from_tsv(answer)
    assert rows[0][:2] == (True, 18446744073709551615)
    assert math.isnan(rows[0][2])
    assert rows[0][3] is None

"""The ClickHouse test servers themselves: they answer, in non-UTC zones, and the cluster is a
real two-shard cluster whose Distributed tables see every shard's rows."""

from __future__ import annotations

import re

import pytest

from tests.clickhouse_fixtures import MakeDatabase
from tests.clickhouse_servers import CLUSTER, ClickHouseError, ClickHouseServer


def test_single_server_answers(clickhouse_single: ClickHouseServer) -> None:
    version = clickhouse_single.query("SELECT version()").strip()
    print(f"clickhouse-server {version} at {clickhouse_single.url}")  # shown with -rP or -s
    assert re.fullmatch(r"\d+\.\d+\.\d+(\.\d+)?", version), version
    assert clickhouse_single.url == f"http://127.0.0.1:{clickhouse_single.http_port}"
    assert clickhouse_single.query("SELECT 1") == "1\n"


def test_single_server_zone_is_not_utc(clickhouse_single: ClickHouseServer) -> None:
    assert clickhouse_single.query("SELECT timezone()").strip() == "Australia/Lord_Howe"
    # the trap the zone sets: a time without a zone is read in the server's (+11:00 on that
    # day), one with a zone as written
    answer = clickhouse_single.query(
        "SELECT toUnixTimestamp(toDateTime('2024-01-01 00:00:00')),"
        " toUnixTimestamp(toDateTime('2024-01-01 00:00:00', 'UTC'))"
    )
    assert answer.split() == [str(1704067200 - 11 * 3600), "1704067200"]


def test_query_refused_raises_with_server_message(clickhouse_single: ClickHouseServer) -> None:
    with pytest.raises(ClickHouseError, match="no_such_table"):
        clickhouse_single.query("SELECT * FROM default.no_such_table")


def test_database_factory(
    clickhouse_single: ClickHouseServer, clickhouse_database: MakeDatabase
) -> None:
    first, second = clickhouse_database(clickhouse_single), clickhouse_database(clickhouse_single)
    assert first != second
    names = clickhouse_single.query("SELECT name FROM system.databases").split()
    assert {first, second} <= set(names)


def test_cluster_servers_share_ports(clickhouse_cluster: list[ClickHouseServer]) -> None:
    first, second = clickhouse_cluster
    assert (first.host, second.host) == ("127.0.0.2", "127.0.0.3")
    assert (first.http_port, first.tcp_port) == (second.http_port, second.tcp_port)
    assert first.http_port != first.tcp_port
    for server in clickhouse_cluster:
        assert server.query("SELECT 1") == "1\n"
    zones = [server.query("SELECT timezone()").strip() for server in clickhouse_cluster]
    assert zones == ["Asia/Kolkata", "America/New_York"]


def test_cluster_is_configured_on_each_server(clickhouse_cluster: list[ClickHouseServer]) -> None:
    tcp_port = clickhouse_cluster[0].tcp_port
    for server in clickhouse_cluster:
        rows = server.query(
            "SELECT shard_num, replica_num, host_address, port FROM system.clusters"
            f" WHERE cluster = '{CLUSTER}' ORDER BY shard_num"
        )
        assert [row.split("\t") for row in rows.splitlines()] == [
            ["1", "1", "127.0.0.2", str(tcp_port)],
            ["2", "1", "127.0.0.3", str(tcp_port)],
        ]


def test_distributed_table_spans_both_shards(
    clickhouse_cluster: list[ClickHouseServer], clickhouse_database: MakeDatabase
) -> None:
    db = clickhouse_database(clickhouse_cluster)
    # no ON CLUSTER (it needs ZooKeeper): the same tables are created on each shard
    for server in clickhouse_cluster:
        server.query(
            f"CREATE TABLE {db}.readings_local (id UInt32, ts DateTime('UTC'), value Float64)"
            " ENGINE = MergeTree ORDER BY (id, ts)"
        )
        server.query(
            f"CREATE TABLE {db}.readings AS {db}.readings_local"
            f" ENGINE = Distributed({CLUSTER}, {db}, readings_local, id)"
        )
    first, second = clickhouse_cluster
    # synchronous: the INSERT returns once every shard holds its rows (else a background
    # sender ships them later, and a read right after may miss some)
    first.query(
        f"INSERT INTO {db}.readings"
        " SELECT toUInt32(number), toDateTime(1700000000 + number * 60, 'UTC'), number / 4"
        " FROM system.numbers LIMIT 100",
        {"insert_distributed_sync": 1},
    )
    for server in clickhouse_cluster:
        assert server.query(f"SELECT count(), sum(id) FROM {db}.readings").split() == [
            "100",
            "4950",
        ]
    # the sharding key id (weights 1 and 1) sends even ids to the first shard, odd to the second
    local = "SELECT count(), groupUniqArray(id % 2) FROM {db}.readings_local"
    assert first.query(local.format(db=db)).split() == ["50", "[0]"]
    assert second.query(local.format(db=db)).split() == ["50", "[1]"]

"""Many processes on one ClickHouse store, on the two-shard cluster: `meterhub serve`
processes answer over the same store at once, see each other's writes and keys (a
revocation within the key ring's refresh), and `meterhub run --source` processes split a
sync between them with nothing lost or doubled. A DuckDB file still belongs to one process.

Every process is real (``python -m meterhub.cli``) on loopback, on ports picked free.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pyarrow as pa
import pytest

import meterhub
from meterhub.api.security import SHARED_MAX_AGE
from tests.clickhouse_fixtures import MakeDatabase
from tests.clickhouse_servers import CLUSTER, ClickHouseServer
from tests.test_cli import demo_toml, emulators

MEMBERS = [sys.executable, "-m", "meterhub.cli"]


def cluster_url(cluster: list[ClickHouseServer], make: MakeDatabase) -> str:
    """A new store on the two-shard cluster (reached through its first shard)."""
    first = cluster[0]
    return f"clickhouse://{first.host}:{first.http_port}/{make(cluster)}?cluster={CLUSTER}"


def meterhub_cli(*args: str, cwd: Path, env: dict[str, str] | None = None
                 ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*MEMBERS, *args], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=120, check=False)


def create_key(url: str, name: str, scope: str, cwd: Path) -> str:
    """`meterhub keys create` as a user runs it: the key, from its stdout."""
    made = meterhub_cli("keys", "create", "--name", name, "--scope", scope, "--store", url,
                        cwd=cwd)
    assert made.returncode == 0, made.stderr
    return made.stdout.strip().splitlines()[-1]


@contextlib.contextmanager
def servers(url: str, count: int, cwd: Path) -> Iterator[list[str]]:
    """``count`` `meterhub serve --port 0` processes over ``url``, started together; the
    base URL of each until the block ends."""
    processes = [subprocess.Popen([*MEMBERS, "serve", "--store", url, "--port", "0"],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                  cwd=cwd) for _ in range(count)]
    try:
        bases = []
        for process in processes:
            assert process.stdout is not None
            line = process.stdout.readline()
            assert "meterhub API on http://127.0.0.1:" in line, line + (
                process.stderr.read() if process.stderr else "")
            bases.append(line.split()[3].removesuffix("/api/v1"))
        yield bases
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            _, errors = process.communicate(timeout=30)
            assert "Traceback" not in errors, errors


def test_two_servers_over_one_clickhouse_store_share_readings_and_keys(
        tmp_path: Path, clickhouse_cluster: list[ClickHouseServer],
        clickhouse_database: MakeDatabase) -> None:
    url = cluster_url(clickhouse_cluster, clickhouse_database)
    admin = create_key(url, "ops", "admin", tmp_path)
    with servers(url, 2, tmp_path) as (one, two), \
            httpx.Client(headers={"X-API-Key": admin}, timeout=30) as client:
        # both answer at once: requests to the two interleave, none refused
        def ask(number: int) -> int:
            base = (one, two)[number % 2]
            path = ("/api/v1/health", "/api/v1/devices", "/api/v1/keys")[number % 3]
            return client.get(base + path).status_code

        with ThreadPoolExecutor(8) as pool:
            assert set(pool.map(ask, range(48))) == {200}

        # a reading pushed through one is read back through the other
        batch = [{"device": "shared-1", "channel": "power", "ts": f"2026-01-0{day}T00:00:00Z",
                  "value": 1.5 * day, "unit": "kW"} for day in (1, 2, 3)]
        pushed = client.post(f"{one}/api/v1/readings", json=batch)
        assert pushed.status_code == 200, pushed.text
        assert pushed.json()["written"] == 3
        back = client.get(f"{two}/api/v1/readings", params={"device": "shared-1"})
        assert back.status_code == 200, back.text
        assert [r["value"] for r in back.json()["data"]] == [1.5, 3.0, 4.5]
        # and a rewrite through the other replaces it: still one reading per time
        again = client.post(f"{two}/api/v1/readings", json=[{**batch[1], "value": 30.0},
                                                             batch[2]])
        assert again.status_code == 200, again.text
        seen = client.get(f"{one}/api/v1/readings", params={"device": "shared-1"}).json()
        assert [r["value"] for r in seen["data"]] == [1.5, 30.0, 4.5]

        # a key made with the CLI while both run works on both at once
        reader = create_key(url, "reader", "read", tmp_path)
        for base in (one, two):
            answer = client.get(f"{base}/api/v1/devices", headers={"X-API-Key": reader})
            assert answer.status_code == 200, (base, answer.text)
        # revoked through one: refused there at once, and by the other within its refresh
        keys = client.get(f"{one}/api/v1/keys").json()["data"]
        key_id = next(k["key_id"] for k in keys if k["name"] == "reader")
        assert client.delete(f"{one}/api/v1/keys/{key_id}").status_code == 204
        revoked = time.monotonic()
        assert client.get(f"{one}/api/v1/devices",
                          headers={"X-API-Key": reader}).status_code == 401
        while (status := client.get(f"{two}/api/v1/devices",
                                    headers={"X-API-Key": reader}).status_code) == 200:
            assert time.monotonic() - revoked < SHARED_MAX_AGE + 5, "never refused"
            time.sleep(0.1)
        took = time.monotonic() - revoked
        assert status == 401
        assert took < SHARED_MAX_AGE + 3, took
        # the admin key still works on both
        for base in (one, two):
            assert client.get(f"{base}/api/v1/devices").status_code == 200


def sync_rows(url: str) -> tuple[pa.Table, list[object], list[object], list[object]]:
    """What a sync leaves: readings, channels with their counts, cursors, synced devices."""
    with meterhub.open(url, create=False) as hub:
        readings = hub.readings(as_="arrow")
        channels = hub.channels(as_="arrow").select(["source", "device", "channel", "kind",
                                                     "unit", "readings"]).to_pylist()
        cursors = [(c.source, c.device, c.value) for c in hub.store.cursors()]
        synced = hub.store.sync_status().select(["source", "device"]).to_pylist()
    return readings, channels, cursors, synced


def stored_rows(cluster: list[ClickHouseServer], url: str) -> int:
    """Rows on the shards' disks, before any replacement (FINAL) is applied."""
    database = url.split("/")[-1].split("?")[0]
    return sum(int(server.query(f"SELECT count() FROM {database}.readings_local"))
               for server in cluster)


@pytest.mark.early
def test_run_processes_split_the_sources_with_nothing_lost_or_doubled(
        tmp_path: Path, clickhouse_cluster: list[ClickHouseServer],
        clickhouse_database: MakeDatabase) -> None:
    shared, reference = (cluster_url(clickhouse_cluster, clickhouse_database)
                         for _ in range(2))
    # frozen data: the reference sync and the split one see the same history; no limits:
    # both call the same emulators at once
    with emulators(("tandd", "climkit", "copper"), "--frozen", "--no-limits",
                   "--devices", "2") as started:
        urls = {vendor: url for vendor, (url, _) in started.items()}
        urls["zentra"] = "http://127.0.0.1:9"  # its source is left out below

        def config(name: str, store: str) -> Path:
            # ZENTRA's one call a minute per device would make a second round wait a minute
            text = "[[source]]".join(part for part in demo_toml(urls, store).split(
                "[[source]]") if "zentra" not in part)
            path = tmp_path / name
            path.write_text(text)
            return path

        split, whole = config("split.toml", shared), config("whole.toml", reference)
        runs = {
            sources: subprocess.Popen(
                [*MEMBERS, "run", "--config", str(split), "--rounds", "2", "--every", "1",
                 "--port", "0", *(arg for s in sources for arg in ("--source", s))],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
            for sources in (("lab", "homes"), ("site",))}
        # the same sources synced by one process into another store, meanwhile
        one = subprocess.run([*MEMBERS, "sync", "--config", str(whole)], capture_output=True,
                             text=True, timeout=180, check=False, cwd=tmp_path)
        assert one.returncode == 0, one.stdout + one.stderr
        outputs = {}
        for sources, process in runs.items():
            out, errors = process.communicate(timeout=180)
            assert process.returncode == 0, out + errors
            outputs[sources] = out
    for sources, out in outputs.items():
        rounds = [line for line in out.splitlines() if " round " in line]
        assert len(rounds) == 2, out
        for line in rounds:
            # each process synced its own sources, and only those
            named = {part.split(":")[0] for part in line.split(": ", 1)[1].split("; ")}
            assert named == set(sources), line
            assert "failed" not in line, line
    got, want = sync_rows(shared), sync_rows(reference)
    assert want[0].num_rows > 1000
    assert set(want[0].column("source").to_pylist()) == {"lab", "site", "homes"}
    assert got[0].num_rows == want[0].num_rows
    assert got[0].equals(want[0])
    assert got[1] == want[1]
    assert got[2] == want[2]
    assert got[3] == want[3]
    # not doubled on disk either: the second rounds stored no row again
    assert stored_rows(clickhouse_cluster, shared) == got[0].num_rows


def test_a_duckdb_store_still_refuses_a_second_serve(tmp_path: Path) -> None:
    """The contrast: a second `meterhub serve` over a DuckDB file the first holds exits
    with one line (tests/store/test_write.py and tests/test_cli_api.py check the same
    refusal for the library and for `keys create`)."""
    url = f"duckdb:///{tmp_path / 'held.duckdb'}"
    with servers(url, 1, tmp_path):
        second = meterhub_cli("serve", "--store", url, "--port", "0", cwd=tmp_path)
    assert second.returncode == 1
    lines = second.stderr.strip().splitlines()
    assert len(lines) == 1, second.stderr
    assert "in use by another process" in lines[0]
    assert second.stdout == ""

"""The `meterhub` command, run through typer's runner and once as a real process."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import httpx
import pandas as pd
import pytest
from typer.testing import CliRunner

import meterhub
from meterhub.cli import app

runner = CliRunner()
COMMANDS = ["import", "export", "query", "devices", "gaps", "compact", "sample", "emulate",
            "sync", "status", "demo", "run", "serve", "keys", "p1"]


def write_csv(path: Path, bad_line: str | None = None) -> Path:
    lines = ["device,channel,ts,value,unit,kind,seq,quality,error_code"]
    for i in range(6):
        lines.append(f"m1,energy,2024-10-27T{i:02d}:00:00Z,{100 + i * 1.5},kWh,counter,{i + 1},"
                     "ok,")
    lines.append("ws,temp,2024-10-27T00:00:00+02:00,,°C,instant,,sensor_error,E42")
    lines.append("ws,temp,2024-10-27T00:10:00+02:00,12.5,°C,instant,,,")
    if bad_line is not None:
        lines.insert(4, bad_line)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command: str) -> None:
    result = runner.invoke(app, [command, "--help"])
    assert result.exit_code == 0
    assert "Usage" in result.output


def test_import_with_one_bad_row_names_it_and_writes_nothing(tmp_path: Path,
                                                             store_url: str) -> None:
    good = write_csv(tmp_path / "good.csv")
    bad = write_csv(tmp_path / "bad.csv",
                    bad_line="m1,energy,2024-10-27T09:00:00Z,12,3,kWh,counter,9,ok,")
    result = runner.invoke(app, ["import", str(good), str(bad), "--store", store_url])
    assert result.exit_code == 1
    assert "bad.csv: row 4 (line 5)" in result.output
    with meterhub.open(store_url) as hub:
        assert hub.count() == 0  # not even the good file: every file is checked first

    bad2 = write_csv(tmp_path / "bad2.csv",
                     bad_line="m1,energy,2024-10-27T09:00:00Z,twelve,kWh,counter,9,ok,")
    result = runner.invoke(app, ["import", str(bad2), "--store", store_url])
    assert result.exit_code == 1
    assert "bad2.csv: row 4 (line 5): value 'twelve' is not a number" in result.output


def test_import_export_round_trip_is_identical(tmp_path: Path, store_url: str) -> None:
    source = write_csv(tmp_path / "in.csv")
    assert runner.invoke(app, ["import", str(source), "--store", store_url]).exit_code == 0
    with meterhub.open(store_url) as hub:
        original = hub.readings()
    assert len(original) == 8
    assert original.loc[original["quality"] == "sensor_error", "error_code"].tolist() == ["E42"]
    for fmt in ("csv", "json", "parquet"):
        exported = tmp_path / f"out.{fmt}"
        result = runner.invoke(app, ["export", "--store", store_url, "-o", str(exported)])
        assert result.exit_code == 0, result.output
        other = f"duckdb:///{tmp_path / f'copy-{fmt}.duckdb'}"
        result = runner.invoke(app, ["import", str(exported), "--store", other])
        assert result.exit_code == 0, result.output
        assert "8 new, 0 replaced, 0 unchanged (8 rows read)" in result.output
        again = runner.invoke(app, ["import", str(exported), "--store", other])
        assert "0 new, 0 replaced, 8 unchanged (8 rows read)" in again.output
        with meterhub.open(other) as hub:
            pd.testing.assert_frame_equal(hub.readings(), original)
            kinds = dict(zip(hub.channels()["channel"], hub.channels()["kind"], strict=True))
        # the exported file carries each channel's kind: the counter stays a counter
        assert kinds == {"energy": "counter", "temp": "instant"}


def test_export_json_is_an_array_with_iso_times(tmp_path: Path, store_url: str) -> None:
    runner.invoke(app, ["import", str(write_csv(tmp_path / "in.csv")), "--store", store_url])
    result = runner.invoke(app, ["export", "--store", store_url, "--format", "json",
                                 "--device", "m1", "--unit", "MJ"])
    assert result.exit_code == 0
    rows = json.loads(result.stdout)
    assert len(rows) == 6
    assert rows[0]["ts"] == "2024-10-27T00:00:00Z"
    assert rows[0]["value"] == pytest.approx(360.0)
    assert rows[0]["unit"] == "MJ"


def test_query_readings_and_aggregates(tmp_path: Path, store_url: str) -> None:
    runner.invoke(app, ["import", str(write_csv(tmp_path / "in.csv")), "--store", store_url])
    result = runner.invoke(app, ["query", "--store", store_url, "--device", "m1",
                                 "--limit", "3", "--format", "table"])
    assert result.exit_code == 0
    assert "6 readings, first 3 shown" in result.output
    result = runner.invoke(app, ["query", "--store", store_url, "--device", "m1", "--every",
                                 "1d", "--tz", "Europe/Amsterdam", "--format", "table"])
    assert result.exit_code == 0, result.output
    assert "7.5" in result.output  # 5 rises of 1.5 kWh on the local day
    result = runner.invoke(app, ["query", "--store", store_url, "--every", "fortnight"])
    assert result.exit_code == 1
    assert "unknown bucket size 'fortnight'" in result.output


def test_devices_lists_channels(tmp_path: Path, store_url: str) -> None:
    runner.invoke(app, ["import", str(write_csv(tmp_path / "in.csv")), "--store", store_url])
    result = runner.invoke(app, ["devices", "--store", store_url, "--format", "table"])
    assert result.exit_code == 0
    assert "2 devices, 2 channels" in result.output
    assert "energy" in result.output


def test_unknown_device_is_one_line_error(hub: meterhub.Hub, store_url: str) -> None:
    hub.close()  # the store exists, and is not held open by this process
    result = runner.invoke(app, ["query", "--store", store_url, "--device", "nope"])
    assert result.exit_code == 1
    assert "no channel matches device nope" in result.output


def test_sample_runs_as_a_real_process(tmp_path: Path) -> None:
    url = f"duckdb:///{tmp_path / 'sample.duckdb'}"
    done = subprocess.run([sys.executable, "-m", "meterhub.cli", "sample", "--store", url],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert "Daily consumption" in done.stdout
    with meterhub.open(url) as hub:
        days = hub.aggregate(device="ws-demo-1", channel="precipitation", every="1d",
                             tz="Europe/Amsterdam")
        assert ((days["bucket_end"] - days["bucket"]).dt.total_seconds() / 3600).tolist() \
            == [24, 24, 25, 24]


@contextlib.contextmanager
def emulator(vendor: str, *extra: str) -> Iterator[tuple[str, list[str]]]:
    """A real `meterhub emulate` process: its base URL and the lines it printed after."""
    with emulators([vendor], *extra) as started:
        yield started[vendor]


VENDORS = ("zentra", "tandd", "climkit", "copper")


@contextlib.contextmanager
def emulators(vendors: Sequence[str] = VENDORS, *extra: str
              ) -> Iterator[dict[str, tuple[str, list[str]]]]:
    """Real `meterhub emulate` processes, started together (each takes a second to
    import): per vendor, its base URL and the lines it printed after."""
    processes = {vendor: subprocess.Popen(
        [sys.executable, "-m", "meterhub.cli", "emulate", vendor, "--port", "0", "--days",
         "3", *extra], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        for vendor in vendors}
    try:
        started = {}
        for vendor, process in processes.items():
            assert process.stdout is not None
            first = process.stdout.readline()
            assert f"{vendor} emulator listening on http://127.0.0.1:" in first, first
            started[vendor] = (first.split()[-1], [process.stdout.readline() for _ in range(2)])
        yield started
    finally:
        for process in processes.values():
            process.terminate()
        for process in processes.values():
            process.communicate(timeout=30)


def test_emulate_zentra_answers_the_seed_example_over_http() -> None:
    with emulator("zentra") as (base, lines):
        token = lines[0].split()[1]
        devices = lines[1].split(":", 1)[1].strip().split(", ")
        # the seed's get_readings_response(): Token header, df output, newest first
        response = httpx.get(f"{base}/api/v4/get_readings/",
                             headers={"Authorization": f"Token {token}"},
                             params={"output_format": "df", "per_page": 1, "page_num": 1,
                                     "sort_by": "desc", "device_sn": devices[0]},
                             timeout=30)
    assert response.status_code == 200
    frame = pd.DataFrame(**json.loads(response.json()["data"]))
    assert len(frame) >= 8


def test_emulate_tandd_answers_the_seed_ex1_request_over_http() -> None:
    with emulator("tandd") as (base, lines):
        words = lines[0].split()
        key, login, password = words[1], words[3], words[5]
        serial = lines[1].split(":", 1)[1].strip().split(", ")[0]
        # the seed's EX1: POST with the override header, credentials in the body
        response = httpx.post(f"{base}/v1/devices/data",
                              headers={"X-HTTP-Method-Override": "GET",
                                       "Content-Type": "application/json"},
                              json={"api-key": key, "login-id": login,
                                    "login-pass": password, "remote-serial": serial},
                              timeout=30)
    assert response.status_code == 200
    assert response.headers["X-RateLimit-Limit"] == "20"
    assert len(response.json()["data"]) == 3 * 144 + 1


def test_config_check_names_the_bad_key(tmp_path: Path) -> None:
    path = tmp_path / "meterhub.toml"
    path.write_text('[[source]]\nname = "tahmo"\ntype = "zentra"\n'
                    'base_url = "https://tahmo.zentracloud.com"\ntoken = "${NO_SUCH_VAR}"\n')
    result = runner.invoke(app, ["config", "check", "--config", str(path)])
    assert result.exit_code == 1
    assert "source[tahmo].token: environment variable NO_SUCH_VAR is not set" in result.output
    path.write_text('[[source]]\nname = "lab"\ntype = "tandd"\napi_key = "k"\n'
                    'login_id = "tbzz9999"\n')
    result = runner.invoke(app, ["config", "check", "--config", str(path)])
    assert "source[lab].login_pass: is required" in result.output


def demo_toml(urls: dict[str, str], store: Path | str, climkit_meter: bool = True) -> str:
    """A meterhub.toml for the emulators at ``urls``; ``store`` is a DuckDB file's path, or
    (a str) any store URL."""
    url = store if isinstance(store, str) else f"duckdb:///{store}"
    return f"""
[store]
url = "{url}"

[[source]]
name = "tahmo"
type = "zentra"
base_url = "{urls['zentra']}"
token = "${{ZENTRA_TOKEN}}"
devices = ["z6-10001", "z6-10002"]

[[source]]
name = "lab"
type = "tandd"
base_url = "{urls['tandd']}"
api_key = "73pfobnche8d1p6laqnemsbnpkght3bjv047oid6p2sg3"
login_id = "tbzz9999"
login_pass = "ppaasswwoorrdd"

[[source]]
name = "site"
type = "climkit"
base_url = "{urls['climkit']}/api/v1"
username = "climkit-dev"
password = "emulator-pass"
devices = ["6a0000000000000000000000"{', "7b0000000000000000000000"' if not climkit_meter
                                      else ''}]

[[source]]
name = "homes"
type = "copper"
base_url = "{urls['copper']}"
auth_url = "{urls['copper']}"
client_id = "copper-enterprise-client"
client_secret = "copper-emulator-secret"
enterprise_id = "ent-7f3a"
"""


@pytest.mark.early
def test_sync_and_status_against_all_four_emulators_over_http(tmp_path: Path) -> None:
    with emulators() as started:
        urls = {vendor: url for vendor, (url, _) in started.items()}
        path = tmp_path / "meterhub.toml"
        path.write_text(demo_toml(urls, tmp_path / "hub.duckdb"))
        env = {**os.environ, "ZENTRA_TOKEN": "emulator-token", "COLUMNS": "200"}
        check = subprocess.run([sys.executable, "-m", "meterhub.cli", "config", "check",
                                "--config", str(path)], capture_output=True, text=True,
                               env=env, timeout=60, check=False)
        assert check.returncode == 0, check.stderr
        assert "4 source(s)" in check.stdout
        assert "emulator-token" not in check.stdout
        done = subprocess.run([sys.executable, "-m", "meterhub.cli", "sync", "--config",
                               str(path)], capture_output=True, text=True, env=env,
                              timeout=120, check=False)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "Sync summary" in done.stdout
        status = subprocess.run([sys.executable, "-m", "meterhub.cli", "status", "--config",
                                 str(path)], capture_output=True, text=True, env=env,
                                timeout=60, check=False)
        assert status.returncode == 0, status.stderr
        # without ZENTRA, whose one call a minute per device the sync above just spent
        no_zentra = tmp_path / "later.toml"
        no_zentra.write_text("[[source]]".join(
            part for part in path.read_text().split("[[source]]") if "zentra" not in part))
        key = subprocess.run([sys.executable, "-m", "meterhub.cli", "keys", "create", "--name",
                              "ops", "--config", str(no_zentra)], capture_output=True,
                             text=True, env=env, timeout=60, check=True).stdout.strip()
        # `run` serves the API and syncs on a schedule in one process
        scheduled = subprocess.Popen([sys.executable, "-m", "meterhub.cli", "run", "--config",
                                      str(no_zentra), "--rounds", "2", "--every", "3",
                                      "--port", "0"], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, env=env)
        try:
            assert scheduled.stdout is not None
            lines = [scheduled.stdout.readline() for _ in range(2)]
            assert "meterhub API on http://127.0.0.1:" in lines[1], lines
            base = lines[1].split()[3]
            # and the dashboard's address: the same server's root
            assert f"dashboard at {base.removesuffix('/api/v1')}/)" in lines[1], lines
            round_one = scheduled.stdout.readline()
            assert " round 1: lab: " in round_one
            answer = httpx.get(f"{base}/sources", headers={"X-API-Key": key}, timeout=30)
            health = {s["name"]: s["health"] for s in answer.json()["data"]}
            assert health == {"lab": "ok", "site": "ok", "homes": "ok", "tahmo": "ok"}
            rest, errors = scheduled.communicate(timeout=120)
        finally:
            scheduled.kill()
        assert scheduled.returncode == 0, errors
        assert " round 2: lab: " in rest
        assert "failed" not in round_one + rest
    with meterhub.open(f"duckdb:///{tmp_path / 'hub.duckdb'}") as hub:
        sources = set(hub.channels()["source"])
        assert sources == {"tahmo", "lab", "site", "homes"}
        assert hub.count(source="tahmo", channel="air_temperature") >= 2 * 3 * 288 - 2
        assert len(hub.store.sync_status()) == 2 + 3 + 1 + 3
    assert "z6-10001" in status.stdout


@pytest.mark.early
def test_demo_syncs_every_vendor_and_finishes_quickly(tmp_path: Path) -> None:
    import time

    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "meterhub.cli", "demo", "--devices", "2"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          check=False, env={**os.environ, "COLUMNS": "200"})
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert time.monotonic() - started < 120
    assert "Daily air temperature" in done.stdout
    assert (tmp_path / "meterhub-demo.toml").is_file()
    assert (tmp_path / "meterhub-demo-export.csv").stat().st_size > 0
    with meterhub.open(f"duckdb:///{tmp_path / 'meterhub-demo.duckdb'}") as hub:
        assert set(hub.channels()["source"]) == {"tahmo", "lab", "site", "homes"}
        assert not any(hub.store.sync_status().column("last_error_class").to_pylist())
    # the demo names the flag that finds its store again, and that flag works
    assert "meterhub devices --config meterhub-demo.toml" in done.stdout
    assert "meterhub status --config meterhub-demo.toml" in done.stdout
    for command in ("devices", "status"):
        shown = subprocess.run([sys.executable, "-m", "meterhub.cli", command, "--config",
                                "meterhub-demo.toml"], cwd=tmp_path, capture_output=True,
                               text=True, timeout=60, check=False)
        assert shown.returncode == 0, shown.stderr
        assert "z6-10001" in shown.stdout


def test_sync_dry_run_prints_a_plan_without_calling(tmp_path: Path) -> None:
    # every base URL is a closed port: a single vendor call would fail the command
    urls = {vendor: "http://127.0.0.1:9" for vendor in ("zentra", "tandd", "climkit",
                                                         "copper")}
    path = tmp_path / "meterhub.toml"
    path.write_text(demo_toml(urls, tmp_path / "hub.duckdb").replace(
        '[[source]]\nname = "tahmo"', '[[source]]\nname = "tahmo"\nstart = "2026-01-01"', 1))
    result = runner.invoke(app, ["sync", "--dry-run", "--config", str(path)],
                           env={"ZENTRA_TOKEN": "t", "COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "Sync plan (no vendor was called)" in result.output
    assert "devices unknown until the first sync" in result.output


def test_a_failing_source_makes_sync_exit_non_zero_and_status_records_it(
        tmp_path: Path) -> None:
    with emulator("tandd") as (base, _):
        path = tmp_path / "meterhub.toml"
        path.write_text(f"""
[store]
url = "duckdb:///{tmp_path / 'hub.duckdb'}"

[[source]]
name = "lab"
type = "tandd"
base_url = "{base}"
api_key = "73pfobnche8d1p6laqnemsbnpkght3bjv047oid6p2sg3"
login_id = "tbzz9999"
login_pass = "not-the-password"
""")
        result = runner.invoke(app, ["sync", "--config", str(path)], env={"COLUMNS": "200"})
    assert result.exit_code == 1
    assert "source lab" in result.output
    assert "login_pass" in result.output
    assert "not-the-password" not in result.output
    status = runner.invoke(app, ["status", "--config", str(path)], env={"COLUMNS": "250"})
    assert status.exit_code == 0
    assert "AuthError" in status.output


def test_config_check_online_tries_each_sources_credentials(tmp_path: Path) -> None:
    with emulator("tandd") as (base, _):
        path = tmp_path / "meterhub.toml"
        source = ('[[source]]\nname = "{name}"\ntype = "tandd"\nbase_url = "' + base + '"\n'
                  'api_key = "73pfobnche8d1p6laqnemsbnpkght3bjv047oid6p2sg3"\n'
                  'login_id = "tbzz9999"\nlogin_pass = "{password}"\n')
        path.write_text(source.format(name="good", password="ppaasswwoorrdd")
                        + source.format(name="bad", password="not-the-password"))
        offline = runner.invoke(app, ["config", "check", "--config", str(path)])
        assert offline.exit_code == 0  # the file itself is fine
        result = runner.invoke(app, ["config", "check", "--online", "--config", str(path)],
                               env={"COLUMNS": "200"})
    assert result.exit_code == 1
    assert "source good (tandd): credentials accepted" in result.output
    assert "source bad (tandd): " in result.output
    assert "source[bad].login_pass" in result.output
    assert "not-the-password" not in result.output


def test_channels_set_kind_changes_how_a_channel_aggregates(tmp_path: Path,
                                                            store_url: str) -> None:
    rows = "".join(f"m,energy,2024-10-27T{h:02d}:30:00Z,{v},kWh,{{kind}}\n"
                   for h, v in ((0, 10.0), (1, 11.0), (2, 13.0)))
    header = "device,channel,ts,value,unit,kind\n"
    (tmp_path / "instant.csv").write_text(header + rows.format(kind="instant"))
    (tmp_path / "counter.csv").write_text(header + rows.format(kind="counter"))
    assert runner.invoke(app, ["import", str(tmp_path / "instant.csv"), "--store",
                               store_url]).exit_code == 0
    refused = runner.invoke(app, ["import", str(tmp_path / "counter.csv"), "--store",
                                  store_url], env={"COLUMNS": "200"})
    assert refused.exit_code == 1
    assert "meterhub channels set-kind m energy counter" in refused.output
    day = ["query", "--store", store_url, "--every", "1d", "--format", "json"]
    # shown to the kWh resolution, 0.001
    assert json.loads(runner.invoke(app, day).stdout)[0]["mean"] == 11.333
    changed = runner.invoke(app, ["channels", "set-kind", "m", "energy", "counter",
                                  "--store", store_url])
    assert changed.exit_code == 0, changed.output
    assert "m/energy: kind instant -> counter" in changed.output
    # 10 -> 11 -> 13 within the day: 3 kWh
    assert json.loads(runner.invoke(app, day).stdout)[0]["consumption"] == pytest.approx(3.0)
    unknown = runner.invoke(app, ["channels", "set-kind", "m", "nope", "counter",
                                  "--store", store_url])
    assert unknown.exit_code == 1


def test_the_address_is_printed_once_the_socket_listens() -> None:
    """`emulate`, `serve` and `run` print their address before the server loop starts: a
    client that connects at once must wait in the backlog, not be refused."""
    import socket

    from meterhub.cli.common import listen

    sock, port = listen("127.0.0.1", 0)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass  # accepted into the backlog: nothing serves yet, nothing refused
    finally:
        sock.close()

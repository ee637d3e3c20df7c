"""The command line over a ClickHouse store: `meterhub demo --store clickhouse://...` tells
the story the DuckDB demo tells, and a store password interpolated from the environment
never shows, in output, error or log, whether it is right or wrong."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import httpx
import pandas as pd
import pytest

import meterhub
from meterhub.store import shown_url
from tests.clickhouse_fixtures import MakeDatabase
from tests.clickhouse_servers import SECRET_PASSWORD, SECRET_USER, ClickHouseServer
from tests.test_cli import emulator

MEMBERS = [sys.executable, "-m", "meterhub.cli"]
KEY = ["device", "channel", "ts"]


def demo_story(output: str) -> dict[str, object]:
    """What a demo's output says: the sources synced, the devices of each, the station
    and logger it shows, and its daily temperatures but the first and last (partial)
    days, whose values depend on the moment the demo ran."""
    summary = re.findall(r"│ (\w+) +│ (\w+) +│ +(\d+) │ +(\d+) │ +(\d+) │", output)
    status = output.split("Sync status", 1)[1].split("Daily air temperature", 1)[0]
    devices = re.findall(r"^ +(tahmo|lab|site|homes) +(\S+) ", status, re.MULTILINE)
    days = re.findall(r"^ +z6-\S+ +air_temperature +instant +(\S+ \S+) +(.+?) +°C",
                      output, re.MULTILINE)
    station = re.search(r"Daily air temperature of TAHMO station (\S+),", output)
    logger = re.search(r"Exported [\d,]+ readings of T&D logger (\S+) to ", output)
    assert station is not None, output
    assert logger is not None, output
    return {"summary": summary, "devices": devices, "station": station.group(1),
            "logger": logger.group(1), "days": days[1:-1]}


@pytest.mark.early
def test_demo_over_clickhouse_tells_the_story_of_the_duckdb_demo(
        tmp_path: Path, clickhouse_single: ClickHouseServer,
        clickhouse_database: MakeDatabase) -> None:
    url = (f"clickhouse://{clickhouse_single.host}:{clickhouse_single.http_port}/"
           f"{clickhouse_database(clickhouse_single)}")
    folders = {"duckdb": tmp_path / "duckdb", "clickhouse": tmp_path / "clickhouse"}
    for folder in folders.values():
        folder.mkdir()
    env = {**os.environ, "COLUMNS": "200"}
    # together, so that the two demos' emulators serve (nearly) the same week; the DuckDB
    # one exactly as `make demo` runs it, with no --store
    runs = {name: subprocess.Popen(
        [*MEMBERS, "demo", "--devices", "2", *(["--store", url] if name == "clickhouse"
                                               else [])],
        cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        for name, folder in folders.items()}
    outputs = {}
    for name, process in runs.items():
        out, errors = process.communicate(timeout=180)
        assert process.returncode == 0, out[-3000:] + errors[-3000:]
        outputs[name] = out
    stories = {name: demo_story(out) for name, out in outputs.items()}
    assert stories["clickhouse"] == stories["duckdb"]
    summary = stories["duckdb"]["summary"]
    assert isinstance(summary, list)
    assert {row[0] for row in summary} == {"tahmo", "lab", "site", "homes"}

    urls = {"duckdb": f"duckdb:///{folders['duckdb'] / 'meterhub-demo.duckdb'}",
            "clickhouse": url}
    readings, exported = {}, {}
    for name, store in urls.items():
        with meterhub.open(store, create=False) as hub:
            readings[name] = hub.readings()
            assert not any(hub.store.sync_status().column("last_error_class").to_pylist())
            logger = str(stories[name]["logger"])
            exported[name] = hub.count(device=logger)
        # the export holds the logger's readings, as many as the demo said
        said = re.search(r"Exported ([\d,]+) readings", outputs[name])
        assert said is not None
        assert int(said.group(1).replace(",", "")) == exported[name]
        rows = (folders[name] / "meterhub-demo-export.csv").read_text().count("\n") - 1
        assert rows == exported[name]
    # the same readings: all that both demos cover are in both, equal; the rest lie
    # outside the other's first and last reading of its channel (the moments differed)
    duck, click = readings["duckdb"], readings["clickhouse"]
    merged = duck.merge(click, on=KEY, how="outer", suffixes=("_d", "_c"), indicator=True)
    both = merged[merged["_merge"] == "both"]
    for name in ("value", "quality", "seq", "error_code", "unit", "source"):
        pd.testing.assert_series_equal(both[f"{name}_d"], both[f"{name}_c"],
                                       check_names=False, check_dtype=False)
    assert len(both) >= 0.99 * max(len(duck), len(click)), (len(both), len(duck), len(click))
    for side, other in (("left_only", click), ("right_only", duck)):
        spans = other.groupby(["device", "channel"])["ts"].agg(["min", "max"])
        for row in merged[merged["_merge"] == side].itertuples():
            low, high = spans.loc[(row.device, row.channel)]
            assert row.ts < low or row.ts > high, row

    # the commands the demo ends with work on its ClickHouse store
    for command in ("devices", "status"):
        shown = subprocess.run([*MEMBERS, command, "--config", "meterhub-demo.toml"],
                               cwd=folders["clickhouse"], capture_output=True, text=True,
                               timeout=60, check=False, env=env)
        assert shown.returncode == 0, shown.stderr
        assert "z6-10001" in shown.stdout


# -- a password from the environment -----------------------------------------------------

WRONG_PASSWORD = "Wr0ngPa55/Qz9x@Lm7v#Tk3w"


def pieces(password: str) -> list[str]:
    """The password, encoded and not, and each run of letters and digits in it: no part
    of it may show."""
    return [password, quote(password, safe=""), *re.findall(r"[A-Za-z0-9]+", password)]


def assert_hidden(text: str, password: str) -> None:
    for piece in pieces(password):
        assert piece not in text, f"{piece!r} shows in:\n{text}"


def secret_config(folder: Path, server: ClickHouseServer, database: str,
                  tandd: str | None = None) -> Path:
    """A meterhub.toml whose store URL takes its password from ${CH_PASSWORD}."""
    path = folder / "meterhub.toml"
    text = (f'[store]\nurl = "clickhouse://{SECRET_USER}:${{CH_PASSWORD}}@{server.host}:'
            f'{server.http_port}/{database}"\n')
    if tandd is not None:
        text += (f'\n[[source]]\nname = "lab"\ntype = "tandd"\nbase_url = "{tandd}"\n'
                 'api_key = "73pfobnche8d1p6laqnemsbnpkght3bjv047oid6p2sg3"\n'
                 'login_id = "tbzz9999"\nlogin_pass = "ppaasswwoorrdd"\n')
    path.write_text(text)
    return path


def with_password(password: str) -> dict[str, str]:
    return {**os.environ, "CH_PASSWORD": password, "COLUMNS": "200"}


def test_a_right_password_from_the_environment_works_and_never_shows(
        tmp_path: Path, clickhouse_single: ClickHouseServer,
        clickhouse_database: MakeDatabase) -> None:
    database = clickhouse_database(clickhouse_single)
    # a URL takes the password percent-encoded ('/', '@' and '#' in it)
    env = with_password(quote(SECRET_PASSWORD, safe=""))
    shown = f"clickhouse://{SECRET_USER}:***@"
    said: list[str] = []

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([*MEMBERS, *args], cwd=tmp_path, capture_output=True,
                              text=True, env=env, timeout=120, check=False)
        said.append(done.stdout + done.stderr)
        assert done.returncode == 0, done.stdout + done.stderr
        return done

    with emulator("tandd") as (tandd, _):
        config = str(secret_config(tmp_path, clickhouse_single, database, tandd))
        assert shown in run("config", "check", "--config", config).stdout
        run("sync", "--config", config)
        assert "52120001" in run("status", "--config", config).stdout
        key = run("keys", "create", "--name", "ops", "--scope", "admin", "--config",
                  config).stdout.strip().splitlines()[-1]
        # the server's first line, its requests and its log; `run` says where it syncs
        for command in (["serve"], ["run"]):
            process = subprocess.Popen([*MEMBERS, *command, "--config", config, "--port",
                                        "0"], cwd=tmp_path, stdout=subprocess.PIPE,
                                       stderr=subprocess.PIPE, text=True, env=env)
            try:
                assert process.stdout is not None
                lines = [process.stdout.readline()
                         for _ in range(1 if command == ["serve"] else 2)]
                assert shown in lines[0], lines
                assert f"over {shown}" in lines[-1], lines
                base = lines[-1].split()[3]
                with httpx.Client(headers={"X-API-Key": key}, timeout=30) as client:
                    assert client.get(f"{base}/health").status_code == 200
                    assert client.get(f"{base}/devices").status_code == 200
                    assert client.get(f"{base}/readings",
                                      params={"device": "nope"}).status_code == 404
                process.terminate()
                rest, log = process.communicate(timeout=120)
            finally:
                process.kill()
            said.append("".join(lines) + rest + log)
    assert len(said) == 6
    for text in said:
        assert_hidden(text, SECRET_PASSWORD)


def test_a_wrong_password_from_the_environment_is_one_line_that_never_shows_it(
        tmp_path: Path, clickhouse_single: ClickHouseServer,
        clickhouse_database: MakeDatabase) -> None:
    config = str(secret_config(tmp_path, clickhouse_single,
                               clickhouse_database(clickhouse_single)))
    # a command that reads, each that writes (their store may be created), and `run`,
    # which says where it syncs before it opens the store
    commands = [["status"], ["keys", "create", "--name", "x"], ["serve", "--port", "0"],
                ["sync"], ["run", "--rounds", "1", "--port", "0"]]
    redacted = f"clickhouse://{SECRET_USER}:***@127.0.0.1:"
    # percent-encoded as it should be: the configuration is fine, the server refuses it
    env = with_password(quote(WRONG_PASSWORD, safe=""))
    checked = meterhub_run(["config", "check", "--config", config], tmp_path, env)
    assert checked.returncode == 0, checked.stderr
    assert f"store {redacted}" in checked.stdout
    assert_hidden(checked.stdout + checked.stderr, WRONG_PASSWORD)
    assert_one_line(commands, config, tmp_path, env, f"Wrong password for user {SECRET_USER}")
    # as it was typed: the URL cannot be read ('/' and '@' in the password end its user
    # part early), which `config check` finds too
    env = with_password(WRONG_PASSWORD)
    assert_one_line([["config", "check"], *commands[:2]], config, tmp_path, env,
                    "store.url: the ClickHouse URL has an '@' after its host: percent-encode")


def meterhub_run(args: list[str], cwd: Path, env: dict[str, str]
                 ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*MEMBERS, *args], cwd=cwd, capture_output=True, text=True,
                          env=env, timeout=60, check=False)


def assert_one_line(commands: list[list[str]], config: str, cwd: Path, env: dict[str, str],
                    reason: str) -> None:
    """Each command (run at once) fails with one line on stderr that gives ``reason``
    and shows no part of the wrong password, on stderr or stdout."""
    processes = [subprocess.Popen([*MEMBERS, *command, "--config", config], cwd=cwd,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                  env=env) for command in commands]
    for command, process in zip(commands, processes, strict=True):
        out, errors = process.communicate(timeout=120)
        assert process.returncode == 1, (command, out, errors)
        lines = errors.strip().splitlines()
        assert len(lines) == 1, (command, errors)
        assert lines[0].startswith("error: "), (command, errors)
        assert reason in lines[0], (command, errors)
        assert_hidden(out + errors, WRONG_PASSWORD)
        assert out == "" or out.startswith("syncing 0 source(s) every 900 s into "
                                           f"clickhouse://{SECRET_USER}:***@"), out


@pytest.mark.parametrize(("url", "shown"), [
    ("clickhouse://u:pa55word@h:8123/db", "clickhouse://u:***@h:8123/db"),
    # unencoded, as an interpolated password may be: all of it hidden still
    ("clickhouse://u:pa/55@word@h:8123/db?cluster=c", "clickhouse://u:***@h:8123/db?cluster=c"),
    ("clickhouse://u:pa?55#word@h/db", "clickhouse://u:***@h/db"),
    ("clickhouse://h:8123/db", "clickhouse://h:8123/db"),
    ("duckdb:///data/a@b/hub.duckdb", "duckdb:///data/a@b/hub.duckdb"),
])
def test_shown_urls_hide_any_password(url: str, shown: str) -> None:
    assert shown_url(url) == shown

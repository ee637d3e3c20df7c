"""The README's examples, run: the tour's commands over the sample store, the energy
commands over a meter, the Python example, and every meterhub.toml example parsed."""

from __future__ import annotations

import os
import re
import shlex
import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

import meterhub
from meterhub.cli import app
from meterhub.config import parse

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
runner = CliRunner()


def blocks(language: str, after: str) -> list[str]:
    """The code blocks of ``language`` in the README's section headed ``after``."""
    start = README.index(f"## {after}")
    end = README.find("\n## ", start + 3)
    section = README[start:end if end > 0 else None]
    return re.findall(rf"```{language}\n(.*?)```", section, re.S)


def commands(block: str) -> list[list[str]]:
    """Each ``meterhub`` or ``export`` line of a shell block, split as a shell would."""
    return [shlex.split(line, comments=True) for line in block.splitlines()
            if line.startswith(("meterhub ", "export "))]


def run(words: list[str], env: dict[str, str]) -> None:
    assert words[0] == "meterhub", words
    result = runner.invoke(app, words[1:], env=env)
    assert result.exit_code == 0, (words, result.output)


def test_the_tour_runs_as_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    run(["meterhub", "sample"], {})
    env: dict[str, str] = {}
    (tour,) = blocks("sh", "A short tour")
    ran = 0
    for words in commands(tour):
        if words[0] == "export":
            name, value = words[1].split("=", 1)
            env[name] = value
            continue
        run(words, env)
        ran += 1
    assert ran >= 8
    assert (tmp_path / "meter.parquet").stat().st_size > 0
    assert (tmp_path / "days.csv").read_text().startswith('"device","channel"')


def test_the_energy_examples_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    store = tmp_path / "meter.duckdb"
    lines = ["device,channel,ts,value,unit,kind"]
    for hour in range(72):  # 26 to 28 October 2024, UTC hours
        ts = f"2024-10-{26 + hour // 24:02d}T{hour % 24:02d}:30:00Z"
        for register in ("electricity_delivered_1", "electricity_delivered_2",
                         "electricity_returned_1", "electricity_returned_2"):
            lines.append(f"p1,{register},{ts},{100 + hour * 0.5},kWh,counter")
    (tmp_path / "meter.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    env = {"METERHUB_STORE": f"duckdb:///{store}"}
    run(["meterhub", "import", "meter.csv", "--source", "dsmr"], env)
    examples = [words for block in blocks("sh", "Smart meters (DSMR P1)")
                for words in commands(block) if words[:2] == ["meterhub", "energy"]]
    assert len(examples) == 3
    for words in examples:
        if words == ["meterhub", "energy"]:  # today: this store holds no readings of today
            result = runner.invoke(app, words[1:], env=env)
            assert result.exit_code == 1
            assert "no readings of meter 'p1'" in result.output
            continue
        run(words, env)


def test_the_python_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    run(["meterhub", "sample"], {})
    (example,) = blocks("python", "A short tour")
    with meterhub.open("duckdb:///meterhub-sample.duckdb") as hub:
        frame = hub.readings(device="ws-demo-1")
    exec(example, {"frame": frame})  # the README's code, as written


def test_every_configuration_example_parses() -> None:
    examples = re.findall(r"```toml\n(.*?)```", README, re.S)
    assert len(examples) >= 4
    environ = {**os.environ, "ZENTRA_TOKEN": "t", "DSMR_READER_KEY": "k",
               "CLICKHOUSE_PASSWORD": "p", "MQTT_PASSWORD": "m"}
    for text in examples:
        data = tomllib.loads(text)
        parse(data, environ=environ)


#: README commands that serve until stopped or wait on a vendor's limit, and the test that
#: runs each (so that no example of the README goes untried)
ELSEWHERE = {
    "meterhub sync": "tests/test_cli.py::test_sync_and_status_against_all_four_emulators_over_"
                     "http",
    # ZENTRA allows one call a minute per device: a re-read right after a sync waits for it
    "meterhub sync --source tahmo --since 2024-06-01":
        "tests/test_sync.py::test_since_rereads_an_older_window_without_duplicates",
    "meterhub run --every 900": "tests/test_cli.py::test_sync_and_status_against_all_four_"
                                "emulators_over_http",
    "meterhub emulate zentra": "tests/test_cli.py::test_emulate_zentra_answers_the_seed_"
                               "example_over_http",
    "meterhub emulate tandd": "tests/test_cli.py::test_emulate_tandd_answers_the_seed_ex1_"
                              "request_over_http",
    "meterhub emulate climkit": "tests/test_cli.py::test_sync_and_status_against_all_four_"
                                "emulators_over_http",
    "meterhub emulate copper": "tests/test_cli.py::test_sync_and_status_against_all_four_"
                               "emulators_over_http",
    "meterhub serve": "tests/test_cli_api.py::test_serve_answers_over_loopback_and_refuses_"
                      "revoked_keys",
    "meterhub migrate --from duckdb:///meterhub.duckdb --to clickhouse://localhost:8123/meterhub":
        "tests/test_migrate.py::test_the_command_copies_verifies_and_resumes",
}
#: sections whose commands this file runs itself
RUN_HERE = ("A short tour", "Smart meters (DSMR P1)", "Configuration and sync", "REST API")


def test_the_configuration_commands_run_against_the_emulators(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from meterhub.demo import config_text, emulators

    monkeypatch.chdir(tmp_path)
    ran = 0
    with emulators(devices=1) as served:
        Path("meterhub.toml").write_text(config_text(served, "duckdb:///meterhub.duckdb"))
        for section in ("Configuration and sync", "REST API"):
            for block in blocks("sh", section):
                for words in commands(block):
                    if " ".join(words) not in ELSEWHERE:
                        run(words, {})
                        ran += 1
    assert ran == 5  # config check (twice), sync --dry-run, status, keys create


def test_every_command_of_the_readme_is_run_by_a_test() -> None:
    here = {" ".join(words) for section in RUN_HERE for block in blocks("sh", section)
            for words in commands(block)}
    everywhere = {" ".join(words) for block in re.findall(r"```sh\n(.*?)```", README, re.S)
                  for words in commands(block)}
    assert everywhere <= here | set(ELSEWHERE), everywhere - here - set(ELSEWHERE)
    root = Path(__file__).resolve().parents[1]
    for test in ELSEWHERE.values():
        path, name = test.split("::")
        assert f"def {name}(" in (root / path).read_text(encoding="utf-8"), test

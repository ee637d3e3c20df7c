"""The CLI family: `meterhub import` of CSV and JSON files holding the corpus, and the read
commands (query, export, gaps, devices, energy, delete) given hostile options, through
typer's runner over a DuckDB file.

A refusal is exit code 1 with one line on stderr (``error: ...``, naming the file and row
where there is one), or click's exit code 2 for an option it cannot parse (its usage hint
and one ``Error:`` line naming the option); never a traceback. The store is unchanged.
"""

from __future__ import annotations

import csv
import io
import json
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result
from typer.testing import CliRunner

import meterhub
from meterhub.cli import app
from tests.api.conftest import sample_frame
from tests.corpus import values as v
from tests.corpus.kit import Snapshot, changes, snapshot

runner = CliRunner()
FIRST = {"device": "corpus-first", "channel": "temp", "ts": "2024-10-26T00:00:00Z",
         "value": 1.0, "unit": "degC"}
ROW = {"source": "corpus", "device": "corpus-meter", "channel": "energy",
       "ts": "2024-10-26T00:15:00Z", "value": 2.5, "unit": "MWh", "kind": "delta",
       "quantity": "energy", "error_code": "E1"}
COLUMNS = list(ROW)
#: every read command, each of which answers (exit 0) before and after the family
READ_COMMANDS = (["devices", "--format", "csv"], ["query", "--format", "csv"],
                 ["query", "--every", "1d", "--tz", "Europe/Amsterdam", "--format", "csv"],
                 ["export", "--format", "csv"], ["gaps", "--format", "csv"])


@dataclass
class Store:
    url: str
    folder: Path
    baseline: Snapshot

    def run(self, *words: str) -> Result:
        return runner.invoke(app, [*words, "--store", self.url])

    def unchanged(self) -> None:
        with meterhub.open(self.url) as hub:
            assert changes(self.baseline, snapshot(hub)) == {}


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    folder = tmp_path_factory.mktemp("corpus-cli")
    url = f"duckdb:///{folder / 'cli.duckdb'}"
    with meterhub.open(url) as hub:
        hub.write(sample_frame(), source="lab")
        baseline = snapshot(hub)
    opened = Store(url, folder, baseline)
    for words in READ_COMMANDS:
        assert opened.run(*words).exit_code == 0, words
    yield opened
    for words in READ_COMMANDS:  # every read command still answers
        result = opened.run(*words)
        assert result.exit_code == 0, (words, result.output[-500:])


def one_error(result: Result, *words: str) -> str:
    """The one line a refused command says: exit 1 and ``error: ...`` on stderr, or click's
    exit 2 with one ``Error:`` line; never a traceback. Checked to hold ``words``."""
    assert result.exception is None or isinstance(result.exception, SystemExit), \
        repr(result.exception)
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    if result.exit_code == 1:
        assert len(lines) == 1, lines[:5]
        line = lines[0]
        assert line.startswith("error: "), line
    else:
        assert result.exit_code == 2, (result.exit_code, result.output[-500:])
        errors = [line for line in lines if line.startswith("Error: ")]
        assert len(errors) == 1, lines
        line = errors[0]
        assert all(other.startswith(("Usage: ", "Try ")) for other in lines
                   if other is not line), lines
    missing = [word for word in words if word not in line]
    assert not missing, f"{missing} not in {line[:500]!r}"
    return line


# -- meterhub import: CSV and JSON files with one bad row ------------------------------------

def csv_text(rows: list[dict[str, Any]]) -> bytes:
    out = io.StringIO()
    writer = csv.DictWriter(out, COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue().encode()


ROW_VALUES: dict[str, tuple[str, ...]] = {
    "ts": ("year 1", "9999-12-31 -05:00", "1799 last second", "2200", "2024-02-30", "now",
           "text NaN"),
    "value": ("text 1e308", "text -1.8e308", "text 1e400", "text 0x10", "text 1_000",
              "text Infinity", "text -inf"),
    "device": ("text NUL", "text DEL", "text NEL", "60,000 chars"),
    "unit": ("text NUL", "60,000 chars", "injection SQL"),
    "error_code": ("text NUL", "text DEL"),
}


@pytest.mark.parametrize(("field", "value"), [
    pytest.param(field, v.QUERY_TEXTS[name], id=f"{field}={name}")
    for field, names in ROW_VALUES.items() for name in names])
def test_import_csv_with_a_bad_row_writes_nothing(store: Store, tmp_path: Path, field: str,
                                                 value: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_bytes(csv_text([{**ROW, "device": "corpus-ok"}, {**ROW, field: value}]))
    line = one_error(store.run("import", str(path)), f"{path}: row 2 (line 3): ")
    assert field in line or (field == "ts" and "timestamp" in line), line
    store.unchanged()


@pytest.mark.parametrize(("field", "value"), [
    pytest.param(field, value, id=f"{field}={name}") for field, chosen in {
        "ts": v.cases(v.TIMES, skip=("naive 1800", "DST gap")),
        "value": v.cases(v.NUMBERS, skip=("5e-324", "10**30", "-1.8e308", "10**400"))
        + v.cases(v.TYPES),
        "device": v.cases(v.TEXTS, v.TYPES, skip=("lone surrogate", "invalid UTF-8")),
        "unit": v.cases(v.TYPES),
    }.items() for name, value in chosen])
def test_import_json_with_a_bad_item_writes_nothing(store: Store, tmp_path: Path, field: str,
                                                   value: Any) -> None:
    path = tmp_path / "bad.json"
    path.write_bytes(v.dumps([{**ROW, "device": "corpus-ok"}, {**ROW, field: value}]))
    line = one_error(store.run("import", str(path)), f"{path}: item 2: ")
    assert field in line or (field == "ts" and "timestamp" in line), line
    store.unchanged()


def _bad_files() -> list[Any]:
    good_csv = csv_text([ROW])
    good_json = json.dumps([ROW]).encode()
    return [pytest.param(name, content, words, id=name) for name, content, words in (
        ("empty.csv", b"", ["empty file"]),
        ("utf8-header.csv", b"\xff\xfe" + good_csv, ["not UTF-8"]),
        ("utf8-row.csv", good_csv + b"corpus,\xff\xfe,e,2024-10-26T01:00:00Z,1,MWh,delta,"
                                    b"energy,\n", ["UTF-8"]),
        ("ragged.csv", good_csv + b"corpus,d\n", ["row 2 (line 3)", "columns"]),
        ("quote.csv", good_csv + b'"corpus,d,e\n', ["columns"]),
        ("nul.csv", good_csv + b"\x00" * 40 + b"\n", ["row 2 (line 3)"]),
        ("columns.csv", b"device,channel\nd,c\n", ["missing column"]),
        ("empty.json", b"", ["missing column"]),
        ("null.json", b"null", ["item 1", "expected an object"]),
        ("object.json", b"{}", ["missing column"]),
        ("empty-item.json", b"[{}]", ["missing column"]),
        ("token-nan.json", good_json[:-2] + b', "value": NaN}]', ["not a readable json file"]),
        ("token-inf.json", good_json[:-2] + b', "value": -Infinity}]',
         ["not a readable json file"]),
        ("big.json", good_json[:-2] + b', "value": ' + b"9" * 400 + b"}]",
         ["not a readable json file", "infinity"]),
        ("deep.json", b"[" * 100_000, ["not a readable json file", "depth"]),
        ("deep-object.json", b'{"a":' * 100_000, ["not a readable json file"]),
        ("utf8.json", b"\xff\xfe", ["not a readable json file", "UTF-8"]),
        ("surrogate.json", good_json.replace(b'"corpus"', b'"\\ud800"'),
         ["not a readable json file", "surrogate"]),
        ("lines.json", json.dumps(ROW).encode() + b"\n[1]\n", ["item 2", "expected an object"]),
        ("not-parquet.parquet", b"PAR1 and then no Parquet", ["not a readable parquet file"]),
        ("no-suffix", good_csv, ["cannot tell the format"]),
    )]


@pytest.mark.parametrize(("name", "content", "words"), _bad_files())
def test_import_files_that_are_no_readings(store: Store, tmp_path: Path, name: str,
                                           content: bytes, words: list[str]) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    one_error(store.run("import", str(path)), f"{path}: ", *words)
    store.unchanged()


@pytest.mark.parametrize(("words", "said"), [
    (["--format", "xml"], "cannot tell the format"),
    (["--source", "a\x00b"], "control character"),
    (["--source", "x" * 60_000], "characters long"),
    (["--source", ""], None),  # blank: the default, import
], ids=["format xml", "source NUL", "source 60,000 chars", "source empty"])
def test_import_options(store: Store, tmp_path: Path, words: list[str], said: str | None
                        ) -> None:
    path = tmp_path / "bad.csv"  # without a source column: --source names the rows'
    path.write_text("device,channel,ts,value,unit\ncorpus,temp,now,1,degC\n")
    one_error(store.run("import", str(path), *words), *([said] if said else []))
    store.unchanged()


def test_import_of_a_folder_or_no_file(store: Store, tmp_path: Path) -> None:
    one_error(store.run("import", str(tmp_path)), "cannot tell the format")
    one_error(store.run("import", str(tmp_path / "none.csv")), "no such file")
    store.unchanged()


# -- the read commands, each option given hostile values -------------------------------------

TIMES = ("year 1 +01:00", "9999-12-31 -05:00", "1799 last second", "naive 1800",
         "2024-02-30", "text NaN", "text NUL", "60,000 chars", "text LF")
IDS = ("text NUL", "text LF", "text NEL", "60,000 chars", "injection SQL", "empty")
#: per command: option -> the corpus names it gets
OPTIONS: dict[str, dict[str, tuple[str, ...]]] = {
    "query": {"--start": TIMES, "--end": TIMES, "--device": IDS, "--channel": IDS,
              "--unit": ("text NaN", "text NUL", "60,000 chars", "empty"),
              "--limit": ("0", "-1", "text 10**400", "text NaN"),
              "--format": ("text NUL", "empty")},
    "query --every 1d": {"--tz": ("text NUL", "60,000 chars", "empty", "injection path",
                                  "text 10**400"),
                         "--every": ("0", "text NaN", "text NUL", "60,000 chars", "empty"),
                         "--fn": ("text NUL", "injection SQL"),
                         "--start": ("naive 1800", "9999-12-31 -05:00"),
                         "--limit": ("text 10**400",)},
    "export": {"--start": TIMES[:6], "--unit": ("text NUL", "60,000 chars"),
               "--device": ("text LF", "60,000 chars"), "--format": ("text NUL", "empty")},
    "gaps": {"--start": TIMES[:6], "--device": ("text LF", "60,000 chars")},
    "energy": {"--day": ("day 1", "day 9999-12-31", "day 1800-01-01", "2024-02-30", "now",
                         "text NUL", "60,000 chars"),
               "--month": ("month 1", "month 9999-12", "text NUL", "empty"),
               "--tz": ("text NUL", "60,000 chars", "injection path")},
    "delete --device m1 --yes --end 1800-01-01": {"--start": TIMES[:6]},
    "delete --device m1 --yes --start 2199-12-31": {
        "--end": TIMES[:6], "--tz": ("text NUL", "60,000 chars"),
        "--channel": ("text LF", "60,000 chars")},
}
#: the values as the options take them: the corpus, and days and months
VALUES = {**v.QUERY_TEXTS, "day 1": "0001-01-01", "day 9999-12-31": "9999-12-31",
          "day 1800-01-01": "1800-01-01",  # its local midnight is in 1799 in UTC
          "month 1": "0001-01", "month 9999-12": "9999-12"}
#: values every command must refuse (exit 1 or 2): unreadable, or outside the times kept
#: (which delete takes: rows stored there before writes were checked are deleted so)
UNREADABLE = ("2024-02-30", "text NUL", "60,000 chars", "text 10**400", "text NaN")
OUTSIDE = ("year 1 +01:00", "9999-12-31 -05:00", "1799 last second", "day 1",
           "day 9999-12-31", "day 1800-01-01", "month 1", "month 9999-12")


def _refused(command: str, option: str, name: str) -> bool:
    if option == "--limit":  # any count: a huge one is every row
        return name == "text NaN"
    return name in UNREADABLE or (name in OUTSIDE and not command.startswith("delete"))


def _read_cases() -> list[Any]:
    return [pytest.param(command.split(), option, VALUES[name],
                         _refused(command, option, name),
                         id=f"{' '.join(command.split()[:3])} {option}={name}")
            for command, options in OPTIONS.items() for option, names in options.items()
            for name in names]


@pytest.mark.parametrize(("command", "option", "value", "refuse"), _read_cases())
def test_read_commands_with_a_hostile_option(store: Store, command: list[str], option: str,
                                             value: str, refuse: bool) -> None:
    plain = option == "--format" or command[0] in ("delete", "energy")
    result = store.run(*command, option, value, *([] if plain else ["--format", "csv"]))
    if result.exit_code == 0:
        assert not refuse, result.output[-500:]
        assert result.exception is None
    else:
        one_error(result)
    store.unchanged()


@pytest.mark.parametrize("target", ["folder", "no folder", "no name"])
@pytest.mark.parametrize("command", [["export"], ["query", "--format", "csv"]])
def test_output_files_that_cannot_be_written(store: Store, tmp_path: Path, command: list[str],
                                             target: str) -> None:
    output = {"folder": str(tmp_path), "no folder": str(tmp_path / "none" / "x.csv"),
              "no name": ""}[target]
    one_error(store.run(*command, "-o", output))
    store.unchanged()


@pytest.mark.parametrize("command", [["export"], ["query", "--format", "csv"]])
def test_an_output_that_is_a_pipe_is_written_to_not_replaced(store: Store, tmp_path: Path,
                                                             command: list[str]) -> None:
    """A pipe or a device (``-o /dev/stdout``) is written directly: a file written beside
    it and renamed over it would replace it (as root, even a device node)."""
    pipe = tmp_path / "out.csv"
    os.mkfifo(pipe)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(pipe.read_bytes()), daemon=True)
    reader.start()
    result = store.run(*command, "-o", str(pipe))
    reader.join(timeout=30)
    assert result.exit_code == 0, result.output[-500:]
    assert pipe.is_fifo()
    assert got, "nothing came through the pipe"
    assert len(got[0].splitlines()) == len(sample_frame()) + 1  # and a header
    store.unchanged()


@pytest.mark.parametrize("text", v.INJECTIONS.values(), ids=v.INJECTIONS.keys())
def test_injection_looking_names_import_and_read_back_exactly(tmp_path: Path,
                                                              text: str) -> None:
    url = f"duckdb:///{tmp_path / 'names.duckdb'}"
    path = tmp_path / "names.csv"
    path.write_bytes(csv_text([{**ROW, "source": text, "device": text, "channel": text,
                                "error_code": text}]))
    result = runner.invoke(app, ["import", str(path), "--store", url])
    assert result.exit_code == 0, result.output
    exported = runner.invoke(app, ["export", "--format", "csv", "--device", text,
                                   "--store", url])
    assert exported.exit_code == 0, exported.output
    (row,) = csv.DictReader(io.StringIO(exported.stdout))
    assert (row["source"], row["device"], row["channel"], row["error_code"]) == (text,) * 4
    as_json = runner.invoke(app, ["query", "--format", "json", "--channel", text,
                                  "--store", url])
    assert as_json.exit_code == 0, as_json.output
    assert text in as_json.stdout
    again = tmp_path / "again.csv"
    again.write_text(exported.stdout, encoding="utf-8")
    result = runner.invoke(app, ["import", str(again), "--store", url])
    assert result.exit_code == 0, result.output
    assert "0 new, 0 replaced, 1 unchanged" in result.stdout

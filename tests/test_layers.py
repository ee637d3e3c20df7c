"""The package's import direction, read from its source: each module imports only from its
own layer or the layers below, so a move that inverts a dependency fails here."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "meterhub"  #: the repository's source, as it is checked in

#: lowest first; a module belongs to the layer of the longest prefix naming it
LAYERS: list[tuple[str, set[str]]] = [
    ("foundation", {"meterhub.errors", "meterhub.units", "meterhub.model", "meterhub.timebase",
                    "meterhub.clock", "meterhub.waits", "meterhub.keys", "meterhub.encode",
                    "meterhub.display"}),
    ("store", {"meterhub.store"}),
    ("hub", {"meterhub", "meterhub.hub", "meterhub.answers", "meterhub.ingest", "meterhub.fileio",
             "meterhub.http", "meterhub.migrate", "meterhub.source_health"}),
    ("dsmr", {"meterhub.dsmr"}),
    ("sources", {"meterhub.sources", "meterhub.emulators", "meterhub.demo"}),
    ("mqtt", {"meterhub.mqtt"}),
    ("config and sync", {"meterhub.config", "meterhub.sync"}),
    ("api", {"meterhub.api", "meterhub.dashboard"}),
    ("cli", {"meterhub.cli"}),
]
#: the telegram side of the DSMR domain: it needs nothing but the foundation
DSMR_CORE = {"meterhub.dsmr.fields", "meterhub.dsmr.line_index", "meterhub.dsmr.telegram",
             "meterhub.dsmr.meter_log"}
#: who may use the DSMR domain: itself, its API paths (DSMR-reader's, and the dashboard's
#: energy numbers) and commands, the pull connector (DSMR-reader's field table), MQTT
#: (DSMR-reader's gas field is a gas sensor) and the configuration (its [dsmr] section)
DSMR_USERS = ("meterhub.dsmr", "meterhub.api.dsmr_reader", "meterhub.api.energy",
              "meterhub.cli.dsmr", "meterhub.sources.dsmr_reader", "meterhub.mqtt",
              "meterhub.config")


def modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The meterhub modules ``path`` (module ``name``) imports, anywhere in it (also inside
    functions and under TYPE_CHECKING): absolute, relative and `importlib.import_module`."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "meterhub"}
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")
            base = base[:len(base) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            if module.split(".")[0] != "meterhub":
                continue
            for alias in node.names:  # `from meterhub import encode` imports a module
                sub = f"{module}.{alias.name}"
                found.add(sub if sub in known else module)
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(
                node.func, "id", None)) == "import_module" and node.args and isinstance(
                node.args[0], ast.Constant) and str(node.args[0].value).startswith("meterhub"):
            found.add(str(node.args[0].value))
    return found


def layer(module: str) -> int:
    best, rank = -1, -1
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            inside = module.startswith(prefix + ".") and prefix != "meterhub"  # root: itself
            if (module == prefix or inside) and len(prefix) > best:
                best, rank = len(prefix), index
    assert rank >= 0, f"{module} is in no layer: add it to LAYERS"
    return rank


def upward(edges: dict[str, set[str]]) -> list[str]:
    return [f"{a} ({LAYERS[layer(a)][0]}) imports {b} ({LAYERS[layer(b)][0]})"
            for a, targets in sorted(edges.items()) for b in sorted(targets)
            if layer(b) > layer(a)]


def edges() -> dict[str, set[str]]:
    known = modules()
    return {name: imports(name, path, set(known)) - {name} for name, path in known.items()}


def test_the_reader_sees_the_imports_it_must() -> None:
    graph = edges()
    assert "meterhub.hub" in graph["meterhub.api.app"]
    assert "meterhub.encode" in graph["meterhub.fileio"]  # `from meterhub import encode`
    assert "meterhub.dsmr.telegram" in graph["meterhub.dsmr.settings"]  # inside a function
    assert upward({"meterhub.dsmr.telegram": {"meterhub.api.app"}}) == [
        "meterhub.dsmr.telegram (dsmr) imports meterhub.api.app (api)"]


def test_relative_and_dynamic_imports_are_read(tmp_path: Path) -> None:
    module = tmp_path / "meterhub" / "dsmr" / "fields.py"
    module.parent.mkdir(parents=True)
    module.write_text("from .statistics import x\nfrom ..api import app\n"
                      "import importlib\nimportlib.import_module('meterhub.cli')\n")
    known = {"meterhub.dsmr.statistics", "meterhub.api.app", "meterhub.cli"}
    assert imports("meterhub.dsmr.fields", module, known) == known


def test_every_import_points_down_or_across() -> None:
    assert upward(edges()) == []


def test_the_dsmr_domain_reads_the_store_through_the_hub() -> None:
    graph = edges()
    assert {a: sorted(t for t in targets if t.startswith("meterhub.store"))
            for a, targets in graph.items() if a.startswith("meterhub.dsmr")
            and any(t.startswith("meterhub.store") for t in targets)} == {}


def test_telegram_parsing_needs_only_the_foundation() -> None:
    graph = edges()
    for module in DSMR_CORE:
        assert {layer(m) for m in graph[module] - DSMR_CORE} <= {0}, (module, graph[module])


def test_the_dsmr_domain_lives_in_its_packages() -> None:
    known = modules()
    users = {a for a, targets in edges().items()
             if any(t.startswith("meterhub.dsmr") for t in targets)}
    assert {u for u in users if not u.startswith(DSMR_USERS)} == set()
    # nothing at the package root is about DSMR, and only the DSMR modules parse telegrams
    parsers = {name for name, path in known.items() if "dsmr_parser" in path.read_text()}
    assert {p for p in parsers if not p.startswith("meterhub.dsmr")} == set()
    root = {name for name in known if name.count(".") == 1}
    assert {name for name in root if "dsmr" in name or "p1" in name or "telegram" in name} \
        == {"meterhub.dsmr"}


def test_the_readme_names_modules_that_exist() -> None:
    readme = (ROOT / "README.md").read_text()
    layout = readme.split("## Code layout", 1)[1].split("\n## ", 1)[0]
    named = set(re.findall(r"`([a-z_/]+(?:\.py|/))`", layout))
    assert len(named) > 20
    files = {p.relative_to(PACKAGE).as_posix() for p in PACKAGE.rglob("*.py")}
    folders = {p.relative_to(PACKAGE).as_posix() + "/" for p in PACKAGE.rglob("*") if p.is_dir()}
    named -= {"src/meterhub/", "tests/test_layers.py"}  # the frame, not modules
    missing = {n for n in named if n not in folders and n not in files
               and not any(f.endswith("/" + n) for f in files)}
    assert missing == set()

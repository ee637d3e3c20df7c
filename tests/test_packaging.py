"""The package's own metadata: setuptools reads pyproject.toml without a deprecation
warning (pytest turns warnings into errors), as a build of the package does."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from setuptools.config.pyprojecttoml import apply_configuration
from setuptools.dist import Distribution

ROOT = Path(__file__).resolve().parents[1]


def test_pyproject_applies_without_deprecation_warnings(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)  # the readme and package paths are relative to the project
    dist = apply_configuration(Distribution(), ROOT / "pyproject.toml")
    assert dist.metadata.license_expression == "MIT"


def test_the_wheel_ships_the_package_data(tmp_path: Path) -> None:
    """A wheel built from the sources (copied, so the tree gets no build/ or egg-info) holds
    every file the package reads at run time: the dashboard's static files among them."""
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    shutil.copytree(ROOT / "src" / "meterhub", source / "src" / "meterhub",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    built = subprocess.run(
        [sys.executable, "-c", "from setuptools import build_meta as b; "
         "print(b.build_wheel('dist'))"],
        cwd=source, capture_output=True, text=True, check=False, timeout=120)
    assert built.returncode == 0, built.stderr[-2000:]
    wheel = source / "dist" / built.stdout.strip().splitlines()[-1]
    with zipfile.ZipFile(wheel) as archive:
        shipped = set(archive.namelist())
    package = ROOT / "src" / "meterhub"
    static = {"meterhub/" + p.relative_to(package).as_posix()
              for p in (package / "dashboard" / "static").rglob("*") if p.is_file()}
    assert {"meterhub/dashboard/static/vendor/uPlot.iife.min.js",
            "meterhub/dashboard/static/vendor/uPlot.min.css",
            "meterhub/dashboard/static/vendor/uPlot.LICENSE"} <= static
    assert static <= shipped
    assert {"meterhub/py.typed", "meterhub/data/sample.csv"} <= shipped

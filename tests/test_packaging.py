"""The package's own metadata: setuptools reads pyproject.toml without a deprecation
warning (pytest turns warnings into errors), as a build of the package does."""

from __future__ import annotations

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

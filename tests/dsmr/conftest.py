"""The API fixture of tests/api, for the DSMR-reader-compatible endpoints."""

from tests.api.conftest import api

__all__ = ["api"]

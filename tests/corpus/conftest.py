"""The API fixture of tests/api, for the cases that need a store of their own."""

from tests.api.conftest import api

__all__ = ["api"]

"""meterhub: one hub for sensor and meter data.

>>> import meterhub
>>> hub = meterhub.open("duckdb:///meterhub.duckdb")  # doctest: +SKIP
>>> hub.aggregate(device="z6-12345", channel="air_temperature", every="1h")  # doctest: +SKIP
"""

from __future__ import annotations

from meterhub.errors import (
    InputError,
    MeterhubError,
    NotFoundError,
    StoreError,
    StoreInUseError,
    UnitError,
)
from meterhub.hub import Hub, open
from meterhub.model import READING_SCHEMA, Channel, ChannelKind, Device, Quality, Site

__version__ = "0.1.0"

__all__ = [
    "READING_SCHEMA",
    "Channel",
    "ChannelKind",
    "Device",
    "Hub",
    "InputError",
    "MeterhubError",
    "NotFoundError",
    "Quality",
    "Site",
    "StoreError",
    "StoreInUseError",
    "UnitError",
    "__version__",
    "open",
]

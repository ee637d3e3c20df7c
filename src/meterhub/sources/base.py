"""The connector contract and the registry of connectors by type name.

A connector knows one vendor's protocol and nothing of storage or scheduling. It declares
what it can do in a `ConnectorInfo` (the sync engine reads that and never branches on a
vendor's name), lists devices and channels with `discover`, and yields `Page`s of
canonical readings (`meterhub.model.READING_SCHEMA`) with the cursor that covers them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Protocol, TypeVar

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, HttpUrl, field_validator

from meterhub.errors import MeterhubError
from meterhub.http import Limit
from meterhub.model import Channel, Device, Site
from meterhub.timebase import to_utc
from meterhub.units import Quantity


class SourceConfig(BaseModel):
    """What every source's configuration has; vendors add their credentials."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="Name of this source in meterhub.toml")
    type: str = Field(description="Connector type, e.g. zentra or tandd")
    base_url: HttpUrl
    devices: list[str] | None = Field(default=None, description="Default: all discovered")
    start: str | None = Field(default=None, description="Where a first backfill begins")

    @field_validator("start")
    @classmethod
    def _readable_start(cls, value: str | None) -> str | None:
        # checked here, so `config check` says what a sync would only find out later
        try:
            to_utc(value, what="start")
        except MeterhubError as exc:
            raise ValueError(str(exc)) from None
        return value


@dataclass(frozen=True, slots=True)
class ConnectorInfo:
    """A connector's abilities and limits, as data."""

    name: str
    config: type[SourceConfig]
    quantities: tuple[Quantity, ...]
    cursor: Literal["seq", "time"]  #: what the cursor counts: vendor record ids or time
    limits: tuple[Limit, ...]
    page_size: int  #: most records one call returns (0: a fetch is one page, any length)
    interval_s: int | None = None  #: typical logging interval, for planning
    notes: str = ""
    calls_per_page: int = 1  #: calls one page costs (Climkit: validated and raw data)
    discovery_calls: int = 0  #: calls a discovery costs (listings), for planning
    credentials: tuple[str, ...] = ()  #: config keys a refused login points at
    #: pages hold rows that may be stored already (a window before the cursor read again
    #: for late rows): a sync counts only the rows its writes add, not the rows it wrote
    rereads: bool = False

    def calls_for(self, records: int) -> int:
        """Calls one device's fetch of ``records`` new records costs."""
        if self.page_size <= 0:
            return self.calls_per_page
        return self.calls_per_page * max(1, -(-records // self.page_size))


@dataclass(frozen=True, slots=True)
class Page:
    """Readings of one call and the cursor to resume after them.

    ``cursor`` is None while a window is only partly read (a connector paging backward):
    the rows may be stored, but the cursor must not move until the window is complete.
    """

    readings: pa.Table
    cursor: str | None
    records: int = 0  #: vendor records (timestamps) in the page, for progress


@dataclass(slots=True)
class Discovery:
    sites: list[Site] = field(default_factory=list)
    devices: list[Device] = field(default_factory=list)
    channels: list[Channel] = field(default_factory=list)


class Connector(Protocol):
    """What the sync engine calls."""

    info: ClassVar[ConnectorInfo]

    async def discover(self) -> Discovery: ...

    def fetch(self, device: str, cursor: str | None, until: float | None = None
              ) -> AsyncIterator[Page]: ...

    async def aclose(self) -> None: ...

    async def check(self) -> str:
        """One cheap authenticated call; a line saying what answered, else the error a
        sync would meet (`config check --online`)."""
        ...


_REGISTRY: dict[str, type[Any]] = {}
C = TypeVar("C")


def register(type_name: str) -> Callable[[type[C]], type[C]]:
    """Class decorator: make a connector available under ``type = "<type_name>"``."""

    def add(cls: type[C]) -> type[C]:
        _REGISTRY[type_name] = cls
        return cls

    return add


def connector_types() -> Sequence[str]:
    _load_all()
    return sorted(_REGISTRY)


def connector_class(type_name: str) -> type[Any]:
    """The connector class for a type name, or a KeyError naming the known ones."""
    _load_all()
    if type_name not in _REGISTRY:
        raise KeyError(f"unknown source type {type_name!r}: use one of "
                       f"{', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[type_name]


def _load_all() -> None:
    from meterhub.sources import (  # noqa: F401 - they register
        climkit,
        copper,
        dsmr_reader,
        tandd,
        zentra,
    )

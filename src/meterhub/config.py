"""meterhub.toml -> typed settings, with ``${ENV_VAR}`` interpolation for secrets.

Every error names the key it is about (``source[tahmo].token``) and says why, so that
``meterhub config check`` is one line a user can act on. Secrets stay `SecretStr` and are
never printed.
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from meterhub.dsmr.settings import DsmrSettings as DsmrSettings  # part of Settings
from meterhub.dsmr.settings import PriceSettings
from meterhub.errors import MeterhubError
from meterhub.mqtt.settings import MqttSettings
from meterhub.sources.base import SourceConfig, connector_class, connector_types
from meterhub.store import SCHEMES, scheme_of

DEFAULT_PATH = Path("meterhub.toml")
_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class ConfigError(MeterhubError):
    """A configuration file that cannot be used; the message names the key."""


class StoreSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(default="duckdb:///meterhub.duckdb")

    @field_validator("url")
    @classmethod
    def _supported(cls, value: str) -> str:
        scheme = scheme_of(value)
        if scheme not in SCHEMES:
            # only the scheme is named: the rest of a URL may hold a password
            named = f"scheme {scheme!r}" if scheme else "no scheme"
            raise ValueError(f"{named} is not supported; use one of "
                             f"{', '.join(SCHEMES)} (e.g. duckdb:///path/file.duckdb)")
        if scheme == "clickhouse":  # read now, so that `config check` finds what is wrong
            from meterhub.store.clickhouse_http import ClickHouseURL

            try:
                ClickHouseURL.parse(value)
            except MeterhubError as exc:  # its messages never show the password
                raise ValueError(str(exc)) from None
        return value


class ApiSettings(BaseModel):
    """Where `meterhub serve` and `meterhub run` listen, and the default per-key limit."""

    model_config = ConfigDict(extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    rate_limit: str = Field(default="600/minute",
                            description="requests per key and period, e.g. 600/minute")
    dashboard: bool = Field(default=True, description="serve the dashboard's pages (false: "
                            "the API only)")
    metrics: Literal["loopback", "open", "key"] = Field(
        default="loopback", description="who may read GET /metrics without a key: a "
        "client on this machine (loopback), anyone (open), or no one (key)")
    session_hours: float = Field(default=12, ge=0.1, le=24 * 366,
                                 description="how long a dashboard login lasts (at least "
                                 "6 minutes: a shorter one would end before a page loads)")

    @field_validator("rate_limit")
    @classmethod
    def _readable(cls, value: str) -> str:
        from meterhub.keys import RateLimit

        try:
            return str(RateLimit.parse(value))
        except MeterhubError as exc:
            raise ValueError(str(exc)) from None


@dataclass
class Settings:
    """The whole configuration: where the store is, the API, and which sources to sync."""

    store: StoreSettings = field(default_factory=StoreSettings)
    api: ApiSettings = field(default_factory=ApiSettings)
    dsmr: DsmrSettings = field(default_factory=DsmrSettings)
    sources: list[SourceConfig] = field(default_factory=list)
    mqtt: MqttSettings | None = None  #: publish to a broker (`[mqtt]`), or not
    path: Path | None = None

    def source_types(self) -> dict[str, str | None]:
        """Each configured source's connector type, by name (what `source_health` takes)."""
        return {s.name: s.type for s in self.sources}

    def source(self, name: str) -> SourceConfig:
        for source in self.sources:
            if source.name == name:
                return source
        raise ConfigError(f"no source named {name!r} in {self.path}: use one of "
                          f"{', '.join(s.name for s in self.sources) or '(none)'}")


def _interpolate(value: Any, where: str, environ: dict[str, str]) -> Any:
    if isinstance(value, str):
        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in environ:
                raise ConfigError(f"{where}: environment variable {name} is not set; "
                                  f"export it or write the value in the file")
            return environ[name]

        return _ENV.sub(replace, value)
    if isinstance(value, list):
        return [_interpolate(v, f"{where}[{i}]", environ) for i, v in enumerate(value)]
    if isinstance(value, dict):
        return {k: _interpolate(v, f"{where}.{k}", environ) for k, v in value.items()}
    return value


def _explain(error: ValidationError, where: str) -> ConfigError:
    first = error.errors()[0]
    key = ".".join(str(part) for part in first["loc"]) or "(section)"
    kind = first["type"]
    if kind == "missing":
        reason = "is required"
    elif kind == "extra_forbidden":
        reason = "is not a known key"
    elif kind.startswith("url"):
        reason = f"is not a valid URL ({first['msg']})"
    elif kind == "value_error" and "error" in first.get("ctx", {}):
        reason = str(first["ctx"]["error"])  # our own sentence, without "Value error, "
    else:
        reason = first["msg"]
    return ConfigError(f"{where}.{key}: {reason}")


def _known_keys(where: str, given: Iterable[str], known: Iterable[str]) -> None:
    """Refuse the first unknown key of a table, naming the closest known one: a typo
    (``tokne``) must be reported as itself, not as the required key it hides."""
    known = sorted(known)
    for key in given:
        if key in known:
            continue
        close = difflib.get_close_matches(key, known, n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"known keys: {', '.join(known)}"
        raise ConfigError(f"{where}: unknown key {key!r} ({hint})")


def _table(data: dict[str, Any], key: str) -> dict[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise ConfigError(f"{key}: write it as a [{key}] table")
    return value


def parse(data: dict[str, Any], *, path: Path | None = None,
          environ: dict[str, str] | None = None) -> Settings:
    """Settings from a parsed TOML document."""
    env = dict(os.environ if environ is None else environ)
    _known_keys("top level", data, ("store", "api", "dsmr", "source", "mqtt"))
    _known_keys("store", _table(data, "store"), StoreSettings.model_fields)
    _known_keys("api", _table(data, "api"), ApiSettings.model_fields)
    raw_dsmr = _table(data, "dsmr")
    _known_keys("dsmr", raw_dsmr, DsmrSettings.model_fields)
    prices = raw_dsmr.get("prices", [])
    for i, price in enumerate(prices if isinstance(prices, list) else []):
        if isinstance(price, dict):
            _known_keys(f"dsmr.prices[{i}]", price, PriceSettings.model_fields)
    try:
        store = StoreSettings(**_interpolate(data.get("store", {}), "store", env))
    except ValidationError as exc:
        raise _explain(exc, "store") from None
    try:
        api = ApiSettings(**_interpolate(data.get("api", {}), "api", env))
    except ValidationError as exc:
        raise _explain(exc, "api") from None
    try:
        dsmr = DsmrSettings(**_interpolate(raw_dsmr, "dsmr", env))
    except ValidationError as exc:
        raise _explain(exc, "dsmr") from None
    mqtt = None
    if "mqtt" in data:
        _known_keys("mqtt", _table(data, "mqtt"), MqttSettings.model_fields)
        try:
            mqtt = MqttSettings(**_interpolate(data["mqtt"], "mqtt", env))
        except ValidationError as exc:
            raise _explain(exc, "mqtt") from None
    sources: list[SourceConfig] = []
    raw_sources = data.get("source", [])
    if not isinstance(raw_sources, list):
        raise ConfigError("source: write each source as a [[source]] table")
    for index, raw in enumerate(raw_sources):
        name = raw.get("name") if isinstance(raw, dict) else None
        where = f"source[{name or index}]"
        if not isinstance(raw, dict):
            raise ConfigError(f"{where}: expected a table")
        kind = raw.get("type")
        configs = {t: connector_class(t).info.config for t in connector_types()}
        cls = configs.get(kind) if isinstance(kind, str) else None
        if cls is not None:
            _known_keys(where, raw, cls.model_fields)
        else:  # keys of any type may be meant; a misspelt "type" is found among them
            _known_keys(where, raw, {k for c in configs.values() for k in c.model_fields})
        if not name:
            raise ConfigError(f"{where}.name: is required")
        if any(s.name == name for s in sources):
            raise ConfigError(f"{where}.name: two sources are named {name!r}")
        if cls is None:
            raise ConfigError(f"{where}.type: unknown source type {kind!r}; use one of "
                              f"{', '.join(connector_types())}")
        try:
            sources.append(cls(**_interpolate(raw, where, env)))
        except ValidationError as exc:
            raise _explain(exc, where) from None
    return Settings(store=store, api=api, dsmr=dsmr, sources=sources, mqtt=mqtt, path=path)


def load(path: Path | None = None, *, environ: dict[str, str] | None = None) -> Settings:
    """Read and validate a meterhub.toml (default ./meterhub.toml)."""
    path = path or DEFAULT_PATH
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file; write one (see the README) or pass "
                          "--config") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    try:
        return parse(data, path=path, environ=environ)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None

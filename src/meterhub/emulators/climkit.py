"""Emulator of the Climkit API v1 (``/api/v1``): sites, meters, validated and raw data, sensors.

Faithful to the seed document and VENDORS.md 4 and 6.5: ``POST /auth`` with API username and
password returns a JWT valid 15 minutes (``valid_until`` as ``{"$date": epoch ms}``); every
other call needs ``Authorization: Bearer``; 1 request per second per token (429 beyond);
request times ``t_s``/``t_e`` are tz-naive UTC; 15-minute values are stamped at the *end* of
their period, H/D/M/Y values at the *start*, resampled in the site's time zone and written
with the site's offset; production meters return only ``total``; raw indexes ``en_im``,
``en_ex``, ``heat_energy_kwh`` and ``vol_m3`` stamped at the end of their period.

A 15-minute period [a, a + 15 min) belongs to a request when ``t_s <= a < t_e``.
"""

from __future__ import annotations

import datetime as dt
import math
import secrets
from dataclasses import dataclass, field
from typing import Any

import jwt
import numpy as np
import numpy.typing as npt
import orjson
import pandas as pd
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from meterhub.clock import Clock
from meterhub.emulators.kit import (
    DataHorizon,
    Fault,
    Faults,
    WindowLimit,
    gateway_error,
    noise,
    weather,
)

PERIOD_S = 900
TOKEN_S = 900
USERNAME = "climkit-dev"
PASSWORD = "emulator-pass"
FREQUENCIES = {"15T": None, "H": "h", "D": "D", "M": "MS", "Y": "YS"}
RAW_FIELD = {"electricity": "en_im", "heating": "heat_energy_kwh",
             "cold_water": "vol_m3", "hot_water": "vol_m3"}


@dataclass
class Meter:
    id: str
    site: str
    index: int
    type: str  #: electricity, heating, cold_water, hot_water
    mode: str  #: consumption, production
    name: str

    def per_period(self, start: npt.NDArray[np.int64], seed: int) -> npt.NDArray[np.float64]:
        """Energy (kWh) or volume (m³) of each 15-minute period starting at ``start``."""
        salt = seed * 100 + self.index
        hour = (start % 86400) / 3600.0
        if self.mode == "production":
            sun = np.clip(np.sin((hour - 6.0) / 12.0 * math.pi), 0, None)
            return np.round(2.5 * sun * (0.6 + 0.4 * noise(start // 3600, salt, 1)), 4)
        if self.type in ("cold_water", "hot_water"):
            return np.round(0.004 * noise(start, salt, 2) * (hour > 6), 5)
        base = 0.6 if self.type == "heating" else 0.08
        return np.round(base * (0.5 + noise(start, salt, 3)), 4)


@dataclass
class Sensor:
    id: str
    site: str
    index: int
    name: str = "Outdoor temperature"
    type: str = "temperature"
    unit: str = "°C"
    model: str = "TH-100"


@dataclass
class Site:
    id: str
    ref: str
    name: str
    timezone: str
    first: int  #: epoch seconds of the first 15-minute period
    meters: list[Meter] = field(default_factory=list)
    sensors: list[Sensor] = field(default_factory=list)


@dataclass
class ClimkitWorld(DataHorizon):
    """The emulated developer account and its sites."""

    clock: Clock
    horizon: float | None = None  #: data stops growing here (None: it never does)
    unlimited: bool = False
    seed: int = 0
    sites: dict[str, Site] = field(default_factory=dict)
    faults: Faults = field(default_factory=Faults)
    secret: str = field(default_factory=lambda: secrets.token_hex(16))
    sites_as_objects: bool = False  #: all_installations as objects instead of id strings
    calls: int = 0
    auths: int = 0
    rejected: int = 0
    revoked: set[str] = field(default_factory=set)  #: ids of tokens that expired early

    def __post_init__(self) -> None:
        self.per_token = WindowLimit(1, 1.0, self.clock)

    @classmethod
    def create(cls, clock: Clock, *, sites: int = 1, meters: int = 4, days: float = 7,
               seed: int = 0) -> ClimkitWorld:
        world = cls(clock=clock, seed=seed)
        first = int(clock.now() - days * 86400)
        first -= first % PERIOD_S
        # every type and mode the document lists; the first four are the common ones
        kinds = [("electricity", "consumption"), ("electricity", "production"),
                 ("heating", "consumption"), ("cold_water", "consumption"),
                 ("hot_water", "consumption"), ("electricity", "introduction"),
                 ("electricity", "battery")]
        n = 0
        for s in range(sites):
            site_id = f"5f{s:022x}"
            site = Site(site_id, f"CK-{1000 + s}", f"Residence {s + 1}", "Europe/Zurich",
                        first)
            for m in range(meters):
                meter_type, mode = kinds[m % len(kinds)]
                site.meters.append(Meter(f"6a{n:022x}", site_id, n, meter_type, mode,
                                         f"{meter_type} {mode} {m + 1}"))
                n += 1
            site.sensors.append(Sensor(f"7b{s:022x}", site_id, s))
            world.sites[site_id] = site
        return world

    def meter(self, meter_id: str) -> Meter | None:
        for site in self.sites.values():
            for meter in site.meters:
                if meter.id == meter_id:
                    return meter
        return None

    def periods(self, site: Site, t_s: int | None, t_e: int | None) -> npt.NDArray[np.int64]:
        """Starts of the complete 15-minute periods with ``t_s <= start < t_e``."""
        last_start = int(self.data_now()) - PERIOD_S
        lo = site.first if t_s is None else max(site.first, t_s)
        hi = last_start + 1 if t_e is None else min(last_start + 1, t_e)
        lo = lo + (-lo % PERIOD_S)
        if hi <= lo:
            return np.zeros(0, dtype=np.int64)
        return np.arange(lo, hi, PERIOD_S, dtype=np.int64)

    def truth(self, meter_id: str) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
        """Ground truth: period starts and values of every complete period served now."""
        meter = self.meter(meter_id)
        assert meter is not None
        start = self.periods(self.sites[meter.site], None, None)
        return start, meter.per_period(start, self.seed)

    def index_at(self, meter: Meter, start: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
        """Register at the end of each period: a base plus everything since the first one."""
        site = self.sites[meter.site]
        all_starts = np.arange(site.first, int(start.max()) + PERIOD_S, PERIOD_S,
                               dtype=np.int64) if len(start) else np.zeros(0, np.int64)
        cumulative = np.cumsum(meter.per_period(all_starts, self.seed))
        position = (start - site.first) // PERIOD_S
        return np.round(12_345.0 + meter.index * 1000 + cumulative[position], 4)


def _stamp(seconds: npt.NDArray[np.int64], tz: str) -> list[str]:
    """Site-local times with offset, as Climkit writes them: 2026-03-22 05:30:00+01:00."""
    local = pd.DatetimeIndex(pd.to_datetime(seconds, unit="s", utc=True)).tz_convert(tz)
    text = local.strftime("%Y-%m-%d %H:%M:%S%z")
    return [f"{t[:-2]}:{t[-2:]}" for t in text]


def _naive_utc(text: Any) -> int | None:
    if text is None or text == "":
        return None
    moment = dt.datetime.fromisoformat(str(text).replace(" ", "T"))
    if moment.tzinfo is not None:
        raise ValueError("t_s and t_e are tz-naive UTC")
    return int(moment.replace(tzinfo=dt.UTC).timestamp())


def _resample(starts: npt.NDArray[np.int64], values: dict[str, npt.NDArray[np.float64]],
              frequency: str, tz: str) -> list[dict[str, Any]]:
    if not len(starts):
        return []
    rule = FREQUENCIES[frequency]
    if rule is None:  # 15T: stamped at the end of the period
        stamps = _stamp(starts + PERIOD_S, tz)
        return [{**{k: float(v[i]) for k, v in values.items()}, "timestamp": stamps[i]}
                for i in range(len(starts))]
    index = pd.DatetimeIndex(pd.to_datetime(starts, unit="s", utc=True)).tz_convert(tz)
    frame = pd.DataFrame(values, index=index).resample(rule).sum()
    text = pd.DatetimeIndex(frame.index).strftime("%Y-%m-%d %H:%M:%S%z")
    stamps = [f"{t[:-2]}:{t[-2:]}" for t in text]
    return [{**{k: round(float(row[k]), 6) for k in values}, "timestamp": stamps[i]}
            for i, (_, row) in enumerate(frame.iterrows())]


def _fault_answer(world: ClimkitWorld, fault: Fault) -> Response:
    """A scheduled fault's status, in Climkit's words (no wait hint unless the fault has
    one: Climkit documents none)."""
    status = int(fault.status or 500)
    wait = fault.wait(world.clock.now())
    headers = {"Retry-After": str(wait)} if wait is not None else None
    if status == 429:
        world.rejected += 1
        return JSONResponse({"message": "Too many requests"}, status_code=429, headers=headers)
    if status == 500:
        return JSONResponse({"message": "Internal server error"}, status_code=500)
    if status > 500:
        return gateway_error(status)
    return JSONResponse({"message": "Bad request"}, status_code=status)


def create_app(world: ClimkitWorld) -> Starlette:
    """The Climkit ASGI app over ``world``."""

    async def auth(request: Request) -> Response:
        world.calls += 1
        fault = world.faults.next(request.url.path, world.clock.now())
        await world.faults.stall(fault, world.clock, request.scope)
        if fault.status is not None and fault.status != 401:
            return _fault_answer(world, fault)
        try:
            body = orjson.loads(await request.body())
        except orjson.JSONDecodeError:
            return JSONResponse({"message": "Bad request"}, status_code=400)
        if not isinstance(body, dict) or (body.get("username"), body.get("password")) != (
                USERNAME, PASSWORD) or fault.status == 401:
            return JSONResponse({"message": "Wrong username or password"}, status_code=401)
        world.auths += 1
        expires = world.clock.now() + TOKEN_S
        token = jwt.encode({"sub": USERNAME, "exp": int(expires), "jti": secrets.token_hex(4)},
                           world.secret, algorithm="HS256")
        return world.faults.answer(fault, "auth", orjson.dumps({
            "access_token": token, "valid_until": {"$date": int(expires * 1000)}}),
            "application/json")

    def guarded(handler: Any, limited: bool = True) -> Any:
        async def endpoint(request: Request) -> Response:
            world.calls += 1
            header = request.headers.get("authorization", "")
            token = header[7:] if header.startswith("Bearer ") else ""
            fault = world.faults.next(request.url.path, world.clock.now())
            try:
                claims = jwt.decode(token, world.secret, algorithms=["HS256"],
                                    options={"verify_exp": False})
            except jwt.PyJWTError:
                return JSONResponse({"message": "Invalid token"}, status_code=401)
            if fault.status == 401:  # the session ended early: this token is done
                world.revoked.add(str(claims.get("jti")))
            if claims["exp"] <= world.clock.now() or claims.get("jti") in world.revoked:
                return JSONResponse({"message": "Token expired"}, status_code=401)
            await world.faults.stall(fault, world.clock, request.scope)
            if fault.status is not None:
                return _fault_answer(world, fault)
            if limited:
                if world.per_token.retry_in(token) > 0:
                    world.rejected += 1
                    return JSONResponse({"message": "Too many requests"}, status_code=429)
                world.per_token.accept(token)
            try:
                result = await handler(request)
            except (ValueError, KeyError) as exc:
                return JSONResponse({"message": f"Bad request: {exc}"}, status_code=400)
            if isinstance(result, Response):
                return result
            if fault.reorder and isinstance(result, list):  # newest first
                result.reverse()
            return world.faults.answer(fault, request.url.path, orjson.dumps(result),
                                       "application/json")

        return endpoint

    def site_of(request: Request) -> Site:
        site = world.sites.get(request.path_params["site_id"])
        if site is None:
            raise KeyError("unknown site")
        return site

    async def all_installations(request: Request) -> Any:
        if world.sites_as_objects:
            return [{"_id": s.id, "name": s.name} for s in world.sites.values()]
        return list(world.sites)

    async def installation_infos(request: Request) -> Any:
        site = site_of(request)
        return {"site_ref": site.ref, "name": site.name,
                "address": {"street_name": "Rue du Lac", "street_number": "1",
                            "city": "Lausanne", "postal_code": 1007},
                "creation_date": dt.datetime.fromtimestamp(site.first, dt.UTC).isoformat(),
                "latitude": 46.52, "longitude": 6.63, "timezone": site.timezone}

    async def meter_info(request: Request) -> Any:
        site = site_of(request)
        return [{"id": m.id, "type": m.type, "name": m.name, "mode": m.mode,
                 "prim_ad": 10 + m.index, "is_rule_meter": False} for m in site.meters]

    async def window(request: Request) -> tuple[int | None, int | None, str]:
        body = orjson.loads(await request.body() or b"{}")
        frequency = str(body.get("sampling_frequency", "15T"))
        if frequency not in FREQUENCIES:
            raise ValueError(f"sampling_frequency {frequency!r}")
        return _naive_utc(body.get("t_s")), _naive_utc(body.get("t_e")), frequency

    async def meter_data(request: Request) -> Any:
        site = site_of(request)
        meter = world.meter(request.path_params["meter_id"])
        if meter is None or meter.site != site.id:
            raise KeyError("unknown meter")
        t_s, t_e, frequency = await window(request)
        starts = world.periods(site, t_s, t_e)
        total = meter.per_period(starts, world.seed)
        if meter.mode != "consumption":
            values = {"total": total}
        else:
            share = 0.4 * noise(starts, world.seed, 9) if meter.type == "electricity" \
                else np.zeros(len(starts))
            own = np.round(total * share, 4)
            values = {"total": total, "self": own, "ext": np.round(total - own, 4)}
        return _resample(starts, values, frequency, site.timezone)

    async def meter_data_raw(request: Request) -> Any:
        site = site_of(request)
        meter = world.meter(request.path_params["meter_id"])
        if meter is None or meter.site != site.id:
            raise KeyError("unknown meter")
        t_s, t_e, _ = await window(request)
        starts = world.periods(site, t_s, t_e)
        if not len(starts):
            return []
        index = world.index_at(meter, starts)
        stamps = _stamp(starts + PERIOD_S, site.timezone)
        rows = []
        for i, stamp in enumerate(stamps):
            row: dict[str, Any] = {"timestamp": stamp}
            if meter.type == "electricity":
                production = meter.mode == "production"
                row["en_im"] = 0.0 if production else float(index[i])
                row["en_ex"] = float(index[i]) if production else 0.0
            else:
                row[RAW_FIELD[meter.type]] = float(index[i])
            rows.append(row)
        return rows

    async def site_data(request: Request) -> Any:
        site = site_of(request)
        meter_type = request.path_params["meter_type"]
        t_s, t_e, frequency = await window(request)
        starts = world.periods(site, t_s, t_e)
        consumed = sum((m.per_period(starts, world.seed) for m in site.meters
                        if m.type == meter_type and m.mode == "consumption"),
                       np.zeros(len(starts)))
        produced = sum((m.per_period(starts, world.seed) for m in site.meters
                        if m.type == meter_type and m.mode == "production"),
                       np.zeros(len(starts)))
        own = np.minimum(consumed, produced)
        values = {"conso_total": consumed, "prod_total": produced,
                  "from_ext": consumed - own, "self": own, "to_ext": produced - own}
        return _resample(starts, values, frequency, site.timezone)

    async def sensors_list(request: Request) -> Any:
        site = site_of(request)
        return [{"id": s.id, "name": s.name, "type": s.type, "unit": s.unit,
                 "model": s.model} for s in site.sensors]

    async def sensor_data(request: Request) -> Any:
        site = site_of(request)
        sensor = next((s for s in site.sensors if s.id == request.path_params["sensor_id"]),
                      None)
        if sensor is None:
            raise KeyError("unknown sensor")
        query = request.query_params
        t_s, t_e = _naive_utc(query.get("t_s")), _naive_utc(query.get("t_e"))
        if t_s is None and t_e is None:  # no period: the latest data
            t_s = int(world.data_now()) - 3600
        starts = world.periods(site, t_s, t_e)
        temperature = weather(starts, world.seed, 50 + sensor.index, 3600)["air_temperature"]
        return [{"timestamp": int(t), "value": float(v)}
                for t, v in zip(starts.tolist(), temperature.tolist(), strict=True)]

    return Starlette(routes=[
        Route("/api/v1/auth", auth, methods=["POST"]),
        Route("/api/v1/all_installations", guarded(all_installations), methods=["GET"]),
        Route("/api/v1/installation_infos/{site_id}", guarded(installation_infos),
              methods=["GET"]),
        Route("/api/v1/meter_info/{site_id}", guarded(meter_info), methods=["GET"]),
        Route("/api/v1/site_data/{site_id}/{meter_type}", guarded(site_data),
              methods=["POST"]),
        Route("/api/v1/meter_data/{site_id}/{meter_id}", guarded(meter_data),
              methods=["POST"]),
        Route("/api/v1/meter_data_raw/{site_id}/{meter_id}", guarded(meter_data_raw),
              methods=["POST"]),
        Route("/api/v1/{site_id}/sensors_list", guarded(sensors_list, limited=False),
              methods=["GET"]),
        Route("/api/v1/{site_id}/sensor_data/{sensor_id}", guarded(sensor_data),
              methods=["GET"]),
    ])

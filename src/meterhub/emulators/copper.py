"""Emulator of the Copper Labs Cloud API v2, partner (enterprise) side, and its token service.

Faithful to the seed document and VENDORS.md 5 and 6.6: ``POST /oauth/token`` with the
client-credentials grant (and refresh); ``/api/v2/partner/{enterprise_id}/``: ``premise``
and ``meter`` (offset paging: a full page means more), ``bulk`` and ``grid/latest``
(next-link paging), ``meter/{id}/usage`` (granularity, start, end; ``time`` at the bucket
start in UTC, ``actual`` the raw register, ``value`` = actual / scale, ``usage`` the
consumption in the bucket, ``power`` = usage per hour; trailing buckets past the newest data
are null), ``meter/{id}/readings`` (unsorted), ``meter/{id}/location``, ``grid/readings``;
meter ids with ':'; 100 requests per hour and 1,000 per day per client, 429 beyond;
``Cache-Control: max-age=900`` on usage; the un-normalised ``last_reading`` defect.
"""

from __future__ import annotations

import datetime as dt
import math
import secrets
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

import jwt
import numpy as np
import numpy.typing as npt
import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from meterhub.clock import Clock
from meterhub.emulators.kit import DataHorizon, Fault, Faults, WindowLimit, gateway_error, noise

CLIENT_ID = "copper-enterprise-client"
CLIENT_SECRET = "copper-emulator-secret"
ENTERPRISE = "ent-7f3a"
AUDIENCE = "https://api.copperlabs.com"
QUARTER_S = 900
GRANULARITY_S = {"fifteenminute": 900, "hour": 3600, "bihour": 7200, "day": 86400}
#: meter type -> (native unit, scale of the raw register, typical use per quarter hour)
METER_TYPES = {"power_net": ("kWh", 100, 0.12), "gas": ("ccf", 100, 0.02),
               "water_indoor": ("gal", 1, 3.0)}
_ID_PREFIX = {"power_net": "07:", "gas": "12:", "water_indoor": "IQ:"}


@dataclass
class CopperMeter:
    id: str
    index: int
    type: str
    premise: str
    created: int  #: epoch seconds where data begins (a whole hour)

    @property
    def unit(self) -> str:
        return METER_TYPES[self.type][0]

    @property
    def scale(self) -> int:
        return METER_TYPES[self.type][1]

    def quarters(self, lo: int, hi: int, seed: int) -> npt.NDArray[np.float64]:
        """Use in each quarter hour starting in [lo, hi), in the native unit."""
        t = np.arange(lo, hi, QUARTER_S, dtype=np.int64)
        hour = (t % 86400) / 3600.0
        typical = METER_TYPES[self.type][2]
        shape = 0.6 + 0.8 * np.clip(np.sin((hour - 5) / 24 * 2 * math.pi), 0, None)
        # whole raw-register steps, so that value = actual / scale holds exactly
        steps = np.round(typical * self.scale * shape * (0.5 + noise(t, seed * 31 + self.index,
                                                                     1)))
        return steps / self.scale


@dataclass
class CopperWorld(DataHorizon):
    """The emulated enterprise: premises, meters, clients, limits and counters."""

    clock: Clock
    horizon: float | None = None  #: data stops growing here (None: it never does)
    unlimited: bool = False
    seed: int = 0
    premises: dict[str, dict[str, Any]] = field(default_factory=dict)
    meters: dict[str, CopperMeter] = field(default_factory=dict)
    token_ttl: float = 86400.0
    normalised_last_reading: bool = False  #: False reproduces the documented defect
    faults: Faults = field(default_factory=Faults)
    secret: str = field(default_factory=lambda: secrets.token_hex(16))
    calls: int = 0
    tokens_issued: int = 0
    rejected: int = 0
    revoked: set[str] = field(default_factory=set)  #: ids of tokens that expired early
    lag_s: int = 1800  #: data reaches the cloud half an hour after it is metered

    def __post_init__(self) -> None:
        self.per_hour = WindowLimit(100, 3600.0, self.clock)
        self.per_day = WindowLimit(1000, 86400.0, self.clock)

    @classmethod
    def create(cls, clock: Clock, *, meters: int = 3, days: float = 30, seed: int = 0
               ) -> CopperWorld:
        world = cls(clock=clock, seed=seed)
        created = int(clock.now() - days * 86400)
        created -= created % 3600
        types = list(METER_TYPES)
        for i in range(meters):
            premise = f"prem-{i // 3:04d}"
            world.premises.setdefault(premise, {
                "id": premise, "name": f"Home {i // 3 + 1}",
                "created_at": _iso(created), "street_address": "9120 Rio Blanco St",
                "suite_apartment_unit": "", "city_town": "Littleton", "postal_code": "80125",
                "county_district": "Jefferson", "state_region": "CO", "tags": [],
                "timezone": "America/Denver", "user_list": []})
            kind = types[i % len(types)]
            meter_id = f"{_ID_PREFIX[kind]}{22188666 + i * 7919:010d}"
            world.meters[meter_id] = CopperMeter(meter_id, i, kind, premise, created)
        return world

    def data_end(self) -> int:
        """The end of the newest complete quarter hour the cloud holds."""
        end = int(self.data_now()) - self.lag_s
        return end - end % QUARTER_S

    def register(self, meter: CopperMeter, at: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
        """The normalised register at instants ``at`` (quarter-hour aligned)."""
        if not len(at):
            return np.zeros(0)
        use = meter.quarters(meter.created, int(at.max()), self.seed)
        cumulative = np.r_[0.0, np.cumsum(use)]
        base = 1000.0 + 100 * meter.index
        return np.asarray(np.round(base + cumulative[(at - meter.created) // QUARTER_S], 6),
                          dtype=np.float64)

    def truth(self, meter_id: str, granularity: str = "hour"
              ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
        """Ground truth: starts and usage of every complete bucket the cloud holds now."""
        meter = self.meters[meter_id]
        g = GRANULARITY_S[granularity]
        end = self.data_end()
        starts = np.arange(meter.created, end - g + 1, g, dtype=np.int64)
        edges = self.register(meter, np.r_[starts, starts[-1] + g] if len(starts) else starts)
        return starts, np.round(np.diff(edges), 6)


def _iso(seconds: float) -> str:
    return dt.datetime.fromtimestamp(seconds, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _parse_time(text: str | None) -> int | None:
    if not text:
        return None
    moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return int(moment.timestamp())


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _fault_answer(world: CopperWorld, fault: Fault) -> Response:
    """A scheduled fault's status, in Copper's words (no wait hint unless the fault has
    one: Copper documents none)."""
    status = int(fault.status or 500)
    wait = fault.wait(world.clock.now())
    if status == 429:
        world.rejected += 1
        return JSONResponse({"error": "Too many requests"}, status_code=429,
                            headers={"Retry-After": str(wait)} if wait is not None else None)
    if status == 500:
        return _error(500, "Server error")
    if status > 500:
        return gateway_error(status)
    return _error(status, "Bad request")


def create_app(world: CopperWorld) -> Starlette:
    """The Copper token service and partner API over ``world``."""

    async def token(request: Request) -> Response:
        fault = world.faults.next(request.url.path, world.clock.now())
        await world.faults.stall(fault, world.clock, request.scope)
        if fault.status is not None and fault.status != 401:
            return _fault_answer(world, fault)
        try:
            body = orjson.loads(await request.body())
        except orjson.JSONDecodeError:
            return _error(400, "invalid_request")
        grant = body.get("grant_type")
        if grant == "client_credentials":
            if (body.get("client_id"), body.get("client_secret")) != (
                    CLIENT_ID, CLIENT_SECRET) or fault.status == 401:
                return JSONResponse({"error": "access_denied",
                                     "error_description": "Unauthorized"}, status_code=401)
            if body.get("audience") != AUDIENCE:
                return JSONResponse({"error": "access_denied",
                                     "error_description": "Service not found"},
                                    status_code=403)
        elif grant == "refresh_token":
            try:
                jwt.decode(str(body.get("refresh_token")), world.secret, algorithms=["HS256"],
                           options={"verify_exp": False})
            except jwt.PyJWTError:
                return JSONResponse({"error": "invalid_grant"}, status_code=403)
        else:
            return JSONResponse({"error": "unsupported_grant_type"}, status_code=400)
        world.tokens_issued += 1
        now = world.clock.now()
        access = jwt.encode({"sub": CLIENT_ID, "aud": AUDIENCE, "ent": ENTERPRISE,
                             "exp": int(now + world.token_ttl), "jti": secrets.token_hex(4)},
                            world.secret, algorithm="HS256")
        refresh = jwt.encode({"sub": CLIENT_ID, "kind": "refresh",
                              "jti": secrets.token_hex(4)}, world.secret, algorithm="HS256")
        return world.faults.answer(fault, "token", orjson.dumps({
            "access_token": access, "token_type": "Bearer",
            "expires_in": int(world.token_ttl), "refresh_token": refresh}), "application/json")

    def api(handler: Any) -> Any:
        async def endpoint(request: Request) -> Response:
            world.calls += 1
            fault = world.faults.next(request.url.path, world.clock.now())
            header = request.headers.get("authorization", "")
            try:
                claims = jwt.decode(header.removeprefix("Bearer "), world.secret,
                                    algorithms=["HS256"], audience=AUDIENCE,
                                    options={"verify_exp": False})
            except jwt.PyJWTError:
                return _error(401, "Unauthorized")
            if fault.status == 401:  # the token expired early: it is done
                world.revoked.add(str(claims.get("jti")))
            if claims["exp"] <= world.clock.now() or claims.get("jti") in world.revoked:
                return _error(401, "Token expired")
            if request.path_params.get("eid") != claims["ent"]:
                return _error(403, "Forbidden")
            await world.faults.stall(fault, world.clock, request.scope)
            if fault.status is not None:
                return _fault_answer(world, fault)
            if world.per_hour.retry_in(CLIENT_ID) > 0 or world.per_day.retry_in(CLIENT_ID) > 0:
                world.rejected += 1
                return _error(429, "Too many requests")
            world.per_hour.accept(CLIENT_ID)
            world.per_day.accept(CLIENT_ID)
            meter = None
            if "mid" in request.path_params:
                meter = world.meters.get(unquote(request.path_params["mid"]))
                if meter is None:
                    return _error(404, "Not found")
            try:
                result, headers = await handler(request, meter)
            except (ValueError, KeyError) as exc:
                return _error(400, f"Bad request: {exc}")
            if fault.reorder:  # the records newest first
                rows = result.get("results") if isinstance(result, dict) else result
                if isinstance(rows, list):
                    rows.reverse()
            return world.faults.answer(fault, request.url.path, orjson.dumps(result),
                                       "application/json", headers)

        return endpoint

    def page(request: Request, items: list[Any]) -> list[Any]:
        limit = int(request.query_params.get("limit", 1000))
        offset = int(request.query_params.get("offset", 0))
        return items[offset: offset + limit]

    async def premise(request: Request, _: Any) -> tuple[Any, dict[str, str]]:
        return page(request, list(world.premises.values())), {}

    async def meter_list(request: Request, _: Any) -> tuple[Any, dict[str, str]]:
        end = world.data_end()
        items = []
        for m in world.meters.values():
            value = float(world.register(m, np.array([end], dtype=np.int64))[0])
            items.append({
                "id": m.id, "type": m.type, "premise_id": m.premise,
                "created_at": _iso(m.created),
                "premise_created_at": world.premises[m.premise]["created_at"],
                "uom": m.unit, "state": "connected",
                "last_reading": {"value": value if world.normalised_last_reading
                                 else round(value * m.scale, 3), "hw_timestamp": _iso(end)}})
        return page(request, items), {}

    async def bulk(request: Request, _: Any) -> tuple[Any, dict[str, str]]:
        limit = int(request.query_params.get("limit", 1000))
        offset = int(request.query_params.get("offset", 0))
        end = world.data_end()
        meters = list(world.meters.values())
        results = [{"meter_id": m.id, "meter_type": m.type, "timestamp": _iso(end),
                    "value": float(world.register(m, np.array([end]))[0])}
                   for m in meters[offset: offset + limit]]
        more = offset + limit < len(meters)
        next_link = (f"/api/v2/partner/{ENTERPRISE}/bulk?limit={limit}&offset="
                     f"{offset + limit}") if more else None
        return {"results": results, "next": next_link}, {}

    async def usage(request: Request, meter: CopperMeter) -> tuple[Any, dict[str, str]]:
        query = request.query_params
        g = GRANULARITY_S[query.get("granularity", "hour")]
        lo, hi = _parse_time(query.get("start")), _parse_time(query.get("end"))
        if lo is None or hi is None:
            raise ValueError("start and end are required")
        lo = max(lo - lo % g, meter.created)
        starts = np.arange(lo, hi, g, dtype=np.int64)
        end = world.data_end()
        complete = starts + g <= end
        known = starts[complete]
        edges = world.register(meter, np.r_[known, known[-1] + g] if len(known) else known)
        results: list[dict[str, Any]] = []
        total = 0.0
        for i, start in enumerate(starts.tolist()):
            if complete[i]:
                value = float(edges[i])
                used = round(float(edges[i + 1] - edges[i]), 6)
                results.append({"time": _iso(start), "value": value,
                                "actual": round(value * meter.scale),
                                "power": round(used * 3600 / g, 6), "usage": used})
                total += used
            else:  # past the newest data: trailing null buckets
                results.append({"time": _iso(start), "value": None, "actual": None,
                                "power": None, "usage": None})
        return ({"meter_id": meter.id, "meter_type": meter.type, "sum_usage": round(total, 6),
                 "results": results}, {"Cache-Control": "max-age=900"})

    async def readings(request: Request, meter: CopperMeter) -> tuple[Any, dict[str, str]]:
        lo = _parse_time(request.query_params.get("start")) or meter.created
        hi = _parse_time(request.query_params.get("end")) or world.data_end()
        at = np.arange(max(lo - lo % QUARTER_S, meter.created), min(hi, world.data_end()),
                       QUARTER_S, dtype=np.int64)
        values = world.register(meter, at)
        rows = [{"time": _iso(t), "actual": round(v * meter.scale), "value": float(v)}
                for t, v in zip(at.tolist(), values.tolist(), strict=True)]
        order: list[int] = np.argsort(noise(at, world.seed, 77)).tolist()
        return {"meter_id": meter.id, "meter_type": meter.type,
                "results": [rows[i] for i in order]}, {}  # unsorted, as the cloud sends

    async def location(request: Request, meter: CopperMeter) -> tuple[Any, dict[str, str]]:
        p = world.premises[meter.premise]
        return ({"timezone": p["timezone"], "street_address": p["street_address"],
                 "city_town": p["city_town"], "postal_code": p["postal_code"]},
                {"Cache-Control": "max-age=86400"})

    async def grid_latest(request: Request, _: Any) -> tuple[Any, dict[str, str]]:
        limit = int(request.query_params.get("limit", 1000))
        offset = int(request.query_params.get("offset", 0))
        end = world.data_end()
        gateways = list(enumerate(world.premises))
        results = [{"premise_id": p, "gateway_id": f"84cca8{i:06x}", "hw_timestamp": _iso(end),
                    "voltage": round(240 + 2 * float(noise(np.array([end]), i, 5)[0]), 2),
                    "frequency": 60.0} for i, p in gateways[offset: offset + limit]]
        more = offset + limit < len(gateways)
        next_link = (f"/api/v2/partner/{ENTERPRISE}/grid/latest?limit={limit}&offset="
                     f"{offset + limit}") if more else None
        return {"results": results, "next": next_link}, {}

    async def grid_readings(request: Request, _: Any) -> tuple[Any, dict[str, str]]:
        lo = _parse_time(request.query_params.get("start"))
        hi = _parse_time(request.query_params.get("end"))
        if lo is None or hi is None:
            raise ValueError("start and end are required")
        at = np.arange(lo - lo % 3600, hi, 3600, dtype=np.int64)
        rows = [{"premise_id": p, "gateway_id": f"84cca8{i:06x}", "hw_timestamp": _iso(t),
                 "voltage": round(240 + 2 * float(v), 2), "frequency": 60.0}
                for i, p in enumerate(world.premises)
                for t, v in zip(at.tolist(), noise(at, i, 5).tolist(), strict=True)]
        return rows[::-1], {}

    prefix = "/api/v2/partner/{eid}"
    return Starlette(routes=[
        Route("/oauth/token", token, methods=["POST"]),
        Route(f"{prefix}/premise", api(premise), methods=["GET"]),
        Route(f"{prefix}/meter", api(meter_list), methods=["GET"]),
        Route(f"{prefix}/bulk", api(bulk), methods=["GET"]),
        Route(f"{prefix}/meter/{{mid}}/usage", api(usage), methods=["GET"]),
        Route(f"{prefix}/meter/{{mid}}/readings", api(readings), methods=["GET"]),
        Route(f"{prefix}/meter/{{mid}}/location", api(location), methods=["GET"]),
        Route(f"{prefix}/grid/latest", api(grid_latest), methods=["GET"]),
        Route(f"{prefix}/grid/readings", api(grid_readings), methods=["GET"]),
    ])

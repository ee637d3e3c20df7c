"""Emulator of METER ZENTRA Cloud API v4 (as TAHMO runs it): ``GET /api/v4/get_readings/``.

Faithful to the seed document and VENDORS.md 1 and 6.1: ``Authorization: Token ...``;
``device_sn``; ``start_date``/``end_date`` as ``YYYY-MM-DD HH:MM:SS`` in station local time
(they override mrids; any other form is a 400) or ``start_mrid``/``end_mrid``;
``per_page`` (default 500, at most 2000), 1-based ``page_num``; ``sort_by`` (default
descending); ``output_format`` json, csv or df; data grouped by measurement and port with
metadata units in the account's unit preference; 60 calls per minute per token and 1 per
minute per device, answered with 429 and "Lock out expires in NN seconds"; records younger
than 5 minutes hidden; sensor errors as error-flagged readings with a null value;
measurement sets that differ between devices.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import numpy as np
import numpy.typing as npt
import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from meterhub.clock import Clock
from meterhub.emulators.kit import (
    DataHorizon,
    Fault,
    Faults,
    WindowLimit,
    gateway_error,
    is_sensor_error,
    weather,
)

INTERVAL_S = 300
LAG_S = 300  #: readings younger than this are not served yet

_IDENTITY: Callable[[Any], Any] = lambda v: v  # noqa: E731


@dataclass(frozen=True, slots=True)
class Measurement:
    name: str
    key: str  #: key in `kit.weather`
    port: int
    precision: int
    metric: str
    imperial: str
    to_imperial: Callable[[Any], Any] = _IDENTITY


MEASUREMENTS = (
    Measurement("Air Temperature", "air_temperature", 1, 1, " °C", " °F",
                lambda v: v * 9 / 5 + 32),
    Measurement("Vapor Pressure", "vapor_pressure", 1, 2, " kPa", " inHg",
                lambda v: v * 0.2952998),
    Measurement("Atmospheric Pressure", "atmospheric_pressure", 1, 2, " kPa", " inHg",
                lambda v: v * 0.2952998),
    Measurement("Solar Radiation", "solar_radiation", 1, 0, " W/m²", " W/m²"),
    Measurement("Wind Speed", "wind_speed", 1, 2, " m/s", " mph", lambda v: v * 2.2369363),
    Measurement("Gust Speed", "gust_speed", 1, 2, " m/s", " mph", lambda v: v * 2.2369363),
    Measurement("Wind Direction", "wind_direction", 1, 0, " °", " °"),
    Measurement("Precipitation", "precipitation", 1, 3, " mm", " in", lambda v: v / 25.4),
    Measurement("Battery Percent", "battery_percent", 7, 0, " %", " %"),
)
TZ_OFFSETS = (10800, 0, 3600, 7200)  # Nairobi, Accra, Lagos, Johannesburg: no DST


@dataclass
class ZentraDevice:
    sn: str
    index: int
    first: int  #: epoch seconds of mrid 1
    tz_offset: int
    measurements: tuple[Measurement, ...]

    def last_index(self, now: float) -> int:
        """0-based index of the newest record served at ``now`` (-1: none yet)."""
        return math.floor((now - LAG_S - self.first) / INTERVAL_S)


@dataclass
class ZentraWorld(DataHorizon):
    """The emulated account: devices, token, unit preference, limits and counters."""

    clock: Clock
    horizon: float | None = None  #: data stops growing here (None: it never does)
    unlimited: bool = False
    token: str = "emulator-token"
    seed: int = 0
    devices: dict[str, ZentraDevice] = field(default_factory=dict)
    imperial: bool = False
    faults: Faults = field(default_factory=Faults)
    calls: int = 0
    rejected: int = 0  #: 429 answers

    def __post_init__(self) -> None:
        self.per_token = WindowLimit(60, 60.0, self.clock)
        self.per_device = WindowLimit(1, 60.0, self.clock)

    @classmethod
    def create(cls, clock: Clock, *, devices: int = 3, days: float = 7, seed: int = 0,
               token: str = "emulator-token", imperial: bool = False) -> ZentraWorld:
        world = cls(clock=clock, token=token, seed=seed, imperial=imperial)
        start = int(clock.now() - days * 86400)
        start -= start % INTERVAL_S
        for i in range(devices):
            names = [m for m in MEASUREMENTS
                     if not (i % 2 == 1 and m.key in ("solar_radiation", "gust_speed"))
                     and not (i % 2 == 0 and m.key == "battery_percent")]
            sn = f"z6-{10001 + i:05d}"
            world.devices[sn] = ZentraDevice(sn, i, start, TZ_OFFSETS[i % len(TZ_OFFSETS)],
                                             tuple(names))
        return world

    def records(self, sn: str) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """Ground truth: UTC epoch seconds and mrids of every record served now."""
        device = self.devices[sn]
        k = np.arange(device.last_index(self.data_now()) + 1, dtype=np.int64)
        return device.first + k * INTERVAL_S, k + 1

    def values(self, device: ZentraDevice, t: npt.NDArray[np.int64]
               ) -> dict[str, tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_]]]:
        """Per measurement: values in the account's units and the error flags."""
        metric = weather(t, self.seed, device.index, device.tz_offset)
        broken = is_sensor_error(t, self.seed, device.index)
        out = {}
        for m in device.measurements:
            values = metric[m.key]
            if self.imperial:
                values = np.round(m.to_imperial(values), max(m.precision, 2))
            flags = broken if m.key == "air_temperature" else np.zeros(len(t), dtype=bool)
            out[m.name] = (values, flags)
        return out


def _detail(status: int, text: str, **headers: str) -> JSONResponse:
    return JSONResponse({"detail": text}, status_code=status, headers=headers)


def _fault_answer(world: ZentraWorld, fault: Fault) -> Response:
    """A scheduled fault's status, as ZENTRA (a Django REST framework app) answers it."""
    status = int(fault.status or 500)
    wait = fault.wait(world.clock.now())
    if status == 429:
        world.rejected += 1
        if wait is None:  # a throttle that names no wait
            return _detail(429, "Request was throttled.")
        return _detail(429, f"Request was throttled. Lock out expires in {wait:02d} seconds.",
                       **{"Retry-After": str(wait)})
    if status == 503:
        return Response("Service Unavailable", status_code=503,
                        headers={"Retry-After": str(wait)} if wait is not None else None)
    if status >= 500:
        return gateway_error(status)
    return _detail(status, "Error.")


def _local_strings(t: npt.NDArray[np.int64], offset: int) -> list[str]:
    stamps = np.datetime_as_string((t + offset).astype("datetime64[s]"), unit="s")
    sign = "+" if offset >= 0 else "-"
    suffix = f"{sign}{abs(offset) // 3600:02d}:{abs(offset) % 3600 // 60:02d}"
    return [s.replace("T", " ") + suffix for s in stamps.tolist()]


_DATE = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}")


def _parse_local(name: str, text: str, offset: int) -> int:
    """Epoch seconds of a start_date/end_date given in the station's local time.

    Only the seed's format (``"2024-04-01 00:00:00"``) is taken: VENDORS.md 1.3 cites a
    page allowing ``HH:MM`` too, but a client sending the seed's format works on both, and
    a bare date or ISO ``T``/``Z`` form must fail here as loudly as it may there.
    """
    try:
        if not _DATE.fullmatch(text):
            raise ValueError
        moment = dt.datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=dt.UTC)
    except ValueError:
        raise ValueError(f"{name} {text!r} is not a date and time of the form "
                         "YYYY-MM-DD HH:MM:SS (station local time)") from None
    return int(moment.timestamp()) - offset


def create_app(world: ZentraWorld) -> Starlette:
    """The ZENTRA v4 ASGI app over ``world``."""

    async def get_readings(request: Request) -> Response:
        world.calls += 1
        fault = world.faults.next(request.url.path, world.clock.now())
        await world.faults.stall(fault, world.clock, request.scope)
        auth = request.headers.get("authorization", "")
        if auth != f"Token {world.token}" or fault.status == 401:
            return _detail(401, "Invalid token.")
        if fault.status is not None:
            return _fault_answer(world, fault)
        query = request.query_params
        sn = query.get("device_sn")
        if not sn:
            return _detail(400, "device_sn is required.")
        device = world.devices.get(sn)
        if device is None:
            return _detail(404, f"Device {sn} not found.")
        for limit, key, text in ((world.per_device, sn, "1 call per 60 seconds"),
                                 (world.per_token, world.token, "60 calls per 60 seconds")):
            wait = limit.retry_in(key)
            if wait > 0:
                world.rejected += 1
                seconds = max(1, math.ceil(wait))
                return _detail(429, f"Exceeded request limit of {text}. Lock out expires in "
                                    f"{seconds:02d} seconds.", **{"Retry-After": str(seconds)})
        world.per_device.accept(sn)
        world.per_token.accept(world.token)
        try:
            per_page = min(int(query.get("per_page", 500)), 2000)
            page_num = int(query.get("page_num", 1))
            if per_page < 1 or page_num < 1:
                raise ValueError("per_page and page_num start at 1")
            last = device.last_index(world.data_now())
            if query.get("start_date") or query.get("end_date"):
                lo_t = (_parse_local("start_date", query["start_date"], device.tz_offset)
                        if query.get("start_date") else device.first)
                hi_t = (_parse_local("end_date", query["end_date"], device.tz_offset)
                        if query.get("end_date") else device.first + last * INTERVAL_S)
                lo = max(0, math.ceil((lo_t - device.first) / INTERVAL_S))
                hi = min(last, math.floor((hi_t - device.first) / INTERVAL_S))
            else:
                lo = max(0, int(query.get("start_mrid", 1)) - 1)
                hi = min(last, int(query.get("end_mrid", last + 1)) - 1)
        except (ValueError, KeyError) as exc:
            return _detail(400, f"Invalid parameters: {exc}")
        descending = query.get("sort_by", "descending").lower() in ("descending", "desc")
        fmt = query.get("output_format", "json").lower()
        k = np.arange(lo, hi + 1, dtype=np.int64) if hi >= lo else np.zeros(0, np.int64)
        if descending:
            k = k[::-1]
        page = k[(page_num - 1) * per_page: page_num * per_page]
        more = page_num * per_page < len(k)
        body = _page(world, device, page, last, more, request, page_num)
        if fmt == "csv":
            return Response(_csv(body), media_type="text/csv")
        if fmt == "df":
            body["data"] = _frame_json(body["data"])
        if fault.reorder:  # the records of each series newest first, whatever was asked
            for groups in body["data"].values():
                for group in groups:
                    group["readings"].reverse()
        return world.faults.answer(fault, sn, orjson.dumps(body), "application/json")

    async def documentation(request: Request) -> Response:
        return HTMLResponse("<html><body><h1>ZENTRA Cloud API v4 (emulator)</h1>"
                            "<p>GET /api/v4/get_readings/</p></body></html>")

    return Starlette(routes=[
        Route("/api/v4/get_readings/", get_readings, methods=["GET"]),
        Route("/api/v4/documentation/", documentation, methods=["GET"]),
    ])


def _page(world: ZentraWorld, device: ZentraDevice, k: npt.NDArray[np.int64], last: int,
          more: bool, request: Request, page_num: int) -> dict[str, Any]:
    t = device.first + k * INTERVAL_S
    mrid = k + 1
    local = _local_strings(t, device.tz_offset)
    next_url = None
    if more:
        params = dict(request.query_params)
        params["page_num"] = str(page_num + 1)
        next_url = f"{request.url.scheme}://{request.url.netloc}{request.url.path}?" \
                   f"{urlencode(params)}"
    pagination = {
        "page_num_readings": len(k),
        "page_start_date": local[0] if len(k) else None,
        "page_end_date": local[-1] if len(k) else None,
        "page_start_mrid": int(mrid[0]) if len(k) else None,
        "page_end_mrid": int(mrid[-1]) if len(k) else None,
        "max_mrid": last + 1,
        "next_url": next_url,
    }
    data: dict[str, Any] = {}
    if len(k):
        t_list, mrid_list = t.tolist(), mrid.tolist()
        series = world.values(device, t)
        for m in device.measurements:
            values, flags = series[m.name]
            readings = [
                {"datetime": local[i], "timestamp_utc": t_list[i],
                 "tz_offset": device.tz_offset, "mrid": mrid_list[i],
                 "value": None if flag else value, "precision": m.precision,
                 "error_flag": flag, "error_description": "Sensor Error" if flag else ""}
                for i, (value, flag) in enumerate(zip(values.tolist(), flags.tolist(),
                                                      strict=True))]
            data[m.name] = [{
                "metadata": {"device_name": f"TA{device.index:05d}", "device_sn": device.sn,
                             "port_number": m.port,
                             "sensor_name": "ATMOS 41" if m.port == 1 else "Logger",
                             "units": m.imperial if world.imperial else m.metric,
                             "depth": "Not Set"},
                "readings": readings}]
    return {"pagination": pagination, "data": data}


def _rows(data: dict[str, Any]) -> list[list[Any]]:
    rows = []
    for name, groups in data.items():
        for group in groups:
            meta = group["metadata"]
            for r in group["readings"]:
                rows.append([r["timestamp_utc"], r["datetime"], r["mrid"], name,
                             meta["port_number"], r["value"], meta["units"].strip(),
                             r["error_flag"]])
    return rows


_COLUMNS = ["timestamp_utc", "datetime", "mrid", "measurement", "port", "value", "units",
            "error_flag"]


def _csv(body: dict[str, Any]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(_COLUMNS)
    writer.writerows(_rows(body["data"]))
    return out.getvalue()


def _frame_json(data: dict[str, Any]) -> str:
    """``output_format=df``: a pandas frame in split orientation, as a JSON string."""
    rows = _rows(data)
    return orjson.dumps({"columns": _COLUMNS, "index": list(range(len(rows))),
                         "data": rows}).decode()


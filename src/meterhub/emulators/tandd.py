"""Emulator of the T&D WebStorage Service API: ``current``, ``latest-data`` and ``data``.

Faithful to the seed document and VENDORS.md 2 and 6.3: every call is a POST with
``X-HTTP-Method-Override: GET`` and credentials in the JSON body; errors are
``{"error":{"code","message"}}`` with the documented codes; ``X-RateLimit-Limit``,
``-Reset``, ``-Remaining`` and ``-Remaining-DataCount`` on every answer; ``data`` allows 20
calls a minute per account and 160,000 readings an hour per device, returns at most
``number`` (default 16,000, capped at 65,535) readings, keeping the newest, in ascending
order; values are strings as observed, error tokens such as "Sensor Error" stand in for
values; ``temperature-unit`` C/F; data-id continuity with a gap and a reset; ``type`` json,
csv or csv2 with the three header rows of T&D Graph.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from meterhub.clock import Clock
from meterhub.emulators.kit import (
    DataHorizon,
    Faults,
    WindowLimit,
    gateway_error,
    is_sensor_error,
    logger,
)

INTERVAL_S = 600
API_KEY = "73pfobnche8d1p6laqnemsbnpkght3bjv047oid6p2sg3"  # the seed's example key
LOGIN_ID = "tbzz9999"
LOGIN_PASS = "ppaasswwoorrdd"
MAX_NUMBER = 65_535
DEFAULT_NUMBER = 16_000
DATA_BUDGET = 160_000  #: readings per device per rolling hour
ERRORS = {
    400: "The requested contents contain a format error.",
    401: "Authentication information error.",
    403: "Please communicate via HTTPS.",
    415: "Requested content cannot be handled using JSON format.",
    429: "Usage limit for the API has been exceeded.",
    503: "Server is having trouble processing.",
}
#: endpoint -> (calls, period seconds)
ENDPOINT_LIMITS = {"current": (10, 120.0), "latest-data": (60, 60.0), "data": (20, 60.0)}


@dataclass
class Logger:
    serial: str
    index: int
    model: str
    channels: tuple[tuple[str, str], ...]  #: (name, unit) per channel
    first: int  #: unixtime of the first stored reading
    time_diff: int = 540  #: minutes east of UTC
    dst_bias: int = 0
    gap: tuple[int, int] | None = None  #: record indexes lost in transit (data-id skips)
    reset_at: int | None = None  #: record index where data-id restarts at 1
    capacity: int = 80_000

    def count(self, now: float) -> int:
        return max(0, math.floor((now - self.first) / INTERVAL_S) + 1)


@dataclass
class TanddWorld(DataHorizon):
    """The emulated account."""

    clock: Clock
    horizon: float | None = None  #: data stops growing here (None: it never does)
    unlimited: bool = False
    seed: int = 0
    loggers: dict[str, Logger] = field(default_factory=dict)
    observed: bool = True  #: values as strings and time_diff keys, as captured in the wild
    require_https: bool = False  #: answer 403 to plain HTTP, as the real service does
    faults: Faults = field(default_factory=Faults)
    calls: int = 0
    rejected: int = 0
    readings_served: int = 0

    def __post_init__(self) -> None:
        self.limits = {name: WindowLimit(calls, period, self.clock)
                       for name, (calls, period) in ENDPOINT_LIMITS.items()}
        self.budget: dict[str, list[tuple[float, int]]] = {}

    @classmethod
    def create(cls, clock: Clock, *, devices: int = 3, days: float = 7, seed: int = 0
               ) -> TanddWorld:
        world = cls(clock=clock, seed=seed)
        start = int(clock.now() - days * 86400)
        start -= start % INTERVAL_S
        n = int(days * 86400 / INTERVAL_S)
        for i in range(devices):
            two = i % 3 != 2
            world.loggers[f"5212{i + 1:04d}"] = Logger(
                serial=f"5212{i + 1:04d}", index=i, model="TR-72wf" if two else "TR-71wf",
                channels=(("temp", "C"), ("humid", "%")) if two else (("Temp", "C"),),
                first=start,
                gap=(n // 3, n // 3 + 6) if i % 3 == 1 else None,
                reset_at=n // 2 if i % 3 == 2 else None)
        return world

    def records(self, serial: str) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """Ground truth of stored readings: unixtime and data-id, ascending."""
        dev = self.loggers[serial]
        k = np.arange(dev.count(self.data_now()), dtype=np.int64)
        ids = k + 1
        if dev.gap is not None:
            lo, hi = dev.gap
            k = k[(k < lo) | (k >= hi)]
            ids = k + 1
        if dev.reset_at is not None:
            ids = np.where(k >= dev.reset_at, k - dev.reset_at + 1, ids)
        t = dev.first + k * INTERVAL_S
        return t[-dev.capacity:], ids[-dev.capacity:]

    def values(self, dev: Logger, t: npt.NDArray[np.int64], fahrenheit: bool
               ) -> list[list[str]]:
        """Per channel, the value strings (error tokens where the sensor failed)."""
        series = logger(t, self.seed, dev.index)
        broken = is_sensor_error(t, self.seed, dev.index)
        out = []
        for _, unit in dev.channels:
            if unit == "%":
                out.append([f"{v:.0f}" for v in series["relative_humidity"].tolist()])
                continue
            temp = series["temperature"]
            if fahrenheit:
                temp = np.round(temp * 9 / 5 + 32, 1)
            text = [f"{v:.1f}" for v in temp.tolist()]
            out.append(["Sensor Error" if b else v for v, b in zip(text, broken.tolist(),
                                                                   strict=True)])
        return out

    def data_left(self, serial: str) -> int:
        now = self.clock.now()
        window = [(at, n) for at, n in self.budget.get(serial, []) if at + 3600 > now]
        self.budget[serial] = window
        return DATA_BUDGET - sum(n for _, n in window)


def _error(status: int, headers: dict[str, str]) -> JSONResponse:
    return JSONResponse({"error": {"code": status, "message": ERRORS[status]}},
                        status_code=status, headers=headers,
                        media_type="application/json; charset=utf-8")


def create_app(world: TanddWorld) -> Starlette:
    """The WebStorage ASGI app over ``world``."""

    def endpoint(name: str) -> Callable[[Request], Any]:
        async def handle(request: Request) -> Response:
            world.calls += 1
            limit = world.limits[name]
            key = "account"
            serial = None
            headers = {"X-RateLimit-Limit": str(limit.calls),
                       "X-RateLimit-Reset": str(int(limit.period))}

            def finish(response: Response) -> Response:
                response.headers["X-RateLimit-Remaining"] = str(limit.remaining(key))
                response.headers["X-RateLimit-Remaining-DataCount"] = str(
                    world.data_left(serial) if serial and name == "data" else 0)
                response.headers.update(headers)
                return response

            fault = world.faults.next(request.url.path, world.clock.now())
            await world.faults.stall(fault, world.clock, request.scope)
            wait = fault.wait(world.clock.now())
            if fault.status is not None and fault.status >= 500:
                if fault.status != 503:  # one T&D does not document: a gateway's
                    return finish(gateway_error(fault.status))
                return finish(_error(503, {"Retry-After": str(wait)} if wait else {}))
            if world.require_https and request.url.scheme != "https":
                return finish(_error(403, {}))
            if request.headers.get("x-http-method-override", "").upper() != "GET":
                return finish(_error(400, {}))
            try:
                body = orjson.loads(await request.body())
                if not isinstance(body, dict):
                    raise ValueError("not an object")
            except (orjson.JSONDecodeError, ValueError):
                return finish(_error(415, {}))
            if (body.get("api-key"), body.get("login-id"), body.get("login-pass")) != (
                    API_KEY, LOGIN_ID, LOGIN_PASS) or fault.status == 401:
                return finish(_error(401, {}))
            key = f"{API_KEY}:{LOGIN_ID}"
            if fault.status == 429:
                world.rejected += 1
                return finish(_error(429, {"Retry-After": str(wait)} if wait else {}))
            if fault.status is not None:
                return finish(_error(fault.status if fault.status in ERRORS else 400, {}))
            if limit.retry_in(key) > 0:
                world.rejected += 1
                return finish(_error(429, {}))
            if name == "current":
                limit.accept(key)
                return finish(JSONResponse(_current(world, body)))
            serial = body.get("remote-serial")
            if not isinstance(serial, str) or serial not in world.loggers:
                return finish(_error(400, {}))
            try:
                number = DEFAULT_NUMBER if name == "data" else 300
                if name == "data" and body.get("number") is not None:
                    number = min(int(body["number"]), MAX_NUMBER)
                lo = int(body["unixtime-from"]) if body.get("unixtime-from") is not None \
                    else None
                hi = int(body["unixtime-to"]) if body.get("unixtime-to") is not None \
                    else int(world.data_now())
                unit = str(body.get("temperature-unit", "device"))
                fmt = str(body.get("type", "json"))
                if number < 1 or unit not in ("device", "C", "F") or \
                        fmt not in ("json", "csv", "csv2"):
                    raise ValueError
            except (TypeError, ValueError):
                return finish(_error(400, {}))
            t, ids = world.records(serial)
            keep = t <= hi
            if lo is not None:
                keep &= t >= lo
            t, ids = t[keep][-number:], ids[keep][-number:]
            if name == "data":
                if world.data_left(serial) < len(t) and not world.unlimited:
                    world.rejected += 1
                    return finish(_error(429, {}))
                world.budget.setdefault(serial, []).append((world.clock.now(), len(t)))
            limit.accept(key)
            world.readings_served += len(t)
            dev = world.loggers[serial]
            values = world.values(dev, t, fahrenheit=unit == "F")
            units = [("F" if unit == "F" else "C") if u in ("C", "F") else u
                     for _, u in dev.channels]
            if fmt in ("csv", "csv2"):
                return finish(Response(_csv(dev, t, values, units),
                                       media_type="text/csv; charset=utf-8"))
            payload = _json(world, dev, t, ids, values, units)
            if fault.reorder:  # newest first, not the documented ascending order
                payload["data"].reverse()
            return finish(world.faults.answer(fault, f"{name}:{serial}", orjson.dumps(payload),
                                              "application/json; charset=utf-8"))

        return handle

    return Starlette(routes=[
        Route(f"/v1/devices/{name}", endpoint(name), methods=["POST"])
        for name in ENDPOINT_LIMITS])


def _scalar(world: TanddWorld, value: int) -> Any:
    return str(value) if world.observed else value


def _json(world: TanddWorld, dev: Logger, t: npt.NDArray[np.int64],
          ids: npt.NDArray[np.int64], values: list[list[str]], units: list[str]
          ) -> dict[str, Any]:
    s = world.observed
    base = 1 if s else 0
    rows = []
    for i, (unixtime, data_id) in enumerate(zip(t.tolist(), ids.tolist(), strict=True)):
        row: dict[str, Any] = {"unixtime": _scalar(world, unixtime),
                               "data-id": _scalar(world, data_id)}
        for c, column in enumerate(values):
            text = column[i]
            row[f"ch{c + 1}"] = text if s or not _numeric(text) else float(text)
        rows.append(row)
    sep = "_" if s else "-"
    return {
        "serial": dev.serial, "model": dev.model, "name": f"logger {dev.index + 1}",
        f"time{sep}diff": _scalar(world, dev.time_diff),
        f"std{sep}bias": _scalar(world, 0), f"dst{sep}bias": _scalar(world, dev.dst_bias),
        "channel": [{"name": name, "num": _scalar(world, c + base), "unit": units[c]}
                    for c, (name, _) in enumerate(dev.channels)],
        "data": rows,
    }


def _numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _csv(dev: Logger, t: npt.NDArray[np.int64], values: list[list[str]],
         units: list[str]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, quoting=csv.QUOTE_ALL, lineterminator="\r\n")
    offset = dev.time_diff * 60 + dev.dst_bias * 60
    hours, minutes = divmod(abs(dev.time_diff), 60)
    sign = "+" if dev.time_diff >= 0 else "-"
    writer.writerow(["Date/Time", "Date/Time", *[f"No.{c + 1}" for c in range(len(values))]])
    writer.writerow([f"time difference:GMT{sign}{hours}:{minutes:02d}/daylight savings time:"
                     f"{'on' if dev.dst_bias else 'off'}", "date as serial value(Excel)",
                     *[name for name, _ in dev.channels]])
    writer.writerow(["", "", *units])
    local = np.datetime_as_string((t + offset).astype("datetime64[s]"), unit="s")
    serial = (t + offset) / 86400 + 25569  # days since 1899-12-30
    for i, stamp in enumerate(local.tolist()):
        writer.writerow([stamp.replace("T", " "), f"{serial[i]:.9f}".rstrip("0"),
                         *[column[i] for column in values]])
    return out.getvalue()


def _current(world: TanddWorld, body: dict[str, Any]) -> dict[str, Any]:
    wanted = body.get("remote-serial")
    devices = []
    for num, dev in enumerate(world.loggers.values(), start=1):
        if isinstance(wanted, list) and dev.serial not in wanted:
            continue
        t, _ = world.records(dev.serial)
        if not len(t):
            continue
        values = world.values(dev, t[-1:], fahrenheit=False)
        devices.append({
            "num": str(num), "serial": dev.serial, "model": dev.model,
            "name": f"logger {dev.index + 1}", "battery": "5", "rssi": "",
            "time_diff": str(dev.time_diff), "std_bias": "0", "dst_bias": str(dev.dst_bias),
            "unixtime": str(int(t[-1])),
            "channel": [{"num": str(c + 1), "name": name, "value": values[c][0],
                         "unit": unit} for c, (name, unit) in enumerate(dev.channels)],
            "group": {"num": "0", "name": "Lab"}})
    return {"devices": devices}

"""What every vendor emulator shares: synthetic devices, exact rolling limits, faults.

Synthetic values are pure functions of (seed, device, time), so any window of any device
can be produced on demand, identical on every request and in the tests' ground truth.

Faults (`Faults`, `Fault`): every emulator world has a ``faults`` schedule, and each
request takes what is due for it (a 429 or 5xx, a stall, a body cut short or a connection
dropped mid-body, the previous page again, records out of order, a token that expired),
answered in the vendor's own words. `EmulatorTransport` brings httpx to an emulator
in-process with the client's time-outs on the emulator's clock and dropped connections as
the client would see them; `FaultInjector` puts the same schedule in front of any other
ASGI app.
"""

from __future__ import annotations

import asyncio
import collections
import math
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np
import numpy.typing as npt
import orjson
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from meterhub.clock import Clock

Floats = npt.NDArray[np.float64]


def noise(t: npt.NDArray[np.int64], seed: int, salt: int) -> Floats:
    """Deterministic pseudo-noise in [0, 1) per timestamp (a hash, not a random state)."""
    x = (t.astype(np.uint64) * np.uint64(2654435761) + np.uint64(seed * 97 + salt * 7919)
         ) % np.uint64(2**32)
    x ^= x >> np.uint64(13)
    x = (x * np.uint64(1274126177)) % np.uint64(2**32)
    return np.asarray(x.astype(np.float64) / 2**32, dtype=np.float64)


def weather(t: npt.NDArray[np.int64], seed: int, device: int,
            tz_offset_s: int = 0) -> dict[str, Floats]:
    """A weather station's readings at epoch seconds ``t``, in metric units.

    Keys: air_temperature (°C), relative_humidity (%), vapor_pressure (kPa),
    atmospheric_pressure (kPa), solar_radiation (W/m²), wind_speed, gust_speed (m/s),
    wind_direction (°), precipitation (mm per interval).
    """
    local_hour = ((t + tz_offset_s) % 86400) / 3600.0
    day = (t // 86400).astype(np.float64)
    salt = seed * 1000 + device
    diurnal = np.sin((local_hour - 9.0) / 24.0 * 2 * math.pi)
    season = np.sin(day / 365.25 * 2 * math.pi + device)
    temp = 22 + 3 * season + 6 * diurnal + 2 * (noise(t // 3600, salt, 1) - 0.5)
    rh = np.clip(65 - 20 * diurnal + 10 * (noise(t // 1800, salt, 2) - 0.5), 5, 100)
    saturation = 0.6108 * np.exp(17.27 * temp / (temp + 237.3))
    sun = np.clip(np.sin((local_hour - 6.0) / 12.0 * math.pi), 0, None)
    rain = np.where(noise(t, salt, 3) < 0.03, np.round(noise(t, salt, 4) * 2.5, 3), 0.0)
    wind = np.round(1.5 + 2.5 * noise(t // 600, salt, 5) + 1.0 * sun, 2)
    return {
        "air_temperature": np.round(temp, 2),
        "relative_humidity": np.round(rh, 1),
        "vapor_pressure": np.round(saturation * rh / 100, 3),
        "atmospheric_pressure": np.round(88.5 + 0.4 * season + 0.2 * noise(t // 3600,
                                                                             salt, 6), 2),
        "solar_radiation": np.round(950 * sun * (0.7 + 0.3 * noise(t // 900, salt, 7)), 0),
        "wind_speed": wind,
        "gust_speed": np.round(wind * (1.3 + 0.4 * noise(t, salt, 8)), 2),
        "wind_direction": np.round(360 * noise(t // 3600, salt, 9), 0),
        "precipitation": rain,
        "battery_percent": np.round(100 - 20 * noise(t // 86400, salt, 10), 0),
    }


def logger(t: npt.NDArray[np.int64], seed: int, device: int) -> dict[str, Floats]:
    """A temperature/humidity data logger (cold room or greenhouse)."""
    salt = seed * 1000 + device
    hour = (t % 86400) / 3600.0
    temp = 4.0 + 1.5 * np.sin(hour / 24 * 2 * math.pi) + (noise(t, salt, 11) - 0.5)
    rh = np.clip(55 + 10 * np.sin(hour / 24 * 2 * math.pi + 1) + 4 * (noise(t, salt, 12)
                                                                         - 0.5), 0, 100)
    return {"temperature": np.round(temp, 1), "relative_humidity": np.round(rh, 0)}


def is_sensor_error(t: npt.NDArray[np.int64], seed: int, device: int,
                    rate: float = 0.002) -> npt.NDArray[np.bool_]:
    """Which readings a sensor fails on: rare, deterministic."""
    return np.asarray(noise(t, seed * 1000 + device, 13) < rate)


@dataclass
class WindowLimit:
    """Exactly ``calls`` accepted requests per rolling ``period`` seconds, per key."""

    calls: int
    period: float
    clock: Clock
    _accepted: dict[str, collections.deque[float]] = field(default_factory=dict)
    enabled: bool = True  #: off only for tests that restart clients at will (crash tests)

    def retry_in(self, key: str) -> float:
        """0 when a request for ``key`` is allowed now, else seconds until it is."""
        if not self.enabled:
            return 0.0
        now = self.clock.now()
        window = self._accepted.setdefault(key, collections.deque())
        while window and window[0] + self.period <= now:
            window.popleft()
        if len(window) < self.calls:
            return 0.0
        return window[0] + self.period - now

    def remaining(self, key: str) -> int:
        self.retry_in(key)  # drops entries that left the window
        return max(0, self.calls - len(self._accepted.get(key, ())))

    def accept(self, key: str) -> None:
        self._accepted.setdefault(key, collections.deque()).append(self.clock.now())


READ_TIMEOUT = "meterhub.read_timeout"  #: scope extension: seconds the in-process client waits
GATEWAY_TEXT = {500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable",
                504: "Gateway Time-out"}


class ClientGaveUp(Exception):
    """An emulator's answer stalled past the in-process client's read timeout;
    `EmulatorTransport` turns it into that client's `httpx.ReadTimeout`."""


@dataclass
class Fault:
    """One scheduled misbehaviour; see `Faults.schedule`.

    Each emulator answers a ``status`` in its vendor's own words: a 429 with the vendor's
    throttle body (and its rate-limit headers), a 5xx the vendor documents with its error
    body, any other 5xx as the HTML page of a gateway in front of it, a 401 as its answer
    to a token that expired (vendors with tokens also revoke the token presented, so it
    never works again) or to credentials refused (vendors without).
    """

    status: int | None = None  #: answer this status instead of the data
    #: with a 429 or 503, the wait to tell the client (Retry-After, and the vendor's own
    #: wording where it has one); with ``until``, the seconds left until then. None: no hint
    retry_after: float | None = None
    stall: float = 0.0  #: answer only after this many seconds on the emulator's clock
    cut: float | None = None  #: send only this share of the body (a JSON text cut short)
    close: bool = False  #: with ``cut``: announce the whole body, then drop the connection
    duplicate: bool = False  #: the previous answer's body on the same resource again
    reorder: bool = False  #: the answer's records in reverse order
    path: str = ""  #: only requests whose path contains this
    after: int = 0  #: let this many matching requests pass first
    times: int | None = 1  #: misbehave this many times; None: until ``until`` or cleared
    until: float | None = None  #: misbehave until this time on the emulator's clock
    hits: int = 0  #: requests this fault has hit so far

    def wait(self, now: float) -> int | None:
        """Whole seconds to tell the client to wait, if this fault tells it at all."""
        if self.retry_after is None:
            return None
        seconds = self.until - now if self.until is not None else self.retry_after
        return max(1, math.ceil(seconds))


@dataclass
class Faults:
    """Misbehaviour on demand, the same for every emulator.

    `schedule` queues `Fault` s; each request takes the first one still due whose ``path``
    it matches (`next`), and the emulator answers it as its vendor would. The counters are
    shorthands the first tests use, each making that many upcoming requests misbehave:
    ``rate_limited`` a 429 without a wait hint, ``server_errors`` a 503, ``truncated`` half
    the body, ``duplicated`` the previous body again; ``slow_seconds`` stalls every answer.

    A stall longer than the client's read timeout ends, through `EmulatorTransport`, in the
    client's time-out after exactly that long on the emulator's clock; a ``close`` reaches
    it as a connection closed mid-body. Over a real server (``meterhub emulate``) both
    happen on the network itself.
    """

    rate_limited: int = 0  #: answer 429 regardless of the real limits
    server_errors: int = 0  #: answer 503
    truncated: int = 0  #: answer 200 with the body cut in half
    duplicated: int = 0  #: answer 200 with the previous answer's body again
    slow_seconds: float = 0.0  #: delay every answer by this much (on the emulator's clock)
    scheduled: list[Fault] = field(default_factory=list)
    _bodies: dict[str, bytes] = field(default_factory=dict, repr=False)

    def schedule(self, *faults: Fault) -> None:
        """Queue faults; earlier ones take precedence for a request both match."""
        self.scheduled.extend(faults)

    def clear(self) -> None:
        """No more misbehaviour: scheduled faults and the counters are dropped."""
        self.scheduled.clear()
        self.rate_limited = self.server_errors = self.truncated = self.duplicated = 0
        self.slow_seconds = 0.0

    def next(self, path: str, now: float) -> Fault:
        """What a request for ``path`` arriving at ``now`` meets (``Fault()``: nothing)."""
        for fault in list(self.scheduled):
            if fault.until is not None and now >= fault.until:
                self.scheduled.remove(fault)
                continue
            if fault.path not in path:
                continue
            if fault.after > 0:
                fault.after -= 1
                continue
            fault.hits += 1
            if fault.times is not None:
                fault.times -= 1
                if fault.times <= 0:
                    self.scheduled.remove(fault)
            return fault
        for name, shorthand in (("server_errors", Fault(status=503)),
                                ("rate_limited", Fault(status=429)),
                                ("truncated", Fault(cut=0.5)),
                                ("duplicated", Fault(duplicate=True))):
            left = int(getattr(self, name))
            if left > 0:
                setattr(self, name, left - 1)
                return shorthand
        return Fault()

    async def stall(self, fault: Fault, clock: Clock, scope: Mapping[str, Any]) -> None:
        """Wait out the fault's stall (and ``slow_seconds``) on ``clock``; past the
        client's read timeout, raise `ClientGaveUp` once that has passed."""
        seconds = fault.stall + self.slow_seconds
        if seconds <= 0:
            return
        timeout = (scope.get("extensions") or {}).get(READ_TIMEOUT)
        if timeout is not None and seconds > timeout:
            await clock.sleep(timeout)
            raise ClientGaveUp(f"no answer within {timeout:g} s")
        await clock.sleep(seconds)

    def answer(self, fault: Fault, key: str, raw: bytes, media_type: str,
               headers: Mapping[str, str] | None = None) -> Response:
        """The response carrying ``raw``, the body for resource ``key``, after the fault's
        body changes: a duplicate serves the previous body of ``key`` again, a cut sends
        only part of it (and with ``close`` ends the response unfinished)."""
        if fault.duplicate and key in self._bodies:
            raw = self._bodies[key]
        self._bodies[key] = raw
        if fault.cut is None:
            return Response(raw, media_type=media_type, headers=headers)
        sent = int(len(raw) * fault.cut)
        if fault.close:
            return _Unfinished(raw, sent, media_type=media_type, headers=headers)
        return Response(raw[:sent], media_type=media_type, headers=headers)


class _Unfinished(Response):
    """Headers for the whole body, its first ``sent`` bytes, then nothing more: the app
    returns with the response unfinished, and the server drops the connection mid-body."""

    def __init__(self, content: bytes, sent: int, *, media_type: str,
                 headers: Mapping[str, str] | None) -> None:
        super().__init__(content, media_type=media_type, headers=headers)
        self.sent = sent

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code,
                    "headers": self.raw_headers})
        await send({"type": "http.response.body", "body": self.body[: self.sent],
                    "more_body": True})


def gateway_error(status: int) -> Response:
    """A 5xx the vendor does not document: the HTML page of a proxy in front of it."""
    text = f"{status} {GATEWAY_TEXT.get(status, 'Server Error')}"
    return HTMLResponse(f"<html><head><title>{text}</title></head><body><center><h1>{text}"
                        "</h1></center><hr><center>nginx</center></body></html>",
                        status_code=status)


class FaultInjector:
    """`Faults` around an ASGI app that is not one of our emulators (meterhub's own
    DSMR-reader-compatible API, in the fault matrix).

    Errors are answered as Django REST framework does (DSMR-reader is a Django app):
    ``{"detail": ...}``, a 429 with ``Retry-After`` when the fault names a wait, a 401 for
    a key refused; 5xx come as a gateway's page. ``reorder`` reverses a JSON answer's
    ``results`` list, ``duplicate`` repeats the previous answer on the same path.
    """

    def __init__(self, app: ASGIApp, faults: Faults, clock: Clock) -> None:
        self.app, self.faults, self.clock = app, faults, clock

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = str(scope["path"])
        fault = self.faults.next(path, self.clock.now())
        await self.faults.stall(fault, self.clock, scope)
        if fault.status is not None:
            await self._error(fault)(scope, receive, send)
            return
        start: dict[str, Any] = {}  # every answer is kept: a later duplicate repeats it
        parts: list[bytes] = []

        async def keep(message: Message) -> None:
            if message["type"] == "http.response.start":
                start.update(message)
            elif message["type"] == "http.response.body":
                parts.append(message.get("body", b""))

        await self.app(scope, receive, keep)
        raw = b"".join(parts)
        headers = {k.decode("latin-1"): v.decode("latin-1")
                   for k, v in start.get("headers", []) if k.lower() != b"content-length"}
        media_type = headers.pop("content-type", "application/json")
        if start.get("status") != 200:  # errors pass as they are
            await Response(raw, status_code=int(start.get("status", 500)),
                           media_type=media_type, headers=headers)(scope, receive, send)
            return
        if fault.reorder:
            payload = orjson.loads(raw)
            if isinstance(payload, dict) and isinstance(payload.get("results"), list):
                payload["results"].reverse()
                raw = orjson.dumps(payload)
        await self.faults.answer(fault, path, raw, media_type, headers)(scope, receive, send)

    def _error(self, fault: Fault) -> Response:
        status = int(fault.status or 500)
        wait = fault.wait(self.clock.now())
        if status >= 500:
            return gateway_error(status)
        if status == 429:
            text = "Request was throttled." + (
                f" Expected available in {wait} seconds." if wait is not None else "")
            return JSONResponse({"detail": text}, status_code=429, headers=(
                {"Retry-After": str(wait)} if wait is not None else None))
        if status == 401:
            return JSONResponse({"detail": "Invalid token."}, status_code=401)
        return JSONResponse({"detail": f"Error {status}."}, status_code=status)


class EmulatorTransport(httpx.AsyncBaseTransport):
    """An in-process network between httpx and an ASGI app (an emulator), faithful where
    faults need it, on the emulator's own time.

    - The client's read timeout holds: an answer stalled past it (`Fault.stall`) ends in
      `httpx.ReadTimeout`, after exactly that long on the emulator's clock.
    - A body shorter than its Content-Length, or a response the app never finished
      (`Fault.close`), reaches the client as `httpx.RemoteProtocolError` when the body is
      read, as a connection closed mid-body does.

    httpx's own ASGITransport has neither (no time-outs; an unfinished response is an
    AssertionError). Exceptions of the app propagate as they do there.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeout = (request.extensions.get("timeout") or {}).get("read")
        scope: dict[str, Any] = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
            "method": request.method,
            "headers": [(k.lower(), v) for k, v in request.headers.raw],
            "scheme": request.url.scheme, "path": request.url.path,
            "raw_path": request.url.raw_path.split(b"?")[0],
            "query_string": request.url.query, "server": (request.url.host, request.url.port),
            "client": ("127.0.0.1", 123), "root_path": "",
            "extensions": {} if timeout is None else {READ_TIMEOUT: float(timeout)}}
        body = await request.aread()
        delivered = False
        finished = asyncio.Event()
        status: int | None = None
        headers: list[tuple[bytes, bytes]] = []
        parts: list[bytes] = []

        async def receive() -> Message:
            nonlocal delivered
            if delivered:
                await finished.wait()
                return {"type": "http.disconnect"}
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: Message) -> None:
            nonlocal status, headers
            if message["type"] == "http.response.start":
                status, headers = int(message["status"]), list(message.get("headers", []))
            elif message["type"] == "http.response.body" and not finished.is_set():
                if request.method != "HEAD":
                    parts.append(bytes(message.get("body", b"")))
                if not message.get("more_body", False):
                    finished.set()

        complete = False
        try:
            await self.app(scope, receive, send)
            complete = finished.is_set()
        except ClientGaveUp as exc:
            raise httpx.ReadTimeout(str(exc), request=request) from None
        finally:
            finished.set()
        if status is None:
            raise httpx.RemoteProtocolError("Server disconnected without sending a response.",
                                            request=request)
        content = b"".join(parts)
        declared = next((int(v) for k, v in headers if k.lower() == b"content-length"), None)
        error = None
        if not complete or (declared is not None and len(content) < declared):
            error = httpx.RemoteProtocolError(
                "peer closed connection without sending complete message body: received "
                f"{len(content)} bytes, expected {declared}", request=request)
        return httpx.Response(status, headers=headers, stream=_Body(content, error))


class _Body(httpx.AsyncByteStream):
    """A response body as received: the bytes that came, then the error that ended it."""

    def __init__(self, content: bytes, error: Exception | None) -> None:
        self.content, self.error = content, error

    async def __aiter__(self) -> AsyncIterator[bytes]:
        if self.content:
            yield self.content
        if self.error is not None:
            raise self.error


class DataHorizon:
    """Worlds whose data may stop growing at ``horizon`` while limits run on the clock.

    A frozen horizon lets two syncs minutes apart see exactly the same data.
    """

    clock: Clock
    horizon: float | None

    def data_now(self) -> float:
        now = self.clock.now()
        return now if self.horizon is None else min(now, self.horizon)

    def relax_limits(self) -> None:
        """Switch every rate limit off (for crash-and-resume tests only)."""
        for value in vars(self).values():
            for limit in (value.values() if isinstance(value, dict) else [value]):
                if isinstance(limit, WindowLimit):
                    limit.enabled = False
        self.unlimited = True

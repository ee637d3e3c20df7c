"""The HTTP layer every connector shares: limits, retries and error classification.

- `Limit` states one documented limit as data (scope, calls, period, or a readings budget);
  connectors list theirs in `ConnectorInfo.limits`.
- `RateLimiter` keeps a rolling window per (scope, key) on the injected clock and makes a
  caller wait until every scope it names has room, so a sync never trips a limit it knows.
- `VendorClient.call` sends one request through the limiter and retries 429s (honouring
  Retry-After, else the vendor's own lock-out hint), 5xx (after their Retry-After, if
  any), time-outs, connection errors and bodies that fail to parse (a stale page among
  them), with jittered exponential backoff, a bounded number of times; a host that
  refuses, is not found or does not answer gets fewer tries (`RetryPolicy.unreachable`).
  A server's wait is honoured up to `RetryPolicy.longest_wait`: one asking for more ends
  the call at once, named, and the next sync tries again. A wall clock set back
  moves the limiter's windows with it.
  Failures become one of the typed `SourceError`s; messages carry the path and the server's
  scheme://host:port, never user info, the query string, headers or body, so no secret
  reaches a log line.
"""

from __future__ import annotations

import abc
import asyncio
import collections
import datetime as dt
import email.utils
import errno
import itertools
import logging
import math
import random
import re
import socket
import ssl
from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import httpx

from meterhub.clock import Clock
from meterhub.errors import (
    AuthError,
    MalformedResponseError,
    RateLimitedError,
    UnavailableError,
    VendorError,
)

T = TypeVar("T")
log = logging.getLogger("meterhub.http")
Scope = Literal["account", "device", "endpoint", "readings"]


@dataclass(frozen=True, slots=True)
class Limit:
    """At most ``calls`` units per rolling ``period`` seconds within one ``scope``.

    For ``scope="readings"`` the units are readings, not calls.
    """

    scope: Scope
    calls: int
    period: float
    note: str = ""


@dataclass(eq=False)
class _Waiter:
    keys: tuple[tuple[Limit, str], ...]
    cost: int
    ticket: int
    future: asyncio.Future[None]


@dataclass
class RateLimiter:
    """Rolling-window limits over one clock, shared by every task of a sync.

    Callers that cannot go at once queue up; one dispatcher grants room as it frees,
    least-served caller first (then first come), so concurrent devices advance in turn
    and a backfill ends at the floor the limits allow instead of with a long tail.
    """

    clock: Clock
    _windows: dict[tuple[Limit, str], collections.deque[tuple[float, int]]] = field(
        default_factory=dict)
    waited: float = 0.0  #: seconds callers spent waiting for room, summed over callers
    #: seconds of clock time in which at least one caller waited (what a person waited)
    blocked: float = 0.0
    _queued: int = 0
    _blocked_since: float = 0.0
    _waiting: list[_Waiter] = field(default_factory=list)
    _served: collections.Counter[tuple[tuple[Limit, str], ...]] = field(
        default_factory=collections.Counter)
    _tickets: itertools.count[int] = field(default_factory=itertools.count)
    _wake: asyncio.Event | None = None
    _dispatcher: asyncio.Task[None] | None = None
    _seen: float = -math.inf  #: the latest time read from the clock

    def _now(self) -> float:
        """The clock's time. When the clock has stepped back since it was last read (a
        wall clock set back), every window steps back with it: a call made a minute before
        the step was still made a minute ago, not a day in the future."""
        now = self.clock.now()
        if now < self._seen:
            step = now - self._seen
            for window in self._windows.values():
                for i, (stamp, units) in enumerate(window):
                    window[i] = (stamp + step, units)
            self._blocked_since += step
        self._seen = now
        return now

    async def acquire(self, keys: Sequence[tuple[Limit, str]], cost: int = 1) -> None:
        """Wait until each (limit, key) has room for ``cost`` units, then take them."""
        wanted = tuple(keys)
        now = self._now()
        if not self._waiting and self._delay(wanted, cost, now) <= 0:
            self._take(wanted, cost, now)
            return
        loop = asyncio.get_running_loop()
        waiter = _Waiter(wanted, cost, next(self._tickets), loop.create_future())
        self._waiting.append(waiter)
        if self._dispatcher is None or self._dispatcher.done():
            self._dispatcher = loop.create_task(self._dispatch())
        elif self._wake is not None:
            self._wake.set()
        expected = self._delay(wanted, cost, now)
        if expected >= 60:
            binding = max(wanted, key=lambda lk: self._delay([lk], cost, now))[0]
            log.info("waiting %.0f s for the limit: %s", expected,
                     binding.note or f"{binding.calls} per {binding.period:.0f} s")
        self._queued += 1
        if self._queued == 1:
            self._blocked_since = now
        try:
            await waiter.future
        finally:
            if not waiter.future.done():
                waiter.future.cancel()
            self._queued -= 1
            if not self._queued:
                self.blocked += self._now() - self._blocked_since
        self.waited += self._now() - now

    async def _dispatch(self) -> None:
        while True:
            now = self._now()
            self._waiting = [w for w in self._waiting if not w.future.done()]
            soonest = math.inf
            for waiter in sorted(self._waiting,
                                 key=lambda w: (self._served[w.keys], w.ticket)):
                delay = self._delay(waiter.keys, waiter.cost, now)
                if delay <= 0:
                    self._take(waiter.keys, waiter.cost, now)
                    waiter.future.set_result(None)
                else:
                    soonest = min(soonest, delay)
            self._waiting = [w for w in self._waiting if not w.future.done()]
            if not self._waiting:
                self._wake = None
                return
            self._wake = asyncio.Event()
            sleeper = asyncio.ensure_future(self.clock.sleep(soonest))
            woken = asyncio.ensure_future(self._wake.wait())
            await asyncio.wait({sleeper, woken}, return_when=asyncio.FIRST_COMPLETED)
            sleeper.cancel()
            woken.cancel()

    def delay(self, keys: Sequence[tuple[Limit, str]], cost: int = 1) -> float:
        """Seconds until ``cost`` units fit every (limit, key), by this limiter's count."""
        return self._delay(keys, cost, self._now())

    def _delay(self, keys: Sequence[tuple[Limit, str]], cost: int, now: float) -> float:
        """Seconds until every (limit, key) has room for ``cost`` units (<= 0: now)."""
        wait = 0.0
        for limit, key in keys:
            window = self._window(limit, key, now)
            used = sum(units for _, units in window)
            if used + cost > limit.calls and window:
                # room appears once enough of the oldest entries leave the window
                free, release = used + cost - limit.calls, 0.0
                for stamp, units in window:
                    free -= units
                    release = stamp + limit.period + self.clock.slack
                    if free <= 0:
                        break
                wait = max(wait, release - now)
        return wait

    def _take(self, keys: tuple[tuple[Limit, str], ...], cost: int, now: float) -> None:
        for limit, key in keys:
            self._windows.setdefault((limit, key), collections.deque()).append((now, cost))
        self._served[keys] += 1

    def _window(self, limit: Limit, key: str, now: float) -> collections.deque[tuple[float,
                                                                                      int]]:
        window = self._windows.setdefault((limit, key), collections.deque())
        while window and window[0][0] + limit.period + self.clock.slack <= now:
            window.popleft()
        return window

    def settle(self, limit: Limit, key: str, reserved: int, used: int) -> None:
        """Replace a reservation of ``reserved`` units by what a call really ``used``."""
        window = self._windows.get((limit, key))
        if not window:
            return
        for i in range(len(window) - 1, -1, -1):
            stamp, units = window[i]
            if units == reserved:
                window[i] = (stamp, used)
                return

    def penalise(self, keys: Sequence[tuple[Limit, str]], until: float) -> None:
        """After a 429, treat the named windows as full until ``until``."""
        now = self._now()
        for limit, key in keys:
            window = self._window(limit, key, now)
            window.append((until - limit.period, limit.calls))


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Bounded retries with full-jitter exponential backoff."""

    attempts: int = 6  #: tries per call for 5xx, time-outs and malformed bodies
    #: tries per call when the host refuses, is not found or does not answer a connect:
    #: rarely over within the ~15 s that `attempts` would spend, and the next sync retries
    unreachable: int = 3
    rate_limited: int = 12  #: extra tries per call for 429s, each after the vendor's wait
    base: float = 1.0
    cap: float = 120.0
    slack: float = 1.0  #: added to a vendor's own wait hint
    #: the longest wait a server may ask for (Retry-After on a 429 or 5xx, a lock-out
    #: hint) that a call sits out; one asking for more ends the call at once, so a hostile
    #: or mistaken header cannot hold a sync for a day (the next sync tries again). With
    #: the bounded tries above, it bounds what one call can wait in all.
    longest_wait: float = 3600.0

    def backoff(self, attempt: int, rng: random.Random) -> float:
        return rng.uniform(0, min(self.cap, self.base * 2 ** attempt))


RetryAfter = Callable[[httpx.Response], float | None]
_MAX_AGE = re.compile(r"max-age=(\d+)")


@dataclass
class ResponseCache:
    """GET answers kept for their ``Cache-Control: max-age``, on the sync's clock.

    A re-poll inside max-age is answered from here and costs no call (and no budget).
    """

    clock: Clock
    _entries: dict[str, tuple[float, httpx.Response]] = field(default_factory=dict)
    hits: int = 0

    @staticmethod
    def key(method: str, path: str, params: Any) -> str | None:
        if method != "GET":
            return None
        return str(httpx.URL(path, params=params))

    def get(self, key: str | None) -> httpx.Response | None:
        entry = self._entries.get(key) if key else None
        if entry is None:
            return None
        if entry[0] <= self.clock.now():
            del self._entries[key]  # type: ignore[arg-type]
            return None
        self.hits += 1
        return entry[1]

    def put(self, key: str | None, response: httpx.Response) -> None:
        control = response.headers.get("Cache-Control", "")
        match = _MAX_AGE.search(control)
        if key and match and "no-store" not in control and response.status_code == 200:
            self._entries[key] = (self.clock.now() + int(match.group(1)), response)


def retry_after_header(response: httpx.Response, now: float | None = None) -> float | None:
    """Seconds a ``Retry-After`` header asks for, if it asks for any.

    Delay-seconds are taken as they are; an HTTP-date counts from the response's ``Date``
    (the server's own clock, so ours being off does not matter), else from ``now``, and
    one already past is 0. A value that is neither (negative, not finite, words) is none.
    """
    value = response.headers.get("Retry-After", "").strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        at = _http_date(value)
        sent = _http_date(response.headers.get("Date", ""))
        base = sent if sent is not None else now
        if at is None or base is None:
            return None
        return max(0.0, at - base)
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def _http_date(text: str) -> float | None:
    """Epoch seconds of an HTTP-date (RFC 9110: IMF-fixdate or the obsolete forms)."""
    try:
        moment = email.utils.parsedate_to_datetime(text.strip())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if moment.tzinfo is None:  # "-0000": UTC without saying so
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.timestamp()


class TokenAuth(httpx.Auth, abc.ABC):
    """A bearer token from a login call, cached until ``margin`` seconds before it expires.

    Subclasses say how to log in (`login_request`) and read the answer (`accept`, which
    raises `AuthError` on refused credentials). Concurrent requests share one login: the
    first to find the token stale logs in while the others wait on the lock. A 401 on a
    request logs in once more (unless another request already did) and resends it.
    """

    def __init__(self, clock: Clock, *, margin: float = 60.0) -> None:
        self.clock, self.margin = clock, margin
        self.token: str | None = None
        self.expires_at = 0.0
        self.logins = 0
        self._lock = asyncio.Lock()

    @abc.abstractmethod
    def login_request(self) -> httpx.Request:
        """The vendor's login call."""

    @abc.abstractmethod
    def accept(self, response: httpx.Response) -> tuple[str, float]:
        """(token, expiry as epoch seconds) from the login answer; AuthError if refused."""

    def _checked(self, response: httpx.Response) -> tuple[str, float]:
        if response.status_code >= 500 or response.status_code == 429:
            raise UnavailableError(f"the token service answered {response.status_code}")
        return self.accept(response)

    def header(self) -> str:
        return f"Bearer {self.token}"

    def _stale(self) -> bool:
        return self.token is None or self.clock.now() >= self.expires_at - self.margin

    async def async_auth_flow(self, request: httpx.Request
                              ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        if self._stale():
            async with self._lock:
                if self._stale():
                    login = yield self.login_request()
                    await login.aread()
                    self.token, self.expires_at = self._checked(login)
                    self.logins += 1
        sent_with = self.token
        request.headers["Authorization"] = self.header()
        response = yield request
        if response.status_code == 401:
            await response.aread()
            async with self._lock:
                if self.token == sent_with:  # nobody renewed it meanwhile
                    login = yield self.login_request()
                    await login.aread()
                    self.token, self.expires_at = self._checked(login)
                    self.logins += 1
            request.headers["Authorization"] = self.header()
            yield request


def make_client(base_url: str, *, transport: httpx.AsyncBaseTransport | None = None,
                timeout: float = 30.0, headers: Mapping[str, str] | None = None
                ) -> httpx.AsyncClient:
    """The one httpx client factory: base URL, time-outs, our user agent."""
    from meterhub import __version__

    return httpx.AsyncClient(
        base_url=base_url, transport=transport,
        timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
        headers={"User-Agent": f"meterhub/{__version__}", **(headers or {})},
        follow_redirects=False)


@dataclass(frozen=True)
class Quota:
    """What a vendor last said of the calls left to its client, from the rate limit
    headers it sends (``X-RateLimit-Limit``, ``-Remaining``, ``-Reset``) or a 429's wait.
    (T&D's ``-Remaining-DataCount`` is a device's budget, not the account's, and its
    listings send 0: not a source's number.)"""

    at: float  #: when it said so (the clock's seconds)
    calls_left: int | None = None
    calls_limit: int | None = None
    window_seconds: float | None = None  #: the window the limit counts in
    wait_until: float | None = None  #: a 429's end of lock-out (the clock's seconds)

    @classmethod
    def told(cls, response: httpx.Response, at: float, wait: float | None) -> Quota | None:
        """The quota ``response`` tells, or None when it tells none. ``wait``: seconds a
        429 asked to wait."""
        headers = response.headers

        def number(name: str) -> int | None:
            try:
                return int(headers[name]) if name in headers else None
            except ValueError:
                return None

        left = number("X-RateLimit-Remaining")
        if left is None and wait is None:
            return None
        window = number("X-RateLimit-Reset")
        return cls(at, 0 if wait is not None and left is None else left,
                   number("X-RateLimit-Limit"), None if window is None else float(window),
                   None if wait is None else at + wait)

    def as_json(self) -> dict[str, Any]:
        def stamp(seconds: float | None) -> str | None:
            return None if seconds is None else dt.datetime.fromtimestamp(
                seconds, dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")

        return {"as_of": stamp(self.at), "calls_left": self.calls_left,
                "calls_limit": self.calls_limit, "window_seconds": self.window_seconds,
                "wait_until": stamp(self.wait_until)}


@dataclass
class VendorClient:
    """A vendor's httpx client with its limiter, retry policy and error vocabulary."""

    vendor: str
    client: httpx.AsyncClient
    limiter: RateLimiter
    clock: Clock
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    #: the wait a 429 asks for when it has no Retry-After (the vendor's own hint)
    retry_after: RetryAfter = retry_after_header
    vendor_error: Callable[[httpx.Response], VendorError | None] = lambda response: None
    rng: random.Random = field(default_factory=lambda: random.Random(0))
    cache: ResponseCache | None = None
    calls: int = 0  #: requests sent, retries included
    retries: int = 0
    quota: Quota | None = None  #: what the vendor last told of its limits, if it tells

    async def call(self, method: str, path: str, parse: Callable[[httpx.Response], T], *,
                   limits: Sequence[tuple[Limit, str]] = (), cost: int = 1,
                   **kwargs: Any) -> T:
        """Send one request within ``limits`` and return ``parse(response)``."""
        key = self.cache.key(method, path, kwargs.get("params")) if self.cache else None
        if self.cache is not None and (cached := self.cache.get(key)) is not None:
            return parse(cached)
        last: Exception | None = None
        attempt = throttled = 0
        allowed = self.retry.attempts
        while attempt < allowed and throttled <= self.retry.rate_limited:
            await self.limiter.acquire(limits, cost)
            self.calls += 1
            futile = False
            asked: float | None = None  #: a 5xx's Retry-After
            try:
                response = await self.client.request(method, path, **kwargs)
            except httpx.TransportError as exc:
                last, futile = self._transport_error(exc, path)
            except (UnavailableError, MalformedResponseError) as exc:
                last = exc  # the token service failed or answered garbage: try again
            else:
                try:
                    wait = self._classify(response, path)
                except _ServerError as exc:
                    last, wait, asked = exc, -1.0, exc.retry_after
                except RateLimitedError as exc:  # a wait beyond what a sync waits
                    self._told(response, exc.retry_after)
                    raise
                self._told(response, wait)
                if wait is None:
                    try:
                        result = parse(response)
                        if self.cache is not None:
                            self.cache.put(key, response)
                        return result
                    except MalformedResponseError as exc:
                        last = exc  # a body cut short in transit, or a stale page: ask again
                elif wait >= 0:
                    last = RateLimitedError(f"{self.vendor}: rate limited on {path}",
                                            retry_after=wait)
                    self.retries += 1
                    throttled += 1
                    await self._hold(limits, wait, 0.0)
                    continue
            attempt += 1
            # the latest failure decides how many tries the call gets in all
            allowed = self.retry.unreachable if futile else self.retry.attempts
            if attempt < allowed:
                self.retries += 1
                pause = self.retry.backoff(attempt - 1, self.rng)
                if asked is None:
                    await self.clock.sleep(pause)
                else:  # the server said when to come back: not before, as after a 429
                    await self._hold(limits, asked, pause)
        assert last is not None
        raise last

    def _told(self, response: httpx.Response, wait: float | None) -> None:
        told = Quota.told(response, self.clock.now(),
                          wait if response.status_code == 429 else None)
        if told is not None:
            self.quota = told

    async def _hold(self, limits: Sequence[tuple[Limit, str]], wait: float,
                    backoff: float) -> None:
        """Wait what a server asked (a 429's or 5xx's Retry-After) before the next try, and
        hold every call through the same limits as long (they would meet the same answer)."""
        self.limiter.penalise(limits, self.clock.now() + wait)
        await self.clock.sleep(max(backoff, wait + self.retry.slack))

    def _asked(self, response: httpx.Response, path: str) -> float | None:
        """The wait a 429 or 5xx asks for (Retry-After; on a 429 else the vendor's own
        hint), up to `RetryPolicy.longest_wait`; a longer one ends the call now."""
        status = response.status_code
        wait = retry_after_header(response, self.clock.now())
        if wait is None and status == 429:
            wait = self.retry_after(response)
        if wait is None or not math.isfinite(wait):
            return None
        wait = max(0.0, wait)
        if wait > self.retry.longest_wait:
            why = (f"it asks to wait {wait:.0f} s, beyond the {self.retry.longest_wait:.0f} s "
                   "a sync waits for a server: the next sync tries again")
            if status == 429:
                raise RateLimitedError(f"{self.vendor}: rate limited on {path}; {why}",
                                       retry_after=wait)
            raise UnavailableError(f"{self.vendor}: server error {status} on {path}; {why}")
        return wait

    def _transport_error(self, exc: httpx.TransportError, path: str
                         ) -> tuple[UnavailableError, bool]:
        """The failure in words (the server without user info or query, why, what to
        check), and whether retrying within seconds is futile."""
        try:
            url = exc.request.url
        except RuntimeError:  # raised without its request
            url = self.client.base_url
        server = origin(url)
        if isinstance(exc, httpx.ConnectTimeout | httpx.ConnectError):
            reason, futile = _connect_failure(exc)
            return UnavailableError(
                f"{self.vendor}: cannot reach {server} ({reason}) for {path}: check that the "
                "host is up and that the source's base_url in meterhub.toml is right"), futile
        if isinstance(exc, httpx.TimeoutException):
            return UnavailableError(f"{self.vendor}: {path} on {server} timed out"), False
        return UnavailableError(f"{self.vendor}: the connection to {server} failed on "
                                f"{path} ({_words(exc)})"), False

    def _classify(self, response: httpx.Response, path: str) -> float | None:
        """None for a usable response, seconds to wait for a 429; raises otherwise (a
        `_ServerError` for a 5xx, to retry, with its Retry-After)."""
        status = response.status_code
        if status in (401, 403):
            raise AuthError(f"{self.vendor} refused the credentials ({status} on {path}): "
                            "check the token or password in the source's configuration")
        if status == 429:
            # a Retry-After the server sends is its word; the vendor's rule only guesses
            hint = self._asked(response, path)
            return 60.0 if hint is None else hint
        if status >= 500:
            raise _ServerError(f"{self.vendor}: server error {status} on {path}",
                               retry_after=self._asked(response, path))
        if status >= 400:
            error = self.vendor_error(response)
            raise error or VendorError(f"{self.vendor}: {status} on {path}", status=status)
        return None


class _ServerError(UnavailableError):
    """A 5xx answer: retried inside `VendorClient.call`, with backoff or after the wait
    its Retry-After asks for."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


_DEFAULT_PORTS = {"http": 80, "https": 443}
_UNREACHABLE = {errno.EHOSTUNREACH: "host unreachable", errno.ENETUNREACH: "network unreachable"}


def origin(url: httpx.URL) -> str:
    """scheme://host:port of ``url``: the server, without user info, path or query."""
    host = f"[{url.host}]" if ":" in url.host else url.host
    port = url.port or _DEFAULT_PORTS.get(url.scheme)
    return f"{url.scheme}://{host}" + (f":{port}" if port else "")


def _causes(exc: BaseException) -> list[BaseException]:
    """``exc`` and what it wraps: httpx wraps httpcore, which wraps the socket's OSError."""
    found: list[BaseException] = []
    todo: list[BaseException] = [exc]
    while todo and len(found) < 20:
        cause = todo.pop(0)
        if any(cause is seen for seen in found):
            continue
        found.append(cause)
        if isinstance(cause, BaseExceptionGroup):
            todo.extend(cause.exceptions)
        todo.extend(c for c in (cause.__cause__, cause.__context__) if c is not None)
    return found


def _connect_failure(exc: httpx.TransportError) -> tuple[str, bool]:
    """Why a connect failed, in words, and whether retrying within seconds is futile."""
    if isinstance(exc, httpx.ConnectTimeout):
        return "connection timed out", True
    for cause in _causes(exc):
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused", True
        if isinstance(cause, socket.gaierror):
            return "host name not resolved", True
        if isinstance(cause, ssl.SSLCertVerificationError):
            return f"TLS certificate not accepted: {cause.verify_message}", True
        if isinstance(cause, ssl.SSLError):
            return f"TLS handshake failed: {cause.reason or _words(cause)}", True
        if isinstance(cause, OSError) and cause.errno in _UNREACHABLE:
            return _UNREACHABLE[cause.errno], True
    return _words(exc), False


def _words(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


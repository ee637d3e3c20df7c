"""API keys on requests, scopes, and per-key rate limits announced in X-RateLimit-* headers.

Keys are read from the store and kept in memory. A process that owns its store (DuckDB)
changes keys only through itself (`KeyRing.add` / `revoke`), so the copy cannot go stale
and the check runs on the event loop with no store call. A store that processes share
(ClickHouse) may get keys created or revoked elsewhere: the copy is read again every
`SHARED_MAX_AGE` seconds (a revocation elsewhere holds here within that), and a key it does
not hold sends it to the store at most once a second (a key created a moment ago works at
once, and unknown keys cannot make every request a store call).
"""

from __future__ import annotations

import collections
import math
import threading
import time
from collections.abc import Awaitable, Callable

from fastapi import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from meterhub.api.problems import Problem
from meterhub.api.session import session_key
from meterhub.keys import ApiKey, RateLimit, key_id_of, matches
from meterhub.keys import Scope as KeyScope
from meterhub.store import Store

STATE_HEADERS = "ratelimit_headers"


SHARED_MAX_AGE = 5.0  #: seconds a process keeps the keys of a shared store
_MISS_INTERVAL = 1.0  #: seconds between reads for keys this process does not hold


class KeyRing:
    """The store's active keys by id, and the writes that change them."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._lock = threading.Lock()
        self._shared = store.shared
        self._keys: dict[str, ApiKey] = {}
        self._read_at = self._missed_at = 0.0
        self._read()

    def _read(self) -> None:
        self._keys = {k.key_id: k for k in self._store.api_keys() if k.active}
        self._read_at = time.monotonic()

    def _get(self, key_id: str) -> ApiKey | None:
        if not self._shared:
            return self._keys.get(key_id)
        now = time.monotonic()
        if now - self._read_at > SHARED_MAX_AGE:
            self._read()
        record = self._keys.get(key_id)
        if record is None and now - self._missed_at > _MISS_INTERVAL:
            self._missed_at = now
            self._read()
            record = self._keys.get(key_id)
        return record

    def by_id(self, key_id: str) -> ApiKey | None:
        """The active key with this id (a session names its key so)."""
        return self._get(key_id)

    def find(self, text: str) -> ApiKey | None:
        key_id = key_id_of(text)
        record = self._get(key_id) if key_id else None
        return record if record is not None and matches(record, text) else None

    def add(self, key: ApiKey) -> None:
        with self._lock:
            self._store.add_key(key)
            self._keys[key.key_id] = key

    def revoke(self, key_id: str) -> None:
        with self._lock:
            self._store.revoke_key(key_id)
            self._keys.pop(key_id, None)


class _Slots:
    """One key's recent admissions: counts per slot (index -> count), oldest first."""

    __slots__ = ("counts", "total")

    def __init__(self) -> None:
        self.counts: collections.deque[list[int]] = collections.deque()  # [slot, count]
        self.total = 0


class KeyLimits:
    """Per-key limits as a sliding window of ``SLOTS`` slots.

    The period is cut into ``SLOTS`` equal slots (a second each for a per-minute limit);
    a key keeps the number of requests it was allowed in each of its last ``SLOTS + 1``
    slots, so its memory is bounded (at most 61 small counters) whatever its limit.
    A request is allowed while the count over the current slot and the ``SLOTS`` before it
    is below ``calls``. That span always covers the last ``period`` seconds, so no window
    of ``period`` seconds, wherever it starts, holds more than ``calls`` allowed requests
    (fixed windows let twice the limit through across a window's edge; a token bucket of
    ``calls`` lets a burst through on top of its refill). It may refuse up to one slot
    (period / 60) early, never late; an idle key has its whole allowance back after
    ``period`` plus one slot.

    Headers: ``X-RateLimit-Remaining`` is how many more requests are allowed now,
    ``X-RateLimit-Reset`` the seconds until the whole allowance is back (every counted
    request has left the window), and ``Retry-After`` (on a refusal) the seconds until
    the next request is allowed.
    """

    SLOTS = 60

    def __init__(self, default: RateLimit,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.default = default
        self._clock = clock
        self._keys: dict[str, _Slots] = {}
        self._lock = threading.Lock()

    def limit_of(self, key: ApiKey) -> RateLimit:
        return RateLimit.parse(key.rate_limit) if key.rate_limit else self.default

    def hit(self, key: ApiKey) -> tuple[bool, dict[str, str]]:
        """Count one request; whether it may proceed, and the headers that say so."""
        limit = self.limit_of(key)
        width = limit.period / self.SLOTS
        now = self._clock()
        current = math.floor(now * self.SLOTS / limit.period)
        with self._lock:
            state = self._keys.get(key.key_id)
            if state is None:
                state = self._keys[key.key_id] = _Slots()
            counts = state.counts
            while counts and counts[0][0] < current - self.SLOTS:
                state.total -= counts.popleft()[1]
            allowed = state.total < limit.calls
            if allowed:
                if counts and counts[-1][0] == current:
                    counts[-1][1] += 1
                else:
                    counts.append([current, 1])
                state.total += 1
            # a slot leaves the count once `current` passes it by SLOTS
            reset = (counts[-1][0] + self.SLOTS + 1) * width - now if counts else 0.0
            headers = {"X-RateLimit-Limit": str(limit.calls),
                       "X-RateLimit-Remaining": str(max(0, limit.calls - state.total)),
                       "X-RateLimit-Reset": str(max(0, math.ceil(reset)))}
            if not allowed:
                over, wait = state.total - limit.calls + 1, 0.0
                for slot, count in counts:
                    over -= count
                    if over <= 0:
                        wait = (slot + self.SLOTS + 1) * width - now
                        break
                headers["Retry-After"] = str(max(1, math.ceil(wait)))
        return allowed, headers


def presented_key(request: Request) -> str | None:
    """The key from ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``."""
    auth = request.headers.get("authorization")
    if auth:
        scheme, _, value = auth.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    key = request.headers.get("x-api-key")
    return key.strip() if key and key.strip() else None


def require(scope: KeyScope) -> Callable[[Request], Awaitable[ApiKey]]:
    """A dependency: the request's key, known, within its limit and allowed ``scope``.

    A read may come with the dashboard's session cookie instead of a key (its key's
    limit applies); a write or an admin request never: it needs the key itself."""

    async def check(request: Request) -> ApiKey:
        ring: KeyRing = request.app.state.keys
        limits: KeyLimits = request.app.state.limits
        text = presented_key(request)
        key: ApiKey | None
        if text is None:
            key = session_key(request) if scope is KeyScope.READ else None
            if key is None:
                raise Problem(401, "no API key: send Authorization: Bearer <key> or "
                              "X-API-Key; make one with `meterhub keys create`"
                              + (" (or log in to the dashboard at /login)"
                                 if scope is KeyScope.READ
                                 and getattr(request.app.state, "sessions", None) else ""),
                              headers={"WWW-Authenticate": "Bearer"})
        else:
            key = ring.find(text)
        if key is None:
            raise Problem(401, "unknown or revoked API key: check the key, or make a new "
                          "one with `meterhub keys create`",
                          headers={"WWW-Authenticate": "Bearer"})
        allowed, headers = limits.hit(key)
        setattr(request.state, STATE_HEADERS, headers)
        if not allowed:
            raise Problem(429, f"key {key.name!r} is over its limit of "
                          f"{limits.limit_of(key)}: retry in {headers['Retry-After']} s",
                          headers=headers)
        if not key.scope.allows(scope):
            raise Problem(403, f"key {key.name!r} has scope {key.scope.value}; this needs "
                          f"{scope.value} (make a key with --scope {scope.value})")
        return key

    return check


class RateLimitHeaders:
    """ASGI middleware: the limit headers a request earned go on whatever answers it.

    Pure ASGI (not BaseHTTPMiddleware) so streamed bodies pass through untouched.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                earned = scope.get("state", {}).get(STATE_HEADERS)
                if earned:
                    present = {k.lower() for k, _ in message.get("headers", [])}
                    extra = [(k.lower().encode(), v.encode()) for k, v in earned.items()
                             if k.lower().encode() not in present]
                    message["headers"] = list(message.get("headers", [])) + extra
            await send(message)

        await self.app(scope, receive, send_with_headers)

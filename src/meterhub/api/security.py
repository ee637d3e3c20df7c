"""API keys on requests, scopes, and per-key rate limits announced in X-RateLimit-* headers.

Keys are read once from the store and kept in memory: the API process owns the store, so
keys only change through it (`KeyRing.add` / `revoke`) and the cache cannot go stale. The
check runs on the event loop with no store call.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from fastapi import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from meterhub.api.problems import Problem
from meterhub.keys import ApiKey, RateLimit, key_id_of, matches
from meterhub.keys import Scope as KeyScope
from meterhub.store import Store

STATE_HEADERS = "ratelimit_headers"


class KeyRing:
    """The store's active keys by id, and the writes that change them."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._lock = threading.Lock()
        self._keys = {k.key_id: k for k in store.api_keys() if k.active}

    def find(self, text: str) -> ApiKey | None:
        key_id = key_id_of(text)
        record = self._keys.get(key_id) if key_id else None
        return record if record is not None and matches(record, text) else None

    def add(self, key: ApiKey) -> None:
        with self._lock:
            self._store.add_key(key)
            self._keys[key.key_id] = key

    def revoke(self, key_id: str) -> None:
        with self._lock:
            self._store.revoke_key(key_id)
            self._keys.pop(key_id, None)


@dataclass
class _Window:
    start: float
    used: int


class KeyLimits:
    """Fixed windows per key, aligned to multiples of the period on the wall clock."""

    def __init__(self, default: RateLimit, clock: Callable[[], float] = time.time) -> None:
        self.default = default
        self._clock = clock
        self._windows: dict[str, _Window] = {}

    def limit_of(self, key: ApiKey) -> RateLimit:
        return RateLimit.parse(key.rate_limit) if key.rate_limit else self.default

    def hit(self, key: ApiKey) -> tuple[bool, dict[str, str]]:
        """Count one request; whether it may proceed, and the headers that say so."""
        limit = self.limit_of(key)
        now = self._clock()
        start = math.floor(now / limit.period) * limit.period
        window = self._windows.get(key.key_id)
        if window is None or window.start != start:
            window = self._windows[key.key_id] = _Window(start, 0)
        allowed = window.used < limit.calls
        if allowed:
            window.used += 1
        reset = max(1, math.ceil(start + limit.period - now))
        headers = {"X-RateLimit-Limit": str(limit.calls),
                   "X-RateLimit-Remaining": str(limit.calls - window.used),
                   "X-RateLimit-Reset": str(reset)}
        if not allowed:
            headers["Retry-After"] = str(reset)
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
    """A dependency: the request's key, known, within its limit and allowed ``scope``."""

    async def check(request: Request) -> ApiKey:
        ring: KeyRing = request.app.state.keys
        limits: KeyLimits = request.app.state.limits
        text = presented_key(request)
        if text is None:
            raise Problem(401, "no API key: send Authorization: Bearer <key> or X-API-Key; "
                          "make one with `meterhub keys create`",
                          headers={"WWW-Authenticate": "Bearer"})
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

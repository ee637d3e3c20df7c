"""How `meterhub serve` and `meterhub run` run the API on uvicorn: limits and logging.

uvicorn closes an idle keep-alive connection after ``timeout_keep_alive``, but that timer
only starts after a response: a connection that sends half a request line and then nothing
(or nothing at all) was never closed, and its bytes were never limited (httptools, unlike
h11, has no head size limit). `GuardedHttpToolsProtocol` adds what is missing:

- the request head (request line and headers) must be complete ``HEADER_TIMEOUT`` seconds
  after the connection opened or the previous response ended, else the connection is
  closed;
- a request body that stops arriving for ``BODY_IDLE_TIMEOUT`` seconds closes the
  connection (the app sees the client go away; nothing of the body is written);
- a head over ``MAX_HEAD_BYTES`` is answered 431 and the connection closed;
- beyond ``MAX_CONNECTIONS`` open connections a new one is closed at once, so sockets
  cannot use up the file descriptors the store needs.

uvicorn's own limits: ``limit_concurrency`` answers 503 beyond that many connections or
running requests; ``h11_max_incomplete_event_size`` bounds a head when uvicorn runs h11.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import resource
from typing import Any

from uvicorn.config import LOGGING_CONFIG
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger("meterhub.api")

HEADER_TIMEOUT = 10.0  #: seconds to deliver a request head
BODY_IDLE_TIMEOUT = 30.0  #: seconds a request body may pause
KEEP_ALIVE = 5.0  #: seconds an idle keep-alive connection stays open (uvicorn's default)
MAX_HEAD_BYTES = 64 * 1024  #: request line and headers
LIMIT_CONCURRENCY = 500  #: open connections or running requests before answers are 503


def _max_connections() -> int:
    """Connections kept open at most: 1,000, and never so many that the process's
    descriptor limit (often 1,024) leaves fewer than 128 for the store and the rest."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return 1_000 if soft == resource.RLIM_INFINITY else max(16, min(1_000, soft - 128))


MAX_CONNECTIONS = _max_connections()

_TOO_LARGE_TEXT = b"the request line and headers are too long"
_TOO_LARGE = (b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
              b"content-type: text/plain; charset=utf-8\r\nconnection: close\r\n"
              b"content-length: " + str(len(_TOO_LARGE_TEXT)).encode() + b"\r\n\r\n"
              + _TOO_LARGE_TEXT)


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a head deadline, a body idle timeout, a head size
    limit and a connection cap (see the module's docstring).

    One timer per connection: the head deadline while a head is awaited (from the
    connection's start, the first byte of a pipelined request, or the end of the previous
    response), then the body's idle check until the request has arrived, then none while
    the app works on it.
    """

    header_timeout = HEADER_TIMEOUT
    body_idle_timeout = BODY_IDLE_TIMEOUT
    max_head_bytes = MAX_HEAD_BYTES
    max_connections = MAX_CONNECTIONS
    _last_refusal = 0.0  # when a connection over the cap was last logged (a minute apart)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._guard: asyncio.TimerHandle | None = None
        self._awaiting_head = False
        self._head_bytes = 0
        self._in_body = False
        self._last_data = 0.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.max_connections:
            now = self.loop.time()
            if now - GuardedHttpToolsProtocol._last_refusal > 60:
                GuardedHttpToolsProtocol._last_refusal = now
                log.warning("%d connections are open: closing new ones (from %s first) "
                            "until some end", len(self.connections) - 1, _peer(self.client))
            transport.close()
            return
        self._expect_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_guard()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._awaiting_head:
            self._head_bytes += len(data)
        super().data_received(data)
        if self.transport.is_closing():
            self._stop_guard()
        elif self._awaiting_head and self._head_bytes > self.max_head_bytes:
            # every byte counted belongs to a head that is still not complete
            log.info("closing %s: a request head of over %d bytes", _peer(self.client),
                     self.max_head_bytes)
            self.transport.write(_TOO_LARGE)
            self.transport.close()
            self._stop_guard()
        elif self._in_body:
            self._last_data = self.loop.time()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if not self._awaiting_head:
            self._expect_head()

    def on_headers_complete(self) -> None:
        self._awaiting_head = False
        self._in_body = True
        self._last_data = self.loop.time()
        self._arm(self.body_idle_timeout, self._body_stalled)
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._in_body = False
        self._stop_guard()
        super().on_message_complete()
        answered = self.cycle is not None and self.cycle.response_complete
        if answered and not self.transport.is_closing():
            self._expect_head()  # answered before its body ended: the next head is due

    def on_response_complete(self) -> None:
        super().on_response_complete()
        idle = self.timeout_keep_alive_task is not None  # else a pipelined request runs
        if idle and not (self._in_body or self._awaiting_head or self.transport.is_closing()):
            self._expect_head()

    # the timer ------------------------------------------------------------------------

    def _expect_head(self) -> None:
        self._awaiting_head, self._head_bytes = True, 0
        self._arm(self.header_timeout, self._head_late)

    def _arm(self, delay: float, callback: Any) -> None:
        self._stop_guard()
        self._guard = self.loop.call_later(delay, callback)

    def _stop_guard(self) -> None:
        if self._guard is not None:
            self._guard.cancel()
            self._guard = None

    def _head_late(self) -> None:
        self._guard = None
        if self._awaiting_head and not self.transport.is_closing():
            if self._head_bytes:
                log.info("closing %s: no complete request head within %.0f s",
                         _peer(self.client), self.header_timeout)
            self.transport.close()

    def _body_stalled(self) -> None:
        self._guard = None
        if not self._in_body or self.transport.is_closing():
            return
        quiet = self.loop.time() - self._last_data
        if self.flow.read_paused or quiet < self.body_idle_timeout:
            # still arriving, or the app is not reading (then the client is not to blame)
            wait = self.body_idle_timeout - (0 if self.flow.read_paused else quiet)
            self._arm(max(wait, 0.01), self._body_stalled)
            return
        log.info("closing %s: its request body stalled for %.0f s", _peer(self.client),
                 self.body_idle_timeout)
        self.transport.close()


def _peer(client: tuple[str, int] | None) -> str:
    return f"{client[0]}:{client[1]}" if client else "a client"


def log_config(level: str = "warning") -> dict[str, Any]:
    """uvicorn's logging, with meterhub's loggers on the same handler and format."""
    config = copy.deepcopy(LOGGING_CONFIG)
    config["loggers"]["meterhub"] = {"handlers": ["default"], "level": level.upper()}
    return config


def uvicorn_options(level: str = "warning") -> dict[str, Any]:
    """The keyword arguments of `uvicorn.Config` that `meterhub serve` runs with."""
    return {"loop": "uvloop", "http": GuardedHttpToolsProtocol, "log_level": level,
            "log_config": log_config(level), "access_log": False,
            "timeout_keep_alive": int(KEEP_ALIVE), "limit_concurrency": LIMIT_CONCURRENCY,
            "h11_max_incomplete_event_size": MAX_HEAD_BYTES}


__all__ = ["GuardedHttpToolsProtocol", "log_config", "uvicorn_options"]

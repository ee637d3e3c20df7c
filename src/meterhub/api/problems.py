"""Errors as RFC 9457 ``application/problem+json``: a sentence to act on, never a trace.

Logging: one line per event. A 5xx is logged once, with its traceback, here (`CrashGuard`
answers an unexpected error itself, so neither Starlette nor uvicorn logs it again); a
client that goes away before its request body ended is an INFO line without traceback.
"""

from __future__ import annotations

import http
import logging
from collections.abc import Mapping
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import Response
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from meterhub.errors import (
    ConflictError,
    InputError,
    MeterhubError,
    NotFoundError,
    StoreError,
    StoreInUseError,
    UnitError,
)

PROBLEM_TYPE = "application/problem+json"
log = logging.getLogger("meterhub.api")


class Problem(Exception):
    """An HTTP error with a detail a user can act on, and optional extension members."""

    def __init__(self, status: int, detail: str, *, headers: Mapping[str, str] | None = None,
                 **extra: Any) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = dict(headers or {})
        self.extra = extra


def problem_response(request: Request, status: int, detail: str, *,
                     headers: Mapping[str, str] | None = None, **extra: Any) -> Response:
    return _problem_at(request.url.path, status, detail, headers=headers, **extra)


def _problem_at(path: str, status: int, detail: str, *,
                headers: Mapping[str, str] | None = None, **extra: Any) -> Response:
    body = {"type": "about:blank", "title": http.HTTPStatus(status).phrase, "status": status,
            "detail": detail, "instance": path, **extra}
    return Response(orjson.dumps(body), status_code=status, media_type=PROBLEM_TYPE,
                    headers=dict(headers or {}))


class CrashGuard:
    """ASGI middleware: an unexpected error is logged once, with its traceback, and
    answered with a 500 problem.

    Starlette's handler for ``Exception`` re-raises after answering, so uvicorn logged
    every crash a second time ("Exception in ASGI application"); this answers it and
    stops it. An error after the answer started cannot become a 500: it goes on to
    uvicorn, which logs it (once) and closes the connection, so the client sees a cut
    body rather than a complete-looking one.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watch(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, watch)
        except Exception as exc:
            if started:
                raise
            path = scope.get("path", "")
            log.error("unexpected error on %s %s", scope.get("method", ""), path,
                      exc_info=exc)
            response = _problem_at(path, 500, "the server met an unexpected error; the "
                                   "server log has the details")
            await response(scope, receive, send)


def _status_of(exc: MeterhubError) -> int:
    if isinstance(exc, NotFoundError):
        return 404
    if isinstance(exc, ConflictError):
        return 409
    if isinstance(exc, InputError | UnitError):
        return 400
    if isinstance(exc, StoreInUseError):
        return 503
    if isinstance(exc, StoreError):
        return 500
    return 400


def _where(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] in ("query", "header", "path"):
        return f"{parts[0]} parameter {'.'.join(parts[1:])}"
    if parts and parts[0] == "body":
        return "body" + "".join(f"[{p}]" for p in parts[1:])
    return ".".join(parts) or "request"


def _allowed_methods(request: Request) -> list[str]:
    methods: set[str] = set()
    for route in request.app.router.routes:
        match, _ = route.matches({**request.scope, "method": "GET"})
        if match != Match.NONE and getattr(route, "methods", None):
            methods |= set(route.methods)
    return sorted(methods)


def install(app: FastAPI) -> None:
    """Route every error through `problem_response`."""

    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> Response:
        return problem_response(request, exc.status, exc.detail, headers=exc.headers,
                                **exc.extra)

    @app.exception_handler(MeterhubError)
    async def _meterhub(request: Request, exc: MeterhubError) -> Response:
        status = _status_of(exc)
        if status >= 500:
            log.error("store failure on %s %s: %s", request.method, request.url.path, exc,
                      exc_info=exc)
            return problem_response(request, status, "the store failed to answer; the "
                                    "server log has the details")
        return problem_response(request, status, str(exc))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        errors = [{"where": _where(tuple(e.get("loc", ()))), "reason": str(e.get("msg", ""))}
                  for e in exc.errors()]
        first = errors[0] if errors else {"where": "request", "reason": "invalid"}
        return problem_response(request, 400, f"{first['where']}: {first['reason']}",
                                errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        detail = exc.detail if isinstance(exc.detail, str) else http.HTTPStatus(
            exc.status_code).phrase
        headers = dict(getattr(exc, "headers", None) or {})
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"no such path {request.url.path}: see /docs for the API"
        if exc.status_code == 400 and detail == _UNPARSED:  # FastAPI's, for a JSON body
            detail = _unparsed(exc.__cause__)
        if exc.status_code == 405:
            # Starlette names the methods of one route; a path may have several routes
            allowed = _allowed_methods(request)
            headers["Allow"] = ", ".join(allowed)
            detail = f"{request.method} is not allowed on {request.url.path}: use " \
                     f"{' or '.join(allowed)}"
        return problem_response(request, exc.status_code, detail, headers=headers)

    @app.exception_handler(ClientDisconnect)
    async def _gone(request: Request, exc: ClientDisconnect) -> Response:
        # the client closed the connection before its body ended: nothing was written,
        # and nobody is left to read an answer
        log.info("client %s went away before the request body of %s %s ended",
                 _client(request), request.method, request.url.path)
        return problem_response(request, 400, "the request body ended early")

    # unexpected errors: logged once and answered 500 by CrashGuard (an ``Exception``
    # handler here would be re-raised to uvicorn, which logged each crash again)
    app.add_middleware(CrashGuard)


#: what FastAPI says of a JSON body its parser failed on other than by a syntax error
_UNPARSED = "There was an error parsing the body"


def _unparsed(cause: BaseException | None) -> str:
    """FastAPI's `_UNPARSED`, saying why, from the error the body's parse raised."""
    if isinstance(cause, UnicodeDecodeError):
        why = f"it is not UTF-8 text (byte {cause.start:,} is {cause.object[cause.start]:#x})"
    elif isinstance(cause, RecursionError):
        why = "its JSON nests too deep"
    else:
        why = "it is not JSON"
    return f"the body could not be read: {why}; send a JSON object"


def _client(request: Request) -> str:
    return f"{request.client.host}:{request.client.port}" if request.client else "unknown"


PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string"}, "title": {"type": "string"},
        "status": {"type": "integer"}, "detail": {"type": "string"},
        "instance": {"type": "string"},
        "errors": {"type": "array", "items": {"type": "object"}},
    },
}


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries for the problem answers a route can give."""
    return {status: {"description": http.HTTPStatus(status).phrase,
                     "content": {PROBLEM_TYPE: {"schema": PROBLEM_SCHEMA}}}
            for status in statuses}

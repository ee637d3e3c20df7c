"""Errors as RFC 9457 ``application/problem+json``: a sentence to act on, never a trace."""

from __future__ import annotations

import http
import logging
from collections.abc import Mapping
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.routing import Match

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
    body = {"type": "about:blank", "title": http.HTTPStatus(status).phrase, "status": status,
            "detail": detail, "instance": request.url.path, **extra}
    return Response(orjson.dumps(body), status_code=status, media_type=PROBLEM_TYPE,
                    headers=dict(headers or {}))


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
            log.error("store failure on %s: %s", request.url.path, exc)
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
        if exc.status_code == 405:
            # Starlette names the methods of one route; a path may have several routes
            allowed = _allowed_methods(request)
            headers["Allow"] = ", ".join(allowed)
            detail = f"{request.method} is not allowed on {request.url.path}: use " \
                     f"{' or '.join(allowed)}"
        return problem_response(request, exc.status_code, detail, headers=headers)

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception) -> Response:
        log.exception("unexpected error on %s", request.url.path)
        return problem_response(request, 500, "the server met an unexpected error; the "
                                "server log has the details")


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

"""DSMR-reader's v1 datalogger path: raw P1 telegrams pushed, answered as DSMR-reader 5.x does.

Existing datalogger scripts and ESP boards push telegrams here unchanged. Keys are
meterhub API keys with write scope, sent as ``X-AUTHKEY: <key>`` or
``Authorization: Token <key>``. Bodies and status codes follow DSMR-reader (see
DSMR-READER.md): plain-text answers, 201 with an empty body, 403 for any key problem,
429 over the key's rate limit, 413 for a body over `MAX_BODY` (refused unread).
This path is left out of meterhub's OpenAPI document: it mirrors another product's
contract, not meterhub's (no problem+json here); `openapi` describes it with the v2 paths.
"""

from __future__ import annotations

import inspect

from fastapi import FastAPI, Request
from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Send
from starlette.types import Scope as ASGIScope

from meterhub.api.bodies import bounded_body
from meterhub.api.dsmr_reader.common import MAX_BODY, Handler, guarded
from meterhub.api.problems import CrashGuard
from meterhub.api.timing import ServerTiming
from meterhub.dsmr.intake import TelegramIntake
from meterhub.dsmr.parse_helper import NoTelegram
from meterhub.dsmr.telegram import TelegramError
from meterhub.keys import Scope

PATH = "/api/v1/datalogger/dsmrreading"
TEXT = "text/html; charset=utf-8"  #: what DSMR-reader (Django) labels its plain answers


def _text(body: str, status: int, headers: dict[str, str] | None = None) -> Response:
    return Response(body, status_code=status, media_type=TEXT, headers=headers)


def _denied() -> Response:
    return _text("Invalid auth key", 403)


def _throttled(headers: dict[str, str]) -> Response:
    return _text("Too many requests", 429, headers)


def install(app: FastAPI, intake: TelegramIntake) -> None:
    """Add the v1 push path, taking telegrams into ``intake`` (its meter's log is also
    ``app.state.dsmr_counters``, where the meter-statistics paths read it)."""
    app.state.dsmr_counters = intake.counters

    @app.post(PATH, include_in_schema=False)
    @guarded(Scope.WRITE, refuse=_denied, throttle=_throttled)
    async def datalogger(request: Request) -> Response:
        body = await bounded_body(request, MAX_BODY)
        if body is None:
            return _text(f"Request body too large (at most {MAX_BODY} bytes)", 413)
        given: str | bytes | None = _sent_telegram(request, body)
        if given is None:
            field = (await request.form()).get("telegram")
            if not isinstance(field, str):
                return _text("Invalid data", 400)
            given = field
        try:
            await intake.take(given)
        except NoTelegram:
            # nothing but NULs and whitespace: 400 here, where DSMR-reader's form would
            # pass a NUL-only text on to fail its parse (500)
            return _text("Invalid data", 400)
        except TelegramError:
            return _text("Failed to parse telegram", 500)
        return _text("", 201)

    # every other method (OPTIONS and HEAD too) is 405 with an empty body and ``Allow: POST``,
    # as DSMR-reader answers: a route of any method (an ASGI app, not a handler), so that no
    # method reaches the generic 405, whose Allow names every method routed on the path
    app.router.routes.append(Route(PATH, _NOT_ALLOWED, include_in_schema=False))
    app.add_middleware(PushLane, owner=app, handler=datalogger)


class PushLane:
    """ASGI, the outermost of the app's own layers (Starlette's and FastAPI's are outside
    it): a telegram POSTed to the v1 path as a urlencoded form (as dataloggers send it)
    goes straight to its handler, past FastAPI's routing, its endpoint machinery and the
    middleware between (about two fifths of the server's time for a push, where a
    datalogger's pushes come as fast as each is answered: BENCHMARKS.md). What the
    answer needs of them is kept: the Server-Timing header, an error answered by the
    app's handler for it (a form the parser refused, a client gone before its body
    ended, a store failure), and any other logged once and answered 500 (`CrashGuard`).
    Every other request, this path's other methods and bodies too, goes the usual way."""

    def __init__(self, app: ASGIApp, *, owner: FastAPI, handler: Handler) -> None:
        self.app, self.owner, self.handler = app, owner, handler
        self.lane = ServerTiming(CrashGuard(self._push))

    async def __call__(self, scope: ASGIScope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == PATH and \
                scope["method"] == "POST" and not scope.get("root_path") and \
                _FORM_HEADER in scope["headers"] and \
                sum(name == b"content-type" for name, _ in scope["headers"]) == 1:
            scope["app"] = self.owner  # as Starlette sets it: the handler reads its state
            await self.lane(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def _push(self, scope: ASGIScope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        try:
            response = await self.handler(request)
        except Exception as exc:  # noqa: BLE001 - answered by the app's handler, or raised
            response = await self._answer(request, exc)
        await response(scope, receive, send)

    async def _answer(self, request: Request, exc: Exception) -> Response:
        """The app's answer to ``exc`` by its handlers, looked up as Starlette's exception
        middleware does (an HTTP error's status first, then the error's classes); an
        error no handler takes is raised again, for `CrashGuard`."""
        handlers = self.owner.exception_handlers
        handler = handlers.get(exc.status_code) if isinstance(exc, HTTPException) else None
        if handler is None:  # (a handler of ``Exception`` is the server error middleware's)
            handler = next((handlers[cls] for cls in type(exc).__mro__
                            if cls in handlers and cls is not Exception), None)
        if handler is None:
            raise exc
        response = handler(request, exc)
        return await response if inspect.isawaitable(response) else response


FORM = "application/x-www-form-urlencoded"
_FORM_HEADER = (b"content-type", FORM.encode())
_FIELD = b"telegram="


def _sent_telegram(request: Request, body: bytes) -> bytes | None:
    """The telegram field's bytes as sent, when the body is a urlencoded form of that one
    field (what dataloggers send): they are decoded where the telegram is parsed (in the
    helper process under load), as the form's decoding would decode them (`pushed_text`).
    None for any other body, whose form is read here."""
    if request.headers.get("content-type") != FORM or not body.startswith(_FIELD) or \
            b"&" in body or b";" in body:  # (older python-multipart split at ';' too)
        return None
    return body[len(_FIELD):]


#: the answer to a method the v1 path does not take
_NOT_ALLOWED = Response(status_code=405, headers={"Allow": "POST"})

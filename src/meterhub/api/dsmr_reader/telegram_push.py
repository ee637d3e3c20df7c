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

import asyncio
import datetime as dt
import logging

from fastapi import FastAPI, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response
from starlette.routing import Route

from meterhub.api.bodies import bounded_body
from meterhub.api.dsmr_reader.common import MAX_BODY, guarded
from meterhub.dsmr.meter_log import STATUS_EVERY, MeterLog
from meterhub.dsmr.parse_helper import TelegramReader
from meterhub.dsmr.settings import DsmrSettings
from meterhub.dsmr.telegram import TelegramError, meter_device
from meterhub.ingest import GroupWriter
from meterhub.keys import Scope

log = logging.getLogger("meterhub.dsmr")
TEXT = "text/html; charset=utf-8"  #: what DSMR-reader (Django) labels its plain answers


def _text(body: str, status: int, headers: dict[str, str] | None = None) -> Response:
    return Response(body, status_code=status, media_type=TEXT, headers=headers)


def _denied() -> Response:
    return _text("Invalid auth key", 403)


def _throttled(headers: dict[str, str]) -> Response:
    return _text("Too many requests", 429, headers)


def install(app: FastAPI, settings: DsmrSettings, writer: GroupWriter,
            telegrams: TelegramReader) -> MeterLog:
    """Add the v1 push path; the meter's log it keeps (also ``app.state.dsmr_counters``,
    where the meter-statistics paths read it)."""
    counters = MeterLog(writer.hub.get_state, settings.device)
    app.state.dsmr_counters = counters
    saving: list[asyncio.Task[None]] = []  #: the save of a held-back status, if one waits

    async def save_status() -> None:
        await asyncio.sleep(STATUS_EVERY)
        state = counters.unsaved_state()
        if state:
            await writer.write(None, state)

    def save_status_soon() -> None:
        loop = asyncio.get_running_loop()
        if not saving or saving[0].done() or saving[0].get_loop() is not loop:
            saving[:] = [loop.create_task(save_status())]

    @app.post("/api/v1/datalogger/dsmrreading", include_in_schema=False)
    @guarded(Scope.WRITE, refuse=_denied, throttle=_throttled)
    async def datalogger(request: Request) -> Response:
        if await bounded_body(request, MAX_BODY) is None:
            return _text(f"Request body too large (at most {MAX_BODY} bytes)", 413)
        form = await request.form()
        text = form.get("telegram")
        # nothing but NULs and whitespace: 400 here, where DSMR-reader's form would pass a
        # NUL-only text on to fail its parse (500)
        if not isinstance(text, str) or not text.strip("\x00").strip():
            return _text("Invalid data", 400)
        # DSMR-reader's form: its CharField trims whitespace, then clean_telegram the NULs
        # at either end; that text is read, and kept as the meter's latest telegram
        text = text.strip().strip("\x00")
        try:
            with writer.arriving():
                telegram = await telegrams.read(text, dt.datetime.now(dt.UTC))
        except TelegramError as exc:
            state = counters.reject()
            log.warning("telegram rejected (%d so far): %s", counters.rejected, exc)
            await writer.write(None, state)
            return _text("Failed to parse telegram", 500)
        await writer.write(telegram, counters.accept(telegram))
        if counters.unsaved:
            save_status_soon()
        counters.accepted += 1
        if counters.accepted == 1:  # once per process: the meter's serial and zone
            await run_in_threadpool(writer.hub.add_devices, [meter_device(
                telegram, device=settings.device, tz=settings.timezone)])
        return _text("", 201)

    # every other method (OPTIONS and HEAD too) is 405 with an empty body and ``Allow: POST``,
    # as DSMR-reader answers: a route of any method (an ASGI app, not a handler), so that no
    # method reaches the generic 405, whose Allow names every method routed on the path
    app.router.routes.append(Route("/api/v1/datalogger/dsmrreading", _NOT_ALLOWED,
                                   include_in_schema=False))
    return counters


#: the answer to a method the v1 path does not take
_NOT_ALLOWED = Response(status_code=405, headers={"Allow": "POST"})

"""The FastAPI app: a thin HTTP shell over `meterhub.Hub`.

Query contract, as in the CLI and the Python API: ``device, channel, start, end, every,
tz, fn, unit, format``. Handlers that touch the store are plain ``def`` functions, so they
run in the thread pool (the store gives each thread its own cursor) and the event loop
stays free for the sync that `meterhub run` hosts beside the API. An answer kept in
memory (`meterhub.answers`) is sent from the event loop: no thread, no store.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import dataclasses
import logging
import re
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from typing import Annotated, Any, Literal

import orjson
import pyarrow as pa
import pyarrow.compute as pc
from fastapi import Depends, FastAPI, Path, Query, Request
from fastapi.openapi.utils import get_openapi
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response, StreamingResponse

from meterhub import __version__, encode, source_health
from meterhub.answers import AnswerScope
from meterhub.api import docs, dsmr_reader, energy, links, login, metrics, schemas
from meterhub.api.problems import Problem, install, problems
from meterhub.api.push import PUSH_LIMITS, item_problem, read_push
from meterhub.api.reads import Answering
from meterhub.api.security import KeyLimits, KeyRing, RateLimitHeaders, require
from meterhub.api.session import DEFAULT_HOURS, Sessions
from meterhub.api.timing import ServerTiming
from meterhub.clock import Clock
from meterhub.config import Settings
from meterhub.errors import InputError
from meterhub.hub import Hub
from meterhub.keys import ApiKey, RateLimit, Scope, new_key
from meterhub.model import TS_RANGE_TEXT
from meterhub.mqtt import health as mqtt_health
from meterhub.store import PageKey, Selection
from meterhub.timebase import zone

log = logging.getLogger("meterhub.api")

DEFAULT_LIMIT = 10_000
MAX_LIMIT = 5_000_000
PUSH_SOURCE = "api"
SMALL_ROWS = 20_000  #: pages and tables up to this size are answered in one piece

DeviceQ = Annotated[list[str] | None, Query(description="Device id; repeat for several.")]
ChannelQ = Annotated[list[str] | None, Query(description="Channel name; repeat for several.")]
SourceQ = Annotated[list[str] | None, Query(description="Source name; repeat for several.")]
StartQ = Annotated[str | None, Query(
    description="Start, inclusive, ISO 8601; naive times are read in tz (default UTC).")]
EndQ = Annotated[str | None, Query(description="End, exclusive, ISO 8601.")]
TzQ = Annotated[str, Query(description="IANA time zone for buckets and naive times.")]
UnitQ = Annotated[str | None, Query(description="Convert values to this unit, e.g. degF, MJ.")]
FormatQ = Annotated[Literal["json", "csv", "parquet", "arrow"] | None, Query(
    description="Output format; without it the Accept header decides (default JSON).")]

BINARY = {"schema": {"type": "string", "format": "binary"}}
TABLE_CONTENT = {"text/csv": {"schema": {"type": "string"}},
                 "application/vnd.apache.parquet": BINARY,
                 "application/vnd.apache.arrow.stream": BINARY}
READ_ERRORS = problems(400, 401, 403, 404, 429)
DELETED_SCHEMA = {"type": "object", "required": ["deleted"],
                  "properties": {"deleted": {"type": "integer", "minimum": 0}}}
CATALOG_ERRORS = problems(400, 401, 403, 429)


def negotiate(request: Request, given: str | None) -> encode.Format:
    """``format`` wins; else the known type the Accept header rates highest; else JSON."""
    if given is not None:
        return given  # type: ignore[return-value]
    offers: list[tuple[float, int, encode.Format]] = []
    for position, part in enumerate(request.headers.get("accept", "").split(",")):
        media, *params = (p.strip() for p in part.split(";"))
        quality = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if media.lower() in encode.ACCEPTED and quality > 0:
            offers.append((-quality, position, encode.ACCEPTED[media.lower()]))
    return min(offers)[2] if offers else "json"


def encode_cursor(key: PageKey) -> str:
    raw = orjson.dumps([key.device, key.channel, key.ts_us])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(text: str | None) -> PageKey | None:
    if text is None:
        return None
    try:
        device, channel, ts_us = orjson.loads(base64.urlsafe_b64decode(text + "=" * (-len(text)
                                                                                   % 4)))
        if not (isinstance(device, str) and isinstance(channel, str)
                and type(ts_us) is int and -(2**62) < ts_us < 2**62):
            raise ValueError
    except (ValueError, TypeError, binascii.Error, orjson.JSONDecodeError):
        raise Problem(400, "cursor is not one this server gave out: follow the next link "
                      "of the previous page, or start again without cursor") from None
    return PageKey(device, channel, ts_us)


def _chunks(table: pa.Table | pa.RecordBatchReader, fmt: encode.Format,
            tail: Callable[[], dict[str, Any]] | None = None) -> Iterator[bytes | memoryview]:
    return (encode.stream_json(table, key="data", tail=tail) if fmt == "json"
            else encode.stream_binary(table, fmt))


def _body(table: pa.Table, fmt: encode.Format) -> bytes:
    """A small table's whole answer."""
    return b"".join(_chunks(table, fmt))


def _table_response(table: pa.Table | pa.RecordBatchReader, fmt: encode.Format,
                    headers: dict[str, str] | None = None,
                    tail: Callable[[], dict[str, Any]] | None = None) -> Response:
    """Stream a reader; answer a small table in one piece (a stream costs a thread hop
    per chunk, which dominated small requests)."""
    body = _chunks(table, fmt, tail)
    if isinstance(table, pa.Table) and table.num_rows <= SMALL_ROWS:
        return Response(b"".join(body), media_type=encode.MEDIA_TYPES[fmt], headers=headers)
    return StreamingResponse(body, media_type=encode.MEDIA_TYPES[fmt], headers=headers)


def _json(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json")


#: a time that means the same whenever it is read: it begins with a whole date (pandas
#: also reads "now", "today", and a time of day alone as one on today's date)
_ABSOLUTE = re.compile(r"\d{4}-\d{2}-\d{2}")


def keepable(start: str | None, end: str | None) -> bool:
    """Whether an answer over [start, end) may be kept for the same question: only when
    neither bound depends on when it is read."""
    return all(bound is None or _ABSOLUTE.match(bound.strip()) for bound in (start, end))


def page_scope(selection: Selection, next_key: PageKey | None) -> AnswerScope:
    """What a page read: its selection's channels up to its end; a full page of one named
    channel only up to its last reading (a later one would be on a later page)."""
    scope = AnswerScope.of(selection)
    one = (selection.devices is not None and len(set(selection.devices)) == 1
           and selection.channels is not None and len(set(selection.channels)) == 1)
    if next_key is None or not one:
        return scope
    end = next_key.ts_us if scope.end_us is None else min(scope.end_us, next_key.ts_us)
    return dataclasses.replace(scope, end_us=end)


def _key_out(key: ApiKey, limits: KeyLimits) -> dict[str, Any]:
    return {"key_id": key.key_id, "name": key.name, "scope": key.scope.value,
            "rate_limit": str(limits.limit_of(key)), "created_at": key.created_at.isoformat(),
            "revoked_at": None if key.revoked_at is None else key.revoked_at.isoformat()}


def _written(table: pa.Table) -> dict[str, list[str]]:
    """The devices, channels and sources a push holds, each sorted (its links select them)."""
    return {name: sorted(pc.unique(table.column(column)).to_pylist())
            for name, column in (("devices", "device"), ("channels", "channel"),
                                 ("sources", "source"))}


def create_app(hub: Hub, *, settings: Settings | None = None,
               rate_limit: str = "600/minute",
               background: Callable[[], Coroutine[Any, Any, Any]] | None = None,
               clock: Clock | None = None) -> FastAPI:
    """The API over ``hub``; ``background`` (the scheduled sync) runs while it serves, and
    so does the MQTT link (`meterhub.mqtt`) when ``settings`` has a broker (`[mqtt]`).
    ``clock`` tells the DSMR statistics the time (the wall clock by default)."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        tasks: list[asyncio.Task[Any]] = []
        if background is not None:
            tasks.append(asyncio.create_task(background()))
        if settings is not None and settings.mqtt is not None:
            from meterhub.mqtt.link import MqttLink

            # telegrams from MQTT count one meter's rejections with the push path's
            app.state.mqtt = MqttLink(hub, settings.mqtt, telegrams=app.state.dsmr_intake,
                                      dsmr=settings.dsmr)
            tasks.append(asyncio.create_task(app.state.mqtt.run()))
        try:
            with app.state.counts.listening():
                yield
        finally:
            for task in tasks:  # first: the MQTT link takes telegrams while it runs
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await close_dsmr()

    # docs_url/redoc_url off: FastAPI's pages load from a CDN; docs.install serves ours
    app = FastAPI(title="meterhub", version=__version__, lifespan=lifespan,
                  docs_url=None, redoc_url=None,
                  description="Readings, aggregates and the catalog of one meterhub store. "
                              "Every path but /api/v1/health needs an API key "
                              "(`Authorization: Bearer <key>` or `X-API-Key`).")
    app.state.hub = hub
    app.state.settings = settings
    app.state.keys = KeyRing(hub.store)
    app.state.limits = KeyLimits(RateLimit.parse(rate_limit))
    # reads answered once per question, kept until a write changes them: the DSMR paths' too
    answering = app.state.answering = Answering(hub.answers)
    install(app)
    docs.install(app)
    if settings is None or settings.api.dashboard:
        from meterhub.dashboard import assets, pages

        manifest = assets.install(app)
        login.install(app, Sessions(hub, settings.api.session_hours if settings is not None
                                    else DEFAULT_HOURS), icon=manifest[pages.ICON])
        pages.install(app, manifest)
    app.add_middleware(RateLimitHeaders)
    # outermost but the DSMR push's lane (which times its own): the whole of the server's time
    app.add_middleware(ServerTiming)
    close_dsmr = dsmr_reader.install(app, hub, settings.dsmr if settings is not None else None,
                                     clock=clock)
    energy.install(app, hub, settings.dsmr if settings is not None else None, clock=clock)
    app.state.counts = counts = metrics.install(
        app, hub, settings.api.metrics if settings is not None else "loopback")
    read = Depends(require(Scope.READ))
    write = Depends(require(Scope.WRITE))
    admin = Depends(require(Scope.ADMIN))
    v1 = "/api/v1"

    @app.get(f"{v1}/health", tags=["health"], response_model=None,
             responses={200: {"model": schemas.Health}, **problems(503)})
    def health() -> Response:
        """Whether the store answers, and the version; no key needed."""
        try:
            hub.store.ping()
        except Exception:
            log.exception("health check failed")
            raise Problem(503, "the store does not answer; the server log has the details"
                          ) from None
        return _json({"status": "ok", "version": __version__, "store": "ok"})

    @app.get(f"{v1}/readings", tags=["readings"], response_model=None, dependencies=[read],
             responses={200: {"model": schemas.ReadingsPage, "content": TABLE_CONTENT,
                              "headers": {"Link": {"schema": {"type": "string"},
                                                   "description": "rel=next page"}}},
                        **READ_ERRORS})
    async def readings(request: Request, device: DeviceQ = None, channel: ChannelQ = None,
                       source: SourceQ = None, start: StartQ = None, end: EndQ = None,
                       tz: TzQ = "UTC", unit: UnitQ = None,
                       limit: Annotated[int, Query(
                           ge=1, le=MAX_LIMIT, description="Readings per page.")
                       ] = DEFAULT_LIMIT,
                       cursor: Annotated[str | None, Query(
                           description="Where a page starts: from the previous page's next "
                                       "link.")] = None,
                       format: FormatQ = None) -> Response:
        """Readings in (device, channel, ts) order, a page at a time (keyset paging).

        Follow ``next`` (JSON body) or the ``Link: rel="next"`` header until there is none.
        Times are UTC. Every format streams, so a page of millions of rows is fine. A
        repeated page of up to 20,000 readings is answered from memory until a write
        changes it.
        """
        fmt = negotiate(request, format)
        after = decode_cursor(cursor)
        # the next link names this server as the request did
        key = ("readings", fmt, str(request.base_url), request.url.query)
        kept = limit <= SMALL_ROWS and keepable(start, end)

        def compute() -> Response:
            with answering.reading(kept) as token:
                reader, next_key = hub.page(device=device, channel=channel, source=source,
                                            start=start, end=end, tz=tz, unit=unit,
                                            after=after, limit=limit)
                next_url = (str(request.url.include_query_params(
                    cursor=encode_cursor(next_key))) if next_key is not None else None)
                headers = {"Link": f'<{next_url}>; rel="next"'} if next_url else {}
                if limit > SMALL_ROWS:
                    return _table_response(reader, fmt, headers,
                                           tail=lambda: {"next": next_url})
                if not kept:  # streamed, or over times that move
                    return _table_response(reader.read_all() if limit <= SMALL_ROWS
                                           else reader, fmt, headers,
                                           tail=lambda: {"next": next_url})
                body = b"".join(_chunks(reader.read_all(), fmt,
                                        tail=lambda: {"next": next_url}))
                selection = hub.selection(device, channel, start, end, source, tz=tz)
                return answering.keep(key, token, page_scope(selection, next_key), body, fmt,
                                      headers)

        return await (answering.answer(key, fmt, compute) if kept else answering.run(compute))

    @app.get(f"{v1}/aggregates", tags=["readings"], response_model=None, dependencies=[read],
             responses={200: {"model": schemas.Aggregates, "content": TABLE_CONTENT},
                        **READ_ERRORS})
    async def aggregates(request: Request, device: DeviceQ = None, channel: ChannelQ = None,
                         source: SourceQ = None, start: StartQ = None, end: EndQ = None,
                         every: Annotated[str, Query(
                             description="Bucket size: 15min, 1h, 1d, 1w, 1mo, 1y ...")] = "1h",
                         tz: TzQ = "UTC",
                         fn: Annotated[list[str] | None, Query(
                             description="mean, min, max, first, last, count (instant), "
                                         "consumption (counter), sum (delta); errors (any "
                                         "kind: its sensor_error readings, only when asked); "
                                         "repeat for several. Default: all that apply but "
                                         "errors.")] = None,
                         unit: UnitQ = None, format: FormatQ = None) -> Response:
        """Per-kind aggregates per bucket, buckets aligned and labelled in ``tz``.

        A repeated question is answered from memory until a write changes its answer
        (a reading of its channels not later than its end, a delete or a catalog change).
        """
        fmt = negotiate(request, format)
        key = ("aggregates", fmt, request.url.query)
        kept = keepable(start, end)

        def compute() -> Response:
            with answering.reading(kept) as token:
                table = hub.aggregate(device=device, channel=channel, source=source,
                                      start=start, end=end, every=every, tz=tz, fn=fn,
                                      unit=unit, as_="arrow")
                if table.num_rows > SMALL_ROWS or not kept:
                    return _table_response(table, fmt)
                scope = AnswerScope.of(hub.selection(device, channel, start, end, source,
                                                     tz=tz))
                return answering.keep(key, token, scope, _body(table, fmt), fmt)

        # a kept answer goes out from the event loop: no thread, no store
        return await (answering.answer(key, fmt, compute) if kept else answering.run(compute))

    @app.get(f"{v1}/gaps", tags=["readings"], response_model=None, dependencies=[read],
             responses={200: {"model": schemas.Gaps}, **READ_ERRORS})
    def gaps(device: DeviceQ = None, channel: ChannelQ = None, source: SourceQ = None,
             start: StartQ = None, end: EndQ = None, tz: TzQ = "UTC") -> Response:
        """Missing expected intervals and seq jumps per channel."""
        zone(tz)
        selection = hub.selection(device, channel, start, end, source, tz=tz)
        return _table_response(hub.store.gaps(selection), "json")

    @app.post(f"{v1}/readings", tags=["readings"], response_model=None, dependencies=[write],
              openapi_extra={"requestBody": schemas.READINGS_BODY},
              responses={200: {"model": schemas.WriteSummary},
                         **problems(400, 401, 403, 413, 415, 429)})
    async def push(request: Request) -> Response:
        """Store a batch of readings (JSON array or CSV), idempotently by key.

        A bad item is reported with its 0-based ``index`` and nothing of the batch is
        written. Rows without ``source`` are stored under source "api". A batch may hold
        up to 60,000 readings in at most 8 MB of JSON or 4 MB of CSV (else 413).
        """
        media = request.headers.get("content-type", "application/json").split(";")[0]
        media = media.strip().lower()
        if media not in PUSH_LIMITS:
            raise Problem(415, f"cannot read {media!r}: send application/json (an array of "
                          "readings) or text/csv")
        try:
            # parsed and validated a slice at a time as it arrives (meterhub.api.push)
            table = await read_push(request, media, PUSH_SOURCE)
            if table.num_rows == 0:
                return _json({"received": 0, "written": 0, "batch": None,
                              **_written(table)})
            try:
                result = await run_in_threadpool(hub.write, table, source=PUSH_SOURCE,
                                                  origin="api")
            except InputError as exc:
                raise item_problem(exc, media) from None
        except Problem:
            counts.push("readings", "rejected")
            raise
        counts.push("readings", "stored")
        return _json({"received": result.rows, "written": result.written,
                      "batch": result.batch_id, **_written(table)})

    @app.delete(f"{v1}/readings", tags=["readings"], response_model=None,
                dependencies=[admin],
                responses={200: {"description": "how many readings were deleted",
                                 "content": {"application/json": {"schema": DELETED_SCHEMA}}},
                           **READ_ERRORS})
    def delete_readings(
            device: Annotated[list[str], Query(
                description="Device whose readings to delete; repeat for several.")],
            channel: ChannelQ = None,
            start: Annotated[str | None, Query(
                description="Start, inclusive, ISO 8601 (any year from 1 to 9999); naive "
                            "times are read in tz.")] = None,
            end: Annotated[str | None, Query(
                description="End, exclusive, ISO 8601 (any year from 1 to 9999).")] = None,
            tz: TzQ = "UTC",
            outside_range: Annotated[bool, Query(
                description="Delete only readings outside the times meterhub keeps "
                            f"({TS_RANGE_TEXT}), which reads leave out.")] = False,
    ) -> Response:
        """Delete a device's readings (of some channels, in [start, end)); admin only.

        Devices and channels stay. Bounds may lie outside the times meterhub keeps, so
        that rows stored there before writes were checked can be removed (or use
        ``outside_range``).
        """
        count = hub.delete(device=device, channel=channel, start=start, end=end, tz=tz,
                           outside_range=outside_range)
        return _json({"deleted": count})

    @app.get(f"{v1}/devices", tags=["catalog"], response_model=None, dependencies=[read],
             responses={200: {"model": schemas.Devices}, **CATALOG_ERRORS})
    def devices(source: SourceQ = None) -> Response:
        """Devices with their source, site and metadata."""
        table = hub.devices(as_="arrow")
        if source:
            table = table.filter(pc.is_in(table.column("source"), pa.array(source)))
        return _table_response(table, "json")

    @app.get(f"{v1}/channels", tags=["catalog"], response_model=None, dependencies=[read],
             responses={200: {"model": schemas.Channels}, **CATALOG_ERRORS})
    async def channels(request: Request, source: SourceQ = None, device: DeviceQ = None,
                       quantity: Annotated[list[str] | None, Query(
                           description="Quantity, e.g. temperature, energy; repeat for "
                                       "several.")] = None) -> Response:
        """Channels with kind, unit, reading count, first and newest measurement time.

        Asked again (the dashboard's overview polls it), answered from memory until a
        write to the devices asked about, or a catalog change."""
        key = ("channels", request.url.query)

        def compute() -> Response:
            with answering.reading() as token:
                table = hub.channels(device=device, source=source, as_="arrow")
                if quantity:
                    table = table.filter(pc.is_in(table.column("quantity"),
                                                  pa.array(quantity)))
                # any write to a device changes its channels' counts and newest readings
                scope = AnswerScope(None if device is None else frozenset(device), None,
                                    None)
                return answering.keep(key, token, scope, _body(table, "json"), "json")

        return await answering.answer(key, "json", compute)

    @app.get(f"{v1}/sources", tags=["catalog"], response_model=None, dependencies=[read],
             responses={200: {"model": schemas.Sources}, **CATALOG_ERRORS})
    def sources() -> Response:
        """Every configured or seen source with its sync health."""
        configured = settings.source_types() if settings else {}
        return _json({"data": source_health.sources(hub, configured)})

    @app.get(f"{v1}/mqtt", tags=["catalog"], response_model=None, dependencies=[read],
             responses={200: {"model": schemas.MqttLinks}, **CATALOG_ERRORS})
    def mqtt() -> Response:
        """The MQTT links' health (one per client id; none without `[mqtt]`): connected or
        down since when and why, states published, messages taken and rejected. ``silent``:
        no word for a minute (the process may have stopped)."""
        return _json({"data": mqtt_health.links(hub)})

    @app.get(f"{v1}/keys", tags=["keys"], response_model=None, dependencies=[admin],
             responses={200: {"model": schemas.Keys}, **CATALOG_ERRORS})
    def keys(request: Request) -> Response:
        """Every key, active or revoked (never the key itself)."""
        limits: KeyLimits = request.app.state.limits
        return _json({"data": [_key_out(k, limits) for k in hub.store.api_keys()]})

    @app.post(f"{v1}/keys", tags=["keys"], response_model=None, dependencies=[admin],
              status_code=201,
              responses={201: {"model": schemas.CreatedKey},
                         **problems(400, 401, 403, 409, 429)})
    def create_key(request: Request, body: schemas.NewKey) -> Response:
        """Make a key; the answer is the only time the key itself is shown."""
        record, text = new_key(body.name, body.scope, body.rate_limit)
        request.app.state.keys.add(record)
        return _json({**_key_out(record, request.app.state.limits), "key": text}, 201)

    @app.delete(f"{v1}/keys/{{key_id}}", tags=["keys"], response_model=None,
                dependencies=[admin], status_code=204,
                responses={204: {"description": "revoked"}, **READ_ERRORS})
    def revoke_key(request: Request,
                   key_id: Annotated[str, Path(description="The key's id")]) -> Response:
        """Revoke a key at once."""
        request.app.state.keys.revoke(key_id)
        return Response(status_code=204)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            spec = get_openapi(title=app.title, version=app.version,
                               description=app.description, routes=app.routes)
            # validation failures answer 400 problem+json (see problems.install)
            for path in spec.get("paths", {}).values():
                for operation in path.values():
                    operation.get("responses", {}).pop("422", None)
            for name in ("HTTPValidationError", "ValidationError"):
                spec.get("components", {}).get("schemas", {}).pop(name, None)
            spec["components"]["securitySchemes"] = {
                "bearer": {"type": "http", "scheme": "bearer"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"}}
            for route, path in spec["paths"].items():
                if not route.endswith("/health"):
                    for operation in path.values():
                        operation["security"] = [{"bearer": []}, {"apiKey": []}]
                if route == "/metrics":  # a key, unless [api] metrics lets the client in
                    for operation in path.values():
                        operation["security"].append({})
            app.openapi_schema = links.apply(spec)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


__all__ = ["create_app", "decode_cursor", "encode_cursor"]

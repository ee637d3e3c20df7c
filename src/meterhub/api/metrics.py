"""``GET /metrics``: the hub's health in Prometheus' text format (version 0.0.4), for a
scraper: per source its lag, last success, staleness, failing devices, its last sync's
calls and the calls left; the readings stored per source and written by this process;
pushes and their rejections; the MQTT links; and the store's size.

Who may read it is ``[api] metrics``: ``"loopback"`` (the default) answers a client on
the machine itself without a key and any other with a read key, ``"open"`` answers
anyone, ``"key"`` asks every client for a read key.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import math
import threading
from collections.abc import Iterable, Iterator
from typing import Any

from fastapi import FastAPI, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from meterhub import source_health
from meterhub.api.problems import problems
from meterhub.api.security import require
from meterhub.hub import Hub
from meterhub.keys import Scope
from meterhub.mqtt import health

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Counts:
    """What this process counts while it serves (`listening`): rows written, and pushes
    by path and outcome."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self._lock = threading.Lock()
        self.rows_written = 0
        self.pushes: dict[tuple[str, str], int] = {}

    @contextlib.contextmanager
    def listening(self) -> Iterator[None]:
        """Count the hub's writes meanwhile (the app's lifespan)."""
        stop = self.hub.listen(self._written)
        try:
            yield
        finally:
            stop()

    def _written(self, keys: Any) -> None:
        if keys is not None:
            with self._lock:
                self.rows_written += keys.num_rows

    def push(self, path: str, outcome: str) -> None:
        with self._lock:
            self.pushes[(path, outcome)] = self.pushes.get((path, outcome), 0) + 1


def install(app: FastAPI, hub: Hub, access: str) -> Counts:
    """Add ``GET /metrics``; the counts it reports (the push paths add to them)."""
    counts = Counts(hub)
    read = require(Scope.READ)

    @app.get("/metrics", tags=["health"], response_class=Response,
             responses={200: {"content": {CONTENT_TYPE: {"schema": {"type": "string"}}},
                              "description": "Prometheus' text format"},
                        **problems(401, 403, 429)})
    async def metrics(request: Request) -> Response:
        """The hub's health for Prometheus (see `meterhub.api.metrics`); a read key is
        needed unless ``[api] metrics`` lets this client in without one."""
        client = request.client.host if request.client else ""
        if not (access == "open" or (access == "loopback" and _loopback(client))):
            await read(request)
        text = await run_in_threadpool(exposition, hub, counts, app)
        return Response(text, media_type=CONTENT_TYPE)

    return counts


def exposition(hub: Hub, counts: Counts, app: FastAPI) -> str:
    families: list[str] = []

    def family(name: str, kind: str, help_: str,
               samples: Iterable[tuple[dict[str, str], float | int | None]]) -> None:
        lines = [f"# HELP {name} {help_}", f"# TYPE {name} {kind}"]
        for labels, value in samples:
            if value is None:
                continue
            shown = ",".join(f'{k}="{_escaped(v)}"' for k, v in labels.items())
            lines.append(f"{name}{{{shown}}} {_number(value)}" if shown else
                         f"{name} {_number(value)}")
        families.append("\n".join(lines))

    sources = source_health.sources(hub, _configured(app))
    calls: dict[str, int] = {}
    for row in hub.store.sync_status().to_pylist():
        calls[row["source"]] = calls.get(row["source"], 0) + int(row["calls"] or 0)
    family("meterhub_source_lag_seconds", "gauge",
           "Seconds from the source's newest reading to now.",
           [({"source": s["name"]}, s["lag_seconds"]) for s in sources])
    family("meterhub_source_last_success_timestamp_seconds", "gauge",
           "When the source's last sync succeeded (Unix time).",
           [({"source": s["name"]}, _unix(s["last_success"])) for s in sources])
    family("meterhub_source_stale", "gauge",
           "1 while the source is failing or more than three of its intervals behind.",
           [({"source": s["name"]}, int(s["stale"])) for s in sources])
    family("meterhub_source_failing_devices", "gauge",
           "Devices of the source whose last sync failed.",
           [({"source": s["name"]}, s["failing_devices"]) for s in sources])
    family("meterhub_source_last_sync_calls", "gauge",
           "Calls the source's last sync of each of its devices made, together.",
           [({"source": name}, value) for name, value in sorted(calls.items())])
    family("meterhub_source_calls_left", "gauge",
           "Calls the vendor last said were left in its window.",
           [({"source": s["name"]}, (s["quota"] or {}).get("calls_left")) for s in sources])
    per_source: dict[str, int] = {}
    for row in hub.channels(as_="arrow").to_pylist():
        per_source[row["source"]] = per_source.get(row["source"], 0) + int(row["readings"])
    family("meterhub_readings", "gauge", "Readings stored, per source.",
           [({"source": name}, value) for name, value in sorted(per_source.items())])
    family("meterhub_rows_written_total", "counter",
           "Readings this process wrote (one written again counts again).",
           [({}, counts.rows_written)])
    family("meterhub_pushes_total", "counter",
           "Pushes this process took (path readings: POST /api/v1/readings; telegram: "
           "DSMR-reader's v1 push path and MQTT), by outcome.",
           [({"path": path, "outcome": outcome}, value)
            for (path, outcome), value in sorted(_pushes(counts, app).items())])
    meter = getattr(app.state, "dsmr_counters", None)
    family("meterhub_dsmr_rejected_telegrams_total", "counter",
           "Telegrams the meter's pushes had rejected, ever (DSMR-reader's count).",
           [({}, meter.rejected if meter is not None else None)])
    links = health.links(hub)
    for name, key, help_, kind in (
            ("meterhub_mqtt_connected", "connected", "1 while the MQTT link is up.", "gauge"),
            ("meterhub_mqtt_published_total", "published", "States the link published.",
             "counter"),
            ("meterhub_mqtt_messages_total", "taken", "Ingest messages the link took.",
             "counter"),
            ("meterhub_mqtt_rejected_total", "rejected", "Ingest messages dropped as bad.",
             "counter")):
        family(name, kind, help_ + " As the link last told (every 30 s at least).",
               [({"client_id": link["client_id"]}, int(link[key])) for link in links])
    family("meterhub_mqtt_silent", "gauge",
           "1 when the link's process has said nothing for a minute.",
           [({"client_id": link["client_id"]}, int(link["silent"])) for link in links])
    family("meterhub_store_bytes", "gauge", "What the store takes on disk.",
           [({}, hub.store.size_bytes())])
    return "\n".join(families) + "\n"


def _pushes(counts: Counts, app: FastAPI) -> dict[tuple[str, str], int]:
    """The readings pushes this process counted, and the telegrams it stored (its meter
    log counts them; rejected telegrams are the log's count of all time:
    ``meterhub_dsmr_rejected_telegrams_total``)."""
    out = dict(counts.pushes)
    meter = getattr(app.state, "dsmr_counters", None)
    if meter is not None:
        out[("telegram", "stored")] = meter.accepted
    return out


def _configured(app: FastAPI) -> dict[str, str | None]:
    settings = getattr(app.state, "settings", None)
    return settings.source_types() if settings else {}


def _unix(iso: str | None) -> float | None:
    return None if iso is None else dt.datetime.fromisoformat(iso).timestamp()


def _number(value: float | int) -> str:
    """A sample's value: whole numbers exact (a store's bytes), floats as Python reads
    them back, and the format's words for the others."""
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(value)


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _escaped(value: str) -> str:
    """A label value in the text format: backslash, quote and line feed escaped."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")

"""What every family of the corpus shares: a store served as `meterhub serve` serves it,
a snapshot of everything the store holds, the sweep of every read path, and the checks of
a refusal."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

import meterhub
from meterhub.api import create_app
from meterhub.api.server import uvicorn_options
from meterhub.demo import serve_in_thread
from meterhub.hub import Hub
from meterhub.keys import new_key

PROBLEM = "application/problem+json"
#: every table of the store: a refused input changes none of them
TABLES = ("readings", "channels", "devices", "sites", "state", "api_keys", "batches",
          "sync_status", "sync_cursors", "meta")
#: the read paths, REST and DSMR-reader's: each answers 200 before a family runs and after
#: it is done
REST_READS = (
    "/api/v1/health",
    "/api/v1/readings?limit=100",
    "/api/v1/readings?format=csv&limit=100",
    "/api/v1/aggregates?every=1d&tz=Europe/Amsterdam",
    "/api/v1/gaps",
    "/api/v1/devices",
    "/api/v1/channels",
    "/api/v1/sources",
    "/api/v1/keys",
)
DSMR_READS = (
    "/api/v2/datalogger/dsmrreading",
    "/api/v2/statistics/day",
    "/api/v2/statistics/hour",
    "/api/v2/consumption/today",
    "/api/v2/consumption/electricity-live",
    "/api/v2/consumption/gas-live",
    "/api/v2/datalogger/meter-statistics",
    "/api/v2/consumption/energy-supplier-prices",
    "/api/v2/application/version",
)
READS = REST_READS + DSMR_READS
#: what every case checks still answers, a cheap read of the store per family (a refused
#: write writes nothing, so only the process could have been harmed); every read path is
#: swept when a family is done (`serve`)
REST_QUICK = ("/api/v1/devices",)
DSMR_QUICK = ("/api/v2/consumption/energy-supplier-prices",)

Snapshot = dict[str, tuple[int, int]]


def snapshot(hub: Hub) -> Snapshot:
    """Per table: its rows and the sum of their hashes, whole rows (one query, on the
    thread that opened the store, with the store's own connection: what its reads and
    writes see)."""
    query = " UNION ALL ".join(f"SELECT '{table}', count(*), sum(hash({table})) FROM {table}"
                               for table in TABLES)
    return {table: (int(count), int(hashes or 0))
            for table, count, hashes in hub.store._con.execute(query).fetchall()}


def changes(before: Snapshot, after: Snapshot) -> dict[str, str]:
    """The tables whose rows changed, with their row counts before and after."""
    return {table: f"{before[table][0]} rows -> {after[table][0]} rows"
            for table in TABLES if before[table] != after[table]}


@dataclass
class Served:
    """A store on disk served on loopback by uvicorn with `meterhub serve`'s options."""

    hub: Hub
    base: str
    keys: dict[str, str]  #: scope -> key
    client: httpx.Client  #: with the admin key, keep-alive
    started: bool = False  #: every read path answered on the seeded store

    def call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return self.client.request(method, self.base + path, **kwargs)

    def sweep(self, paths: tuple[str, ...] = READS) -> None:
        """Each read path answers 200, as it did before the corpus ran."""
        wrong: dict[str, object] = {}
        for path in paths:
            try:
                status = self.call("GET", path).status_code
            except httpx.TransportError as exc:
                wrong[path] = type(exc).__name__
                continue
            if status != 200:
                wrong[path] = status
        assert not wrong, f"reads that no longer answer: {wrong}"


@contextlib.contextmanager
def serve(path: Path) -> Iterator[Served]:
    """The store at ``path`` served as `meterhub serve` serves it (the guarded httptools
    protocol and its limits), with a key of every scope; the admin key's client."""
    with meterhub.open(f"duckdb:///{path}") as hub:
        keys = {}
        for scope in ("read", "write", "admin"):
            record, text = new_key(f"corpus-{scope}", scope)
            hub.store.add_key(record)
            keys[scope] = text
        app = create_app(hub, rate_limit="1000000/minute")
        options = {**uvicorn_options(), "log_config": None, "lifespan": "on"}
        base, server, thread = serve_in_thread(app, **options)
        headers = {"Authorization": f"Bearer {keys['admin']}", "X-AUTHKEY": keys["admin"]}
        try:
            with httpx.Client(headers=headers, timeout=60) as client:
                served = Served(hub, base, keys, client)
                yield served
                if served.started:  # the family ran: every read path still answers
                    served.sweep()
        finally:
            server.should_exit = True
            thread.join(timeout=10)


def start_reads(served: Served) -> None:
    """Check that every read path answers 200 on the seeded store."""
    for path in READS:
        response = served.call("GET", path)
        assert response.status_code == 200, (path, response.text[:300])
    served.started = True


def refused(response: httpx.Response, *words: str, status: int = 400) -> str:
    """The problem+json detail of a refusal, checked to be ``status`` and to hold every one
    of ``words`` (the field or row it names, what is wrong)."""
    assert response.status_code == status, (response.status_code, response.text[:500])
    assert response.headers["content-type"] == PROBLEM, response.headers
    detail: str = response.json()["detail"]
    missing = [word for word in words if word not in detail]
    assert not missing, f"{missing} not in {detail[:500]!r}"
    assert "Traceback" not in detail
    return detail

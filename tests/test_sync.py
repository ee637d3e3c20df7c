"""The sync engine over all four emulators, in-process, on virtual time."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import socket
import time
from dataclasses import dataclass
from typing import Any

import httpx
import pyarrow as pa
import pytest

import meterhub
from meterhub.api import create_app
from meterhub.clock import VirtualClock
from meterhub.config import parse
from meterhub.emulators import climkit, copper, tandd, zentra
from meterhub.hub import Hub
from meterhub.keys import new_key
from meterhub.sync import (
    SOURCE_ROW,
    SourceProgress,
    quota_state,
    run_forever,
    sync_all,
    sync_source,
)
from tests.api.conftest import Client
from tests.clickhouse_fixtures import MakeDatabase
from tests.clickhouse_servers import ClickHouseServer


@dataclass
class Worlds:
    clock: VirtualClock
    zentra: zentra.ZentraWorld
    tandd: tandd.TanddWorld
    climkit: climkit.ClimkitWorld
    copper: copper.CopperWorld

    def transports(self) -> dict[str, httpx.AsyncBaseTransport]:
        return {name: httpx.ASGITransport(app=module.create_app(world))
                for name, module, world in (("tahmo", zentra, self.zentra),
                                            ("lab", tandd, self.tandd),
                                            ("site", climkit, self.climkit),
                                            ("homes", copper, self.copper))}

    def calls(self) -> int:
        return sum(w.calls for w in (self.zentra, self.tandd, self.climkit, self.copper))


def worlds(days: float = 6.9) -> Worlds:
    clock = VirtualClock(1_700_000_000.0)
    return Worlds(clock, zentra.ZentraWorld.create(clock, devices=2, days=days),
                  tandd.TanddWorld.create(clock, devices=2, days=days),
                  climkit.ClimkitWorld.create(clock, sites=1, meters=2, days=days),
                  copper.CopperWorld.create(clock, meters=2, days=days))


def config(w: Worlds, lab_password: str = tandd.LOGIN_PASS,
           **changed: dict[str, Any]) -> list[Any]:
    """The four sources with the emulators' credentials; ``changed`` overrides keys of a
    source by name (``tahmo={"token": "wrong"}``)."""
    tables = [
        {"name": "tahmo", "type": "zentra", "base_url": "https://tahmo.zentracloud.com",
         "token": w.zentra.token, "devices": sorted(w.zentra.devices)},
        {"name": "lab", "type": "tandd", "api_key": tandd.API_KEY,
         "login_id": tandd.LOGIN_ID, "login_pass": lab_password},
        {"name": "site", "type": "climkit", "username": climkit.USERNAME,
         "password": climkit.PASSWORD},
        {"name": "homes", "type": "copper", "client_id": copper.CLIENT_ID,
         "client_secret": copper.CLIENT_SECRET, "enterprise_id": copper.ENTERPRISE},
    ]
    return parse({"source": [{**t, **changed.get(str(t["name"]), {})} for t in tables]},
                 environ={}).sources


class SkewedClock:
    """Our side's wall clock: the vendor's time plus ``offset`` (a clock that jumped or was
    set back); its sleeps, like asyncio's, run on elapsed time and ignore the offset."""

    def __init__(self, vendor: VirtualClock) -> None:
        self.vendor, self.offset = vendor, 0.0
        self.slack = vendor.slack

    def now(self) -> float:
        return self.vendor.now() + self.offset

    async def sleep(self, seconds: float) -> None:
        await self.vendor.sleep(seconds)


def run(hub: Hub, w: Worlds, sources: list[Any], **options: Any) -> list[SourceProgress]:
    return asyncio.run(sync_all(hub, sources, clock=w.clock, transports=w.transports(),
                                **options))


def test_a_sync_of_every_vendor_equals_the_emulators_ground_truth() -> None:
    w = worlds()
    with meterhub.open("duckdb:///:memory:") as hub:
        results = run(hub, w, config(w))
        assert [r.error for r in results] == [None] * 4
        assert [r.failed for r in results] == [0] * 4
        for sn in w.zentra.devices:
            _, mrid = w.zentra.records(sn)
            got = hub.readings(device=sn, channel="air_temperature")
            assert got["seq"].tolist() == mrid[: len(got)].tolist()
            assert len(got) >= len(mrid) - 1
        for serial in w.tandd.loggers:
            t, _ = w.tandd.records(serial)
            got = hub.readings(device=serial, channel="temperature", as_="arrow")
            seconds = got.column("ts").cast(pa.int64()).to_numpy() // 10**6
            assert seconds.tolist() == t.tolist()
        for meter in next(iter(w.climkit.sites.values())).meters:
            starts, values = w.climkit.truth(meter.id)
            channel = "energy" if meter.mode == "consumption" else f"energy_{meter.mode}"
            got = hub.readings(device=meter.id, channel=channel)
            assert len(got) == len(starts)
            assert got["value"].sum() == pytest.approx(values.sum())
        for meter_id in w.copper.meters:
            starts, _ = w.copper.truth(meter_id)
            assert hub.count(device=meter_id, channel="usage") == len(starts)
        assert w.zentra.rejected == w.tandd.rejected == w.climkit.rejected == \
            w.copper.rejected == 0
        assert len(hub.store.cursors()) == 2 + 2 + 3 + 2  # Climkit's sensor too


def test_a_second_sync_makes_only_the_calls_new_data_needs() -> None:
    w = worlds(days=2)
    with meterhub.open("duckdb:///:memory:") as hub:
        run(hub, w, config(w))
        count = hub.count()
        before = w.calls()
        w.clock.advance(20 * 60)  # twenty minutes later
        results = run(hub, w, config(w))
        assert all(r.error is None and r.failed == 0 for r in results)
        made = w.calls() - before
        # per vendor: ZENTRA one call a device; T&D one; Climkit discovery 3 + 2 a meter + 1
        # sensor + a login; Copper listings 2 + a usage call a meter whose hour completed
        assert made <= 2 + 2 + (3 + 1 + 4 + 1 + 1) + (2 + 2 + 1)
        assert hub.count() > count


def test_one_source_with_a_wrong_password_fails_alone() -> None:
    w = worlds(days=1)
    with meterhub.open("duckdb:///:memory:") as hub:
        results = {r.name: r for r in run(hub, w, config(w, lab_password="wrong"))}
        assert results["lab"].error is not None
        assert "source lab" in results["lab"].error
        assert "login_pass" in results["lab"].error
        assert "wrong" not in results["lab"].error
        assert all(results[n].error is None for n in ("tahmo", "site", "homes"))
        assert w.tandd.calls == 1  # refused once, never retried
        assert hub.count(source="homes") > 0


def test_since_rereads_an_older_window_without_duplicates() -> None:
    w = worlds(days=3)
    sources = [s for s in config(w) if s.name == "lab"]
    with meterhub.open("duckdb:///:memory:") as hub:
        run(hub, w, sources)
        count = hub.count()
        run(hub, w, sources, since="2023-11-13")
        assert hub.count() == count


def test_dry_run_plan_calls_nobody_and_is_within_20_percent() -> None:
    from meterhub.sync import plan_source

    w = worlds(days=3)
    with meterhub.open("duckdb:///:memory:") as hub:
        run(hub, w, config(w))
        w.clock.advance(2 * 86400)  # two days later
        before = w.calls()
        plans = [plan_source(hub, s, now=w.clock.now()) for s in config(w)]
        assert w.calls() == before  # planning asked no vendor anything
        run(hub, w, config(w))
        made = w.calls() - before
        estimate = sum(p.calls for p in plans)
        assert abs(estimate - made) <= 0.2 * made, (estimate, made, plans)
        zentra_plan = next(p for p in plans if p.name == "tahmo")
        assert zentra_plan.records == pytest.approx(2 * 2 * 288, rel=0.05)


def test_run_forever_keeps_the_store_in_step_within_limits() -> None:
    w = worlds(days=1)
    rounds: list[int] = []
    with meterhub.open("duckdb:///:memory:") as hub:
        done = asyncio.run(run_forever(
            hub, config(w), every=3600.0, clock=w.clock, transports=w.transports(),
            rounds=4, on_round=lambda n, results: rounds.append(
                sum(r.readings for r in results))))
        assert done == 4
        assert rounds[0] > 0
        assert all(0 < n < rounds[0] for n in rounds[1:])  # each later round: the new hour
        assert w.zentra.rejected == w.tandd.rejected == w.climkit.rejected == \
            w.copper.rejected == 0
        t, _ = w.tandd.records("52120001")
        assert hub.count(device="52120001", channel="temperature") == len(t)


def test_run_forever_keeps_its_period_in_elapsed_time_when_the_wall_clock_steps() -> None:
    w = worlds(days=1)
    clock = SkewedClock(w.clock)
    steps = {1: -3600.0, 2: 5 * 3600.0}  # set back an hour, then five hours forward
    began: list[float] = []  # each round's start, in elapsed (the vendor's) time

    def on_round(n: int, results: list[SourceProgress]) -> None:
        assert all(r.error is None and r.failed == 0 for r in results), results
        began.append(results[0].started - clock.offset)
        clock.offset += steps.get(n, 0.0)  # the wall clock steps between rounds

    with meterhub.open("duckdb:///:memory:") as hub:
        done = asyncio.run(run_forever(
            hub, [s for s in config(w) if s.name in ("tahmo", "lab")], every=900.0,
            clock=clock, transports=w.transports(), rounds=4, on_round=on_round))
    assert done == 4
    # a round every 15 minutes, the step back costing no hour and the step forward
    # starting no round early
    assert [b - began[0] for b in began] == pytest.approx([0.0, 900.0, 1800.0, 2700.0])


def test_run_forever_reports_a_round_the_store_failed_and_goes_on(
        clickhouse_single: ClickHouseServer, clickhouse_database: MakeDatabase) -> None:
    w = worlds(days=1)
    lab = [s for s in config(w) if s.name == "lab"]
    database = clickhouse_database(clickhouse_single)
    outcomes: list[list[str | None]] = []

    def on_round(n: int, results: list[SourceProgress]) -> None:
        outcomes.append([r.error for r in results])
        # in round 2 the readings table is missing when the loggers' pages are written
        # (the store fails inside the devices' tasks); in round 3 it is back
        if n in (1, 2):
            old, new = ("readings", "away") if n == 1 else ("away", "readings")
            clickhouse_single.query(f"RENAME TABLE {database}.{old} TO {database}.{new}")

    with meterhub.open(f"clickhouse://{clickhouse_single.host}:"
                       f"{clickhouse_single.http_port}/{database}") as hub:
        done = asyncio.run(run_forever(hub, lab, every=3600.0, clock=w.clock,
                                       transports=w.transports(), rounds=3,
                                       on_round=on_round))
        assert done == 3
        assert outcomes[0] == [None]
        (failed,), = outcomes[1:2]
        assert failed is not None
        assert failed.startswith("source lab: the store failed: ClickHouse: Code: 60"), failed
        assert outcomes[2] == [None]
        # the third round went on from the cursors: nothing lost, nothing twice
        assert len(w.tandd.loggers) == 2
        for device in w.tandd.loggers:
            t, _ = w.tandd.records(device)
            assert hub.count(device=device, channel="temperature") == len(t)


class Refusing(httpx.AsyncBaseTransport):
    """ZENTRA's emulator, where the token is refused (401) for one station after five
    minutes, while another station's answer takes an hour."""

    def __init__(self, w: Worlds, refused: str, slow: str) -> None:
        self.inner = w.transports()["tahmo"]
        self.clock, self.refused, self.slow = w.clock, refused, slow

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        device = request.url.params.get("device_sn")
        if device == self.refused:
            await self.clock.sleep(300)
            return httpx.Response(401, json={"detail": "Invalid token."})
        if device == self.slow:
            await self.clock.sleep(3600)
        return await self.inner.handle_async_request(request)


def test_refused_credentials_mid_sync_leave_each_device_row_saying_what_happened() -> None:
    w = worlds(days=1)
    w.zentra = zentra.ZentraWorld.create(w.clock, devices=3, days=1)
    [source] = [s for s in config(w) if s.name == "tahmo"]
    finished, refused, cut_off = sorted(w.zentra.devices)
    with meterhub.open("duckdb:///:memory:") as hub:
        result = asyncio.run(sync_source(hub, source, clock=w.clock,
                                         transport=Refusing(w, refused, cut_off)))
        assert result.error is not None
        assert "refused the credentials" in result.error
        assert result.done == 1
        rows = {row["device"]: row for row in hub.store.sync_status().to_pylist()}
        # the station synced before the refusal keeps its success
        assert rows[finished]["last_error"] is None
        assert rows[finished]["last_success"] is not None
        assert rows[finished]["readings"] == hub.count(device=finished) > 0
        assert set(rows) == {finished, refused, cut_off, SOURCE_ROW}
        # the refusal is told once where it belongs: the source, and each station not synced
        for device in (SOURCE_ROW, refused, cut_off):
            assert "refused the credentials" in rows[device]["last_error"], rows[device]
            assert rows[device]["last_success"] is None
        # accepted again: the next sync clears every row
        again = asyncio.run(sync_source(hub, source, clock=w.clock,
                                        transport=w.transports()["tahmo"]))
        assert (again.error, again.failed) == (None, 0)
        assert [r for r in hub.store.sync_status().to_pylist() if r["last_error"]] == []


def test_a_source_whose_host_refuses_says_which_host_and_what_to_check_quickly() -> None:
    with socket.socket() as probe:  # a loopback port that was free a moment ago
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sources = parse({"source": [
        {"name": "lab", "type": "tandd", "base_url": f"http://127.0.0.1:{port}",
         "api_key": tandd.API_KEY, "login_id": tandd.LOGIN_ID,
         "login_pass": tandd.LOGIN_PASS}]}, environ={}).sources
    with meterhub.open("duckdb:///:memory:") as hub:
        started = time.monotonic()
        [result] = asyncio.run(sync_all(hub, sources))  # the real clock and network
        took = time.monotonic() - started
        assert result.error is not None
        assert result.error.startswith("source lab: ")
        assert f"cannot reach http://127.0.0.1:{port} (connection refused)" in result.error
        assert "check that the host is up and that the source's base_url in meterhub.toml " \
            "is right" in result.error
        assert tandd.LOGIN_PASS not in result.error
        assert took < 5.0  # was ~15 s of retries against a port nobody listens on
        [status] = hub.store.sync_status().to_pylist()
        assert f"127.0.0.1:{port}" in status["last_error"]


def test_the_calls_left_a_vendor_tells_are_kept_for_the_overview() -> None:
    w = worlds(days=1)
    with meterhub.open("duckdb:///:memory:") as hub:
        started = w.clock.now()
        run(hub, w, config(w))
        # T&D sends X-RateLimit-* on every answer; its last one was a data call
        told = json.loads(hub.get_state(quota_state("lab")) or "null")
        data = w.tandd.limits["data"]
        assert told["calls_limit"] == data.calls
        assert told["window_seconds"] == data.period
        assert told["calls_left"] == data.calls - 2  # a data call a logger, this minute
        said = dt.datetime.fromisoformat(told["as_of"]).timestamp()
        assert int(started) <= said <= w.clock.now()
        # the others tell nothing of their limits (ZENTRA only in a 429's words)
        assert [hub.get_state(quota_state(name)) for name in ("tahmo", "site", "homes")] == [
            None, None, None]
        record, key = new_key("viewer", "read")
        hub.store.add_key(record)
        answer = Client(create_app(hub), key).get("/api/v1/sources").json()["data"]
        shown = {s["name"]: s["quota"] for s in answer}
        assert shown["lab"] == told
        assert shown["tahmo"] is None

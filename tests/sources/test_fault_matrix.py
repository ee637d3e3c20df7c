"""The vendor fault matrix (issue 15): every connector against its emulator under each fault.

A case runs the same syncs over two identical worlds on virtual time: once undisturbed
(the reference, computed once per worker and plan) and once with a fault scheduled in the
vendor's emulator (`meterhub.emulators.kit.Faults`, reached through `EmulatorTransport`,
which holds the client's read timeout on the emulator's clock and shows a dropped
connection as the network would). Then:

- a fault the retries absorb leaves no trace: the sync reports no failure, and the store
  holds exactly the reference's readings and cursors;
- a fault that outlasts the retries is named in words, in the sync's result and in the
  store's sync status (what ``meterhub status`` shows), while it lasts; once it clears,
  one more sync makes the store equal to the reference and every status row clear.

Equality is over the full reading tables, every column, so a reading lost, duplicated or
altered fails. Vendors: ZENTRA, T&D WebStorage, Climkit and Copper against their emulators
(`tests.test_sync`'s worlds and source tables), and DSMR-reader against meterhub's own
DSMR-reader-compatible API behind `FaultInjector`.
"""

from __future__ import annotations

import asyncio
import functools
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from starlette.types import Receive, Scope, Send

import meterhub
from meterhub.clock import VirtualClock
from meterhub.config import parse
from meterhub.emulators import climkit, copper, tandd, zentra
from meterhub.emulators.kit import EmulatorTransport, Fault, FaultInjector, Faults
from meterhub.hub import Hub
from meterhub.keys import new_key
from meterhub.sources.base import SourceConfig, connector_class
from meterhub.sync import SOURCE_ROW, SourceProgress, sync_source
from tests.test_sync import SkewedClock, config, worlds

DAYS = 3.0  #: history at the first sync
STEP = 6 * 3600.0  #: new data between two syncs
JUMP = 86400.0  #: how far our clock jumps
TIMEOUT = 30.0  #: the client's read timeout (`meterhub.http.make_client`)


@dataclass
class Remote:
    """One vendor as a sync meets it: its clock, faults and app, and the source's table."""

    clock: VirtualClock
    faults: Faults
    app: Any
    source: SourceConfig
    grow: Callable[[float], None]  #: let the vendor's data reach this time, and stop there
    logins: Callable[[], int] = lambda: 0  #: sessions the vendor opened (token vendors)


def _emulated(name: str) -> Remote:
    w = worlds(days=DAYS)
    world: Any
    world, module = {"tahmo": (w.zentra, zentra), "lab": (w.tandd, tandd),
                     "site": (w.climkit, climkit), "homes": (w.copper, copper)}[name]

    def grow(t: float) -> None:
        world.horizon = t

    logins = {"site": lambda: w.climkit.auths, "homes": lambda: w.copper.tokens_issued}
    source = next(s for s in config(w) if s.name == name)
    return Remote(w.clock, world.faults, module.create_app(world), source, grow,
                  logins.get(name, lambda: 0))


def p1(start: int, stop: int) -> pd.DataFrame:
    """A DSMR meter's readings every 5 minutes in [start, stop), gas each hour on the hour."""
    t = np.arange(start - start % 300, stop, 300, dtype=np.int64)
    t = t[t >= start]
    n = t // 60
    series = {"electricity_delivered_1": ("kWh", "counter", 1000 + 0.004 * n),
              "electricity_delivered_2": ("kWh", "counter", 2000 + 0.006 * n),
              "electricity_returned_1": ("kWh", "counter", 100 + 0.001 * n),
              "electricity_returned_2": ("kWh", "counter", 50 + 0.002 * (n // 7)),
              "electricity_currently_delivered": ("kW", "instant", 0.2 + (n % 13) / 10),
              "electricity_currently_returned": ("kW", "instant", (n % 5) / 10)}
    stamps = pd.to_datetime(t, unit="s", utc=True)
    frames = [pd.DataFrame({"device": "p1", "channel": channel, "ts": stamps,
                            "value": np.round(values, 3), "unit": unit, "kind": kind})
              for channel, (unit, kind, values) in series.items()]
    hours = t[t % 3600 == 0]
    frames.append(pd.DataFrame({"device": "p1", "channel": "extra_device_delivered",
                                "ts": pd.to_datetime(hours, unit="s", utc=True),
                                "value": np.round(500 + 0.1 * (hours // 3600 % 10_000), 3),
                                "unit": "m³", "kind": "counter"}))
    return pd.concat(frames, ignore_index=True)


#: the remote instance's first reading, two days before the first sync: that sync then finds
#: a whole day's statistics (a day is made once the next day's gas is in), so a stale copy
#: of its answer reaches back before the next sync's bound and is told apart; a stale
#: answer holding only the rows at the cursor is a valid answer too, for any client
DSMR_START = 1_700_000_000 - 2 * 86400
#: remote DSMR-reader instances by the time their data reaches: (hub, app), once per worker
_INSTANCES: dict[int, tuple[Hub, Any]] = {}


@functools.cache
def _key() -> tuple[Any, str]:
    return new_key("puller", "read")


def _instance(horizon: int) -> Any:
    """meterhub's DSMR-reader-compatible API over a meter's readings up to ``horizon``."""
    from meterhub.api import create_app

    if horizon not in _INSTANCES:
        remote = meterhub.open("duckdb:///:memory:")
        remote.store.add_key(_key()[0])
        remote.write(p1(DSMR_START, horizon + 1), source="dsmr")
        _INSTANCES[horizon] = remote, create_app(remote, rate_limit="100000/minute")
    return _INSTANCES[horizon][1]


@pytest.fixture(scope="module", autouse=True)
def _close_instances() -> Iterator[None]:
    yield
    for remote, _ in _INSTANCES.values():
        remote.close()
    _INSTANCES.clear()


def _dsmr() -> Remote:
    """A remote DSMR-reader instance (meterhub's own API) behind the faults; its data grows
    by switching to the instance whose data reaches that far."""
    clock = VirtualClock(1_700_000_000.0)
    faults = Faults()
    current: list[Any] = []

    async def instance(scope: Scope, receive: Receive, send: Send) -> None:
        await current[0](scope, receive, send)

    def grow(t: float) -> None:
        current[:] = [_instance(int(t))]

    source = parse({"source": [{"name": "home", "type": "dsmr_reader",
                                "base_url": "http://dsmr.test", "api_key": _key()[1]}]},
                   environ={}).sources[0]
    return Remote(clock, faults, FaultInjector(instance, faults, clock), source, grow)


@dataclass(frozen=True)
class Vendor:
    name: str  #: the connector type
    data: str  #: a part of its data calls' path
    tokens: bool  #: a 401 ends a session (log in again); without tokens, credentials refused
    build: Callable[[], Remote]
    #: its 503 says when to come back (Retry-After); the others' come from a gateway
    unavailable_until: bool = False


VENDORS = [
    Vendor("zentra", "/get_readings/", False, lambda: _emulated("tahmo"), True),
    Vendor("tandd", "/devices/data", False, lambda: _emulated("lab"), True),
    Vendor("climkit", "_data/", True, lambda: _emulated("site")),
    Vendor("copper", "/usage", True, lambda: _emulated("homes")),
    Vendor("dsmr_reader", "/api/v2/", False, _dsmr),
]


@dataclass(frozen=True)
class Case:
    """A fault and how the syncs meet it."""

    name: str
    faults: Callable[[Vendor, float], list[Fault]]  #: given the vendor and its time
    #: words the sync's result and status must show while the fault lasts (a regular
    #: expression); None: the retries absorb it and nothing may show. A callable decides
    #: per vendor.
    expect: str | Callable[[Vendor], str | None] | None = None
    steps: int = 1  #: syncs in the plan; the fault meets the last
    skew: tuple[float, ...] = ()  #: our clock's offset at each sync (a clock jump)
    #: the least vendor time the sync meeting the fault takes (a callable: per vendor)
    waits: float | Callable[[Vendor], float] = 0.0


def _lockout(v: Vendor, now: float, hint: bool) -> list[Fault]:
    if hint:  # every call 429 for ten minutes, each told how long is left
        return [Fault(status=429, retry_after=0, until=now + 600, times=None, path=v.data)]
    return [Fault(status=429, times=10, path=v.data)]  # ten in a row, no wait named


CASES = [
    Case("429 storm, Retry-After", lambda v, now: _lockout(v, now, True), waits=600),
    Case("429 storm, no hint", lambda v, now: _lockout(v, now, False)),
    Case("429 until cleared",
         lambda v, now: [Fault(status=429, after=1, times=None, path=v.data)],
         expect="rate limited"),
    Case("5xx burst", lambda v, now: [Fault(status=503, times=3, path=v.data),
                                      Fault(status=502, times=1, path=v.data)]),
    Case("5xx outage", lambda v, now: [Fault(status=503, times=None)], expect=r"\b503\b"),
    # each 503 asks for five minutes: waited out, as a 429's Retry-After is
    Case("503 with Retry-After",
         lambda v, now: [Fault(status=503, retry_after=300, times=2, path=v.data)],
         waits=lambda v: 600 if v.unavailable_until else 0),
    Case("timeout", lambda v, now: [Fault(stall=TIMEOUT + 15, times=3, path=v.data)],
         waits=TIMEOUT),
    Case("timeouts until cleared",
         lambda v, now: [Fault(stall=TIMEOUT + 15, after=1, times=None, path=v.data)],
         expect="timed out"),
    Case("cut JSON", lambda v, now: [Fault(cut=0.5, times=2, path=v.data)]),
    Case("connection closed mid-body",
         lambda v, now: [Fault(cut=0.3, close=True, times=2, path=v.data)]),
    Case("connections closed until cleared",
         lambda v, now: [Fault(cut=0.3, close=True, times=None)],
         expect="peer closed connection"),
    Case("duplicated pages", lambda v, now: [Fault(duplicate=True, times=2, path=v.data)],
         steps=2),
    Case("stale pages until cleared",
         lambda v, now: [Fault(duplicate=True, times=None, path=v.data)], steps=2,
         # one way for every connector: a stale page is malformed, asked again with backoff
         expect=r"(outside|before) the requested (window|time|mrid) \(a stale answer\?\)"),
    Case("out-of-order pages", lambda v, now: [Fault(reorder=True, times=None, path=v.data)],
         steps=2),
    Case("401 mid-sync", lambda v, now: [Fault(status=401, after=1, path=v.data)],
         expect=lambda v: None if v.tokens else "refused the credentials"),
    Case("clock jumps forward", lambda v, now: [], steps=3, skew=(0.0, JUMP, 0.0)),
    Case("clock jumps back", lambda v, now: [], steps=3, skew=(0.0, -JUMP, 0.0)),
]


@dataclass
class Outcome:
    """What each sync of a plan reported and left, in order."""

    results: list[SourceProgress] = field(default_factory=list)
    #: the store's readings and cursors after the syncs that are compared (else None)
    readings: list[pa.Table | None] = field(default_factory=list)
    cursors: list[list[Any]] = field(default_factory=list)
    status: list[list[dict[str, Any]]] = field(default_factory=list)  #: sync status rows
    took: list[float] = field(default_factory=list)  #: vendor seconds each sync took
    logins: list[int] = field(default_factory=list)  #: sessions opened so far


def snapshot(hub: Hub) -> pa.Table:
    table = hub.readings(as_="arrow")
    return table.sort_by([("source", "ascending"), ("device", "ascending"),
                          ("channel", "ascending"), ("ts", "ascending")])


def play(vendor: Vendor, steps: int, skew: tuple[float, ...] = (),
         faults: Callable[[Vendor, float], list[Fault]] | None = None,
         scheduled: list[Fault] | None = None, rerun: bool = False) -> Outcome:
    """The plan's syncs (one connector throughout, as ``meterhub run`` keeps it); with
    ``faults``, the last one meets them, and with ``rerun`` one more sync runs once they
    are cleared."""
    remote = vendor.build()
    clock = SkewedClock(remote.clock)
    with meterhub.open("duckdb:///:memory:") as hub:
        return asyncio.run(_play(hub, vendor, remote, clock, EmulatorTransport(remote.app),
                                 steps, skew, faults, scheduled, rerun))


async def _play(hub: Hub, vendor: Vendor, remote: Remote, clock: SkewedClock,
                transport: EmulatorTransport, steps: int, skew: tuple[float, ...],
                faults: Callable[[Vendor, float], list[Fault]] | None,
                scheduled: list[Fault] | None, rerun: bool) -> Outcome:
    connector = connector_class(remote.source.type)(remote.source, clock=clock,
                                                    transport=transport)
    outcome = Outcome()
    start = remote.clock.now()
    last = steps - 1 + rerun
    try:
        for step in range(last + 1):
            at = start + min(step, steps - 1) * STEP
            if remote.clock.now() < at:
                remote.clock.advance(at - remote.clock.now())
            remote.grow(at)
            clock.offset = skew[step] if step < len(skew) else 0.0
            if faults is not None and step == steps - 1:
                made = faults(vendor, remote.clock.now())
                remote.faults.schedule(*made)
                if scheduled is not None:
                    scheduled.extend(made)
            elif step == steps:
                remote.faults.clear()  # the fault clears: one more sync
            began = remote.clock.now()
            outcome.results.append(await sync_source(hub, remote.source, clock=clock,
                                                     connector=connector))
            outcome.took.append(remote.clock.now() - began)
            compared = faults is None or step in (steps - 1, last)
            outcome.readings.append(snapshot(hub) if compared else None)
            outcome.cursors.append(hub.store.cursors())
            outcome.status.append(hub.store.sync_status().to_pylist())
            outcome.logins.append(remote.logins())
    finally:
        await connector.aclose()
    return outcome


VENDOR_OF = {v.name: v for v in VENDORS}


@functools.cache
def reference(vendor: str) -> Outcome:
    """The undisturbed plan, once per worker: every case's plan is a prefix of it."""
    return play(VENDOR_OF[vendor], max(case.steps for case in CASES))


def failures(result: SourceProgress) -> list[str]:
    return [e for e in [result.error, *result.device_errors.values()] if e]


def differences(want: pa.Table, got: pa.Table) -> str:
    """Rows missing and extra, by device and channel, for a failing comparison."""
    keys = ["device", "channel", "ts"]
    a = want.select([*keys, "value"]).to_pandas()
    b = got.select([*keys, "value"]).to_pandas()
    both = a.merge(b, on=keys, how="outer", indicator=True, suffixes=("_want", "_got"))
    lines = [f"{len(a)} readings wanted, {len(b)} got"]
    for side, label in (("left_only", "missing"), ("right_only", "extra")):
        part = both[both["_merge"] == side]
        for (device, channel), rows in part.groupby(["device", "channel"]):
            lines.append(f"{label}: {device} {channel}: {len(rows)} from {rows['ts'].min()}")
    changed = both[(both["_merge"] == "both") & ~np.isclose(
        both["value_want"].astype(float), both["value_got"].astype(float), equal_nan=True)]
    if len(changed):
        lines.append(f"changed values: {len(changed)}")
    if b.duplicated(keys).any():
        lines.append(f"duplicated: {int(b.duplicated(keys).sum())}")
    return "\n".join(lines[:20])


def expected(case: Case, vendor: Vendor) -> str | None:
    return case.expect(vendor) if callable(case.expect) else case.expect


def params() -> list[Any]:
    """Every vendor under every fault; the longest plans (clock jumps) start first."""
    return [pytest.param(vendor, case, id=f"{vendor.name}-{case.name}",
                         marks=[pytest.mark.early] if case.steps > 2 else [])
            for case in CASES for vendor in VENDORS]


@pytest.mark.parametrize(("vendor", "case"), params())
def test_fault_matrix(vendor: Vendor, case: Case) -> None:
    ref = reference(vendor.name)
    n = case.steps - 1  # the sync that meets the fault; the reference's sync to match
    scheduled: list[Fault] = []
    words = expected(case, vendor)
    got = play(vendor, case.steps, case.skew, case.faults, scheduled, rerun=words is not None)
    assert all(f.hits for f in scheduled), [f for f in scheduled if not f.hits]
    for result in got.results[:n]:  # the syncs before the fault ran clean
        assert failures(result) == [], result
    met, status, want = got.results[n], got.status[n], ref.readings[n]
    assert want is not None
    if words is None:
        # absorbed: no trace in the result or the status, and the sync that met the fault
        # got everything: the reference's readings (none lost or doubled) and cursors
        assert failures(met) == [], met
        assert [row for row in status if row["last_error"]] == [], status
        held = got.readings[n]
        assert held is not None
        assert held.equals(want), differences(want, held)
        assert got.cursors[n] == ref.cursors[n]
    else:
        # named in words while it lasts, in the result and in the status
        shown = failures(met)
        assert shown, f"{case.name}: the sync reported no failure: {met}"
        assert all(re.search(words, text) for text in shown), shown
        errors = [row["last_error"] for row in status if row["last_error"]]
        assert errors, status
        assert all(re.search(words, text) for text in errors), errors
        # each device's row says what happened to it: a device that finished is clear
        devices = [row for row in status if row["device"] != SOURCE_ROW]
        assert len([row for row in devices if row["last_error"]]) == met.devices - met.done, \
            (met, status)
        # the fault clears, one more sync: the reference's readings, every status clear
        rerun, final = got.results[-1], got.readings[-1]
        assert final is not None
        assert failures(rerun) == [], rerun
        assert [row for row in got.status[-1] if row["last_error"]] == [], got.status[-1]
        assert final.equals(want), differences(want, final)
        assert got.cursors[-1] == ref.cursors[n]
    waits = case.waits(vendor) if callable(case.waits) else case.waits
    assert got.took[n] >= waits, got.took  # the waits were real, on the vendor's clock
    if case.skew:  # a clock that jumps costs no waiting, and no login per call
        assert max(got.took) <= max(ref.took[: case.steps]) + 120, (got.took, ref.took)
        assert got.logins[n] <= ref.logins[n] + 1, (got.logins, ref.logins)
    if vendor.tokens and case.name == "401 mid-sync":  # one login more, no more
        assert got.logins[n] == ref.logins[n] + 1

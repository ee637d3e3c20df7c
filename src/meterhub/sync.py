"""Incremental sync: keep a store in step with every configured source.

The engine knows cursors, limits and progress, never a vendor's JSON: it reads each
connector's `ConnectorInfo`, asks it to discover devices, and for every device fetches from
the stored cursor, committing each page of readings together with the cursor that covers it
(`Store.write(..., cursors=...)`), so a sync killed at any moment resumes without losing or
duplicating a reading. Sources run concurrently (separate vendors, separate limits); the
devices of one source run concurrently through that connector's shared limiter. One failing
device is recorded and the others go on; refused credentials stop their source at once.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from meterhub.clock import Clock, RealClock
from meterhub.errors import AuthError, MeterhubError, StoreError
from meterhub.hub import Hub
from meterhub.model import Channel
from meterhub.source_health import quota_state
from meterhub.sources.base import SourceConfig, connector_class
from meterhub.store import SyncCursor
from meterhub.units import unit_for_channel


@dataclass
class SourceProgress:
    """What a source's sync has done so far; the CLI renders it live."""

    name: str
    type: str
    devices: int = 0
    done: int = 0
    failed: int = 0
    readings: int = 0
    calls: int = 0
    waited: float = 0.0  #: clock seconds in which the source's calls waited for its limits
    started: float = 0.0
    now: float = 0.0
    error: str | None = None
    device_errors: dict[str, str] = field(default_factory=dict)

    @property
    def finished(self) -> bool:
        return self.error is not None or (self.devices > 0 and
                                          self.done + self.failed >= self.devices)

    def eta(self) -> float | None:
        """Seconds left, by the pace of the devices finished so far."""
        finished = self.done + self.failed
        if not finished or finished >= self.devices:
            return None
        return (self.now - self.started) / finished * (self.devices - finished)


log = logging.getLogger("meterhub.sync")
Listener = Callable[[SourceProgress], None]
SOURCE_ROW = "*"  #: the device name under which a whole source's failure is recorded


async def sync_source(hub: Hub, config: SourceConfig, *, clock: Clock,
                      transport: httpx.AsyncBaseTransport | None = None,
                      since: str | None = None, until: float | None = None,
                      listener: Listener | None = None,
                      trace: Callable[[str], None] | None = None,
                      connector: Any = None) -> SourceProgress:
    """Sync one source into ``hub``; failures are recorded in the result, not raised.

    ``trace`` hears one line per committed page (the crash tests kill on those lines).
    A ``connector`` passed in is reused (its limiter, tokens and cache carry over, as
    `run_forever` needs); otherwise one is made for this sync and closed after it.
    """
    if since is not None and connector is None:
        config = config.model_copy(update={"start": since})
    progress = SourceProgress(config.name, config.type, started=clock.now(), now=clock.now())

    def tell() -> None:
        progress.now = clock.now()
        progress.calls = connector.http.calls
        progress.waited = connector.http.limiter.blocked
        if listener is not None:
            listener(progress)

    owned = connector is None
    if connector is None:
        connector = connector_class(config.type)(config, clock=clock, transport=transport)
    try:
        try:
            found = await connector.discover()
        except MeterhubError as exc:
            progress.error = _explain(config, exc)
            # no device is known yet: record the failure against the source as a whole
            hub.store.record_sync(config.name, SOURCE_ROW, error=exc)
            tell()
            return progress
        if any(row["source"] == config.name and row["device"] == SOURCE_ROW and
               row["last_error"] for row in hub.store.sync_status().to_pylist()):
            # the source answers again: its earlier failure as a whole is over
            hub.store.record_sync(config.name, SOURCE_ROW)
        hub.add_sites(found.sites)
        hub.add_devices(found.devices)
        hub.add_channels([Channel(c.device, c.channel, c.quantity,
                                  unit_for_channel(c.quantity, c.unit), c.kind, c.interval_s)
                          for c in found.channels])
        wanted = set(config.devices or [])
        devices = [d.device for d in found.devices if not wanted or d.device in wanted]
        progress.devices = len(devices)
        tell()

        recorded: set[str] = set()  #: devices whose own outcome is in the sync status
        rereads = connector.info.rereads  #: count only rows not stored before

        async def one(device: str) -> None:
            cursor = None if since is not None else hub.store.get_cursor(config.name, device)
            readings = 0
            calls_before = connector.http.calls
            try:
                async for page in connector.fetch(device, cursor, until):
                    cursors = [SyncCursor(config.name, device, page.cursor)] \
                        if page.cursor is not None else []
                    result = hub.write(page.readings, cursors=cursors,
                                       origin=f"sync:{config.name}")
                    if trace is not None:
                        trace(f"committed {config.name} {device} {page.readings.num_rows}")
                    added = result.new if rereads else page.readings.num_rows
                    readings += added
                    progress.readings += added
                    tell()
            except StoreError:
                raise  # the store itself failed: no row of it can be kept now either
            except AuthError as exc:
                # this device's own row: refused, after what it did; the source stops
                recorded.add(device)
                hub.store.record_sync(config.name, device, error=exc,
                                      calls=connector.http.calls - calls_before,
                                      readings=readings)
                raise
            except MeterhubError as exc:
                progress.failed += 1
                progress.device_errors[device] = str(exc)
                hub.store.record_sync(config.name, device, error=exc,
                                      calls=connector.http.calls - calls_before,
                                      readings=readings)
                tell()
                return
            progress.done += 1
            recorded.add(device)
            hub.store.record_sync(config.name, device, calls=connector.http.calls -
                                  calls_before, readings=readings)
            tell()

        try:
            async with asyncio.TaskGroup() as group:
                for device in devices:
                    group.create_task(one(device))
        except* AuthError as exc_group:
            refused = exc_group.exceptions[0]
            progress.error = _explain(config, refused)
            # refused credentials stop the whole source: its row says so, and so does each
            # device the refusal left unsynced; a device that finished (or failed on its
            # own) before keeps the row that says what happened to it
            hub.store.record_sync(config.name, SOURCE_ROW, error=refused)
            for device in devices:
                if device not in recorded and device not in progress.device_errors:
                    hub.store.record_sync(config.name, device, error=refused)
        tell()
        return progress
    finally:
        try:
            quota = connector.http.quota
            if quota is not None:  # the vendor told its limits: for the dashboard's overview
                hub.write(None, origin=f"sync:{config.name}",
                          state={quota_state(config.name): json.dumps(quota.as_json())})
        except Exception:  # a store that fails here must not hide why the sync ended
            log.exception("could not keep what %s told of its limits", config.name)
        finally:
            if owned:
                await connector.aclose()


async def _round(hub: Hub, config: SourceConfig, clock: Clock, connector: Any
                 ) -> SourceProgress:
    """One source's sync in a schedule: a store that fails (a server restarting, a network
    hiccup) fails this round, not the schedule. Each device's cursor holds where it got
    to, so the next round goes on from there."""
    failed: BaseException | None = None
    try:
        return await sync_source(hub, config, clock=clock, connector=connector)
    except* StoreError as group:  # (raised by devices synced at once, it comes in a group)
        failed = group
        while isinstance(failed, BaseExceptionGroup):
            failed = failed.exceptions[0]
    log.warning("source %s: the store failed this round: %s", config.name, failed)
    return SourceProgress(config.name, config.type, started=clock.now(), now=clock.now(),
                          error=f"source {config.name}: the store failed: {failed}")


def _explain(config: SourceConfig, exc: BaseException) -> str:
    if isinstance(exc, AuthError):
        fields = [name for name, info in type(config).model_fields.items()
                  if "Secret" in str(info.annotation) or name in ("login_id", "username",
                                                                   "client_id")]
        return (f"source {config.name}: {exc} (credentials in meterhub.toml: "
                f"{', '.join(fields)})")
    return f"source {config.name}: {exc}"


async def sync_all(hub: Hub, sources: Sequence[SourceConfig], *, clock: Clock | None = None,
                   transports: Mapping[str, httpx.AsyncBaseTransport] | None = None,
                   since: str | None = None, until: float | None = None,
                   listener: Listener | None = None,
                   trace: Callable[[str], None] | None = None) -> list[SourceProgress]:
    """Sync every source concurrently; one result per source, in the given order."""
    clock = clock or RealClock()
    return list(await asyncio.gather(*(
        sync_source(hub, source, clock=clock, transport=(transports or {}).get(source.name),
                    since=since, until=until, listener=listener, trace=trace)
        for source in sources)))


def parse_until(text: str | None) -> float | None:
    """Epoch seconds of an --until date or time (naive means UTC)."""
    if text is None:
        return None
    from meterhub.timebase import to_utc

    moment = to_utc(text)
    return None if moment is None else moment.timestamp()



@dataclass
class Plan:
    """What a sync of one source would do, estimated without any vendor call."""

    name: str
    type: str
    devices: int
    records: int
    calls: int
    seconds: float
    note: str = ""


def plan_source(hub: Hub, config: SourceConfig, *, now: float,
                since: str | None = None) -> Plan:
    """Estimate calls, records and duration from the catalog, cursors and documented limits.

    Devices are those the store already knows for this source (else the configured ones);
    each device's new records run from its newest stored reading (or ``since`` / the
    configured start) to ``now`` at the connector's logging interval.
    """
    from meterhub.timebase import to_utc

    info = connector_class(config.type).info
    stats = hub.channels(source=config.name, as_="arrow").to_pylist() \
        if config.name in {d.source for d in hub.store.devices()} else []
    newest: dict[str, float] = {}
    for row in stats:
        if row["last_ts"] is not None:
            newest[row["device"]] = max(newest.get(row["device"], 0.0),
                                        row["last_ts"].timestamp())
    known = sorted({row["device"] for row in stats}) or list(config.devices or [])
    if config.devices:
        known = [d for d in known if d in set(config.devices)] or list(config.devices)
    begin = since or config.start
    moment = to_utc(begin) if begin else None
    fallback = moment.timestamp() if moment else None
    interval = info.interval_s or 3600
    records, per_device = 0, []
    for device in known:
        frm = newest.get(device, fallback) if since is None else fallback
        count = 0 if frm is None else max(0, int((now - frm) // interval))
        records += count
        per_device.append(info.calls_for(count))
    calls = sum(per_device) + info.discovery_calls
    seconds = 0.0
    for limit in info.limits:
        if limit.scope == "device":
            seconds = max([seconds, *((c - 1) * limit.period for c in per_device if c)])
        elif limit.scope in ("account", "endpoint"):
            seconds = max(seconds, (-(-calls // limit.calls) - 1) * limit.period)
    note = "" if known else "devices unknown until the first sync discovers them"
    if known and fallback is None and len(newest) < len(known):
        note = "history length of new devices unknown: set start to estimate it"
    return Plan(config.name, config.type, len(known), records, calls, seconds, note)


async def run_forever(hub: Hub, sources: Sequence[SourceConfig], *, every: float,
                      clock: Clock | None = None,
                      transports: Mapping[str, httpx.AsyncBaseTransport] | None = None,
                      rounds: int | None = None,
                      on_round: Callable[[int, list[SourceProgress]], None] | None = None
                      ) -> int:
    """Sync all sources every ``every`` seconds until cancelled (or ``rounds`` are done).

    Connectors live across rounds, so each vendor's limits, tokens and cached answers carry
    over from one round to the next and a schedule never trips a limit a single sync would
    respect. Rounds start ``every`` seconds of elapsed time apart (a round that takes
    longer is followed at once): the period is timed by the clock's sleep, never by
    differences of its readings, so a wall clock set back or forward between rounds
    neither delays nor hurries the next one. A round in which the store fails is reported
    (the source's ``error``) and the schedule goes on. Returns the number of rounds run.
    """
    clock = clock or RealClock()
    connectors = {s.name: connector_class(s.type)(s, clock=clock,
                                                  transport=(transports or {}).get(s.name))
                  for s in sources}
    done = 0
    period: asyncio.Task[None] | None = None
    try:
        while rounds is None or done < rounds:
            # the next round's start, timed from this one's on the sleep's own time line
            period = asyncio.ensure_future(clock.sleep(every))
            results = list(await asyncio.gather(*(
                _round(hub, s, clock, connectors[s.name]) for s in sources)))
            done += 1
            if on_round is not None:
                on_round(done, results)
            if rounds is not None and done >= rounds:
                break
            await period
    finally:
        if period is not None and not period.done():
            period.cancel()
        for connector in connectors.values():
            await connector.aclose()
    return done

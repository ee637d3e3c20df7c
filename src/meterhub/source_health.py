"""Each source's health, as the API's sources, the dashboard's overview and the MQTT
availability of its sensors tell it: last sync, newest reading, lag, interval, and
whether it is stale."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

import orjson

from meterhub.hub import Hub


def quota_state(source: str) -> str:
    """The store state key of what ``source``'s vendor last told of its rate limits."""
    return f"sync.quota.{source}"


STALE_INTERVALS = 3  #: a source is stale after this many of its intervals with no reading


def freshness(hub: Hub) -> dict[str, tuple[dt.datetime, float | None]]:
    """Per source: its newest reading time, and the mean reading interval (s) of the
    channel that holds it (a retired channel, however fast it was, does not count)."""
    out: dict[str, tuple[dt.datetime, float | None]] = {}
    for row in hub.channels(as_="arrow").to_pylist():
        newest, first, count = row["last_ts"], row["first_ts"], row["readings"]
        if newest is None:
            continue
        interval = ((newest - first).total_seconds() / (count - 1)
                    if first is not None and count > 1 and newest > first else None)
        held = out.get(row["source"])
        if held is None or newest > held[0] or (
                newest == held[0] and interval is not None
                and (held[1] is None or interval < held[1])):
            out[row["source"]] = (newest, interval)
    return out


def stale(health: str, newest: dt.datetime | None, interval: float | None,
           last_success: dt.datetime | None, now: dt.datetime, pulled: bool) -> bool:
    """Failing, or behind by more than `STALE_INTERVALS` of its intervals: a pulled source
    behind its last successful sync (the syncs' own schedule is not the vendor's fault), a
    pushed one behind now. Without readings or an interval nothing is known: not stale."""
    if health == "failing":
        return True
    if newest is None or interval is None:
        return False
    since = last_success if pulled else now
    if since is None:
        return False
    return (since - newest).total_seconds() > STALE_INTERVALS * interval


def quota(hub: Hub, source: str) -> dict[str, Any] | None:
    """What the source's vendor last told of its rate limits (calls left ...), if it tells."""
    told = hub.get_state(quota_state(source))
    return orjson.loads(told) if told is not None else None


def sources(hub: Hub, configured: Mapping[str, str | None]) -> list[dict[str, Any]]:
    """Every configured (``configured``: name -> connector type) or seen source with its
    health (`meterhub.api.schemas.SourceOut`)."""
    device_counts: dict[str, int] = {}
    for device in hub.store.devices():
        device_counts[device.source] = device_counts.get(device.source, 0) + 1
    fresh = freshness(hub)
    now = dt.datetime.now(dt.UTC)
    status: dict[str, list[dict[str, Any]]] = {}
    for row in hub.store.sync_status().to_pylist():
        status.setdefault(row["source"], []).append(row)
    out = []
    for name in sorted(set(configured) | set(device_counts) | set(status)):
        rows = status.get(name, [])
        failing = [r for r in rows if r["last_error_class"]]
        if rows:
            health = "failing" if failing else "ok"
        else:
            health = "never synced" if name in configured else "push"
        attempts = [r["last_attempt"] for r in rows if r["last_attempt"] is not None]
        successes = [r["last_success"] for r in rows if r["last_success"] is not None]
        success = max(successes).replace(tzinfo=dt.UTC) if successes else None
        newest_error = max(failing, key=lambda r: r["last_attempt"]) if failing else None
        newest, interval = fresh.get(name, (None, None))
        # a reading stamped ahead of the clock is no lag behind it
        lag = max(0, round((now - newest).total_seconds())) if newest is not None else None
        out.append({
            "name": name, "type": configured.get(name), "configured": name in configured,
            "devices": device_counts.get(name, 0), "health": health,
            "last_attempt": max(attempts).isoformat() + "Z" if attempts else None,
            "last_success": success.isoformat().replace("+00:00", "Z") if success else None,
            "failing_devices": len(failing),
            "last_error": (f"{newest_error['last_error_class']}: {newest_error['last_error']}"
                           if newest_error else None),
            "newest_reading": newest.isoformat().replace("+00:00", "Z") if newest else None,
            "lag_seconds": lag,
            "interval_seconds": round(interval, 3) if interval is not None else None,
            "stale": stale(health, newest, interval, success, now, bool(rows)),
            "quota": quota(hub, name)})
    return out

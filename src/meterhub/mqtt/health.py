"""The MQTT link's health, kept in the store (a state value per link, by client id) so that
`meterhub status`, the API and the dashboard tell it from any process."""

from __future__ import annotations

import datetime as dt
from typing import Any

import orjson

from meterhub.hub import Hub

KEY = "mqtt.link."  #: + the link's client id: its health, as JSON
#: seconds between two reports of a link whose counts changed (and at every connect and
#: loss); a report older than twice this is from a process that may have stopped
REPORT_EVERY = 30.0


def key(client_id: str) -> str:
    return f"{KEY}{client_id}"


def report(*, client_id: str, broker: str, connected: bool, since: dt.datetime | None,
           last_error: str | None, published: int, taken: int, rejected: int,
           now: dt.datetime) -> dict[str, str]:
    """The state value to write: the link's health now."""
    return {key(client_id): orjson.dumps({
        "client_id": client_id, "broker": broker, "connected": connected,
        "since": _iso(since), "last_error": last_error, "published": published,
        "taken": taken, "rejected": rejected, "as_of": _iso(now)}).decode()}


def links(hub: Hub, now: dt.datetime | None = None) -> list[dict[str, Any]]:
    """Every link's last report, by client id, each with ``silent``: true when the report
    is older than twice `REPORT_EVERY` (the process that sent it may have stopped)."""
    now = now or dt.datetime.now(dt.UTC)
    found = []
    for name, value in sorted(hub.store.state_values().items()):
        if not name.startswith(KEY):
            continue
        told = orjson.loads(value)
        as_of = dt.datetime.fromisoformat(told["as_of"])
        told["silent"] = (now - as_of).total_seconds() > 2 * REPORT_EVERY
        found.append(told)
    return found


def line(link: dict[str, Any]) -> str:
    """One link's health in words."""
    state = "connected" if link["connected"] else "down"
    since = f" since {link['since']}" if link["since"] else ""
    error = f" ({link['last_error']})" if link["last_error"] and not link["connected"] else ""
    silent = f"; no word since {link['as_of']}: is meterhub running?" if link["silent"] \
        else ""
    return (f"MQTT link {link['client_id']} to {link['broker']}: {state}{since}{error}; "
            f"published {link['published']:,} states, took {link['taken']:,} messages "
            f"({link['rejected']:,} rejected){silent}")


def _iso(moment: dt.datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(dt.UTC).isoformat(
        timespec="seconds").replace("+00:00", "Z")

"""Each channel's newest reading published to an MQTT broker as it is stored, with Home
Assistant's discovery config of its sensor.

The hub tells after every write which channels it touched (`Hub.listen`); those are
marked, and a task publishes the newest state of the marked channels, retained, as soon
as it can: writes that come meanwhile only mark more, so a backfill of a year publishes
one state per channel, and the marks are a set of channels, so memory stays bounded
whatever the broker does. A channel's discovery config goes out before its first state
in each connection. On (re)connect every wanted channel is published again (the broker
may have lost its retained messages); a lost connection is retried with a backoff that
doubles up to `BACKOFF_MAX`, and writes never wait for the broker. ``<prefix>/status`` is
``online`` while connected, ``offline`` after (said when stopped; the last will when the
link breaks).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import ssl
import threading
import time

import aiomqtt
import pyarrow as pa

from meterhub.hub import Hub
from meterhub.mqtt import payloads
from meterhub.mqtt.settings import MqttSettings
from meterhub.store.base import Selection

log = logging.getLogger("meterhub.mqtt")
BACKOFF_MAX = 60.0  #: seconds between attempts to reach a broker that is down, at most
STEADY = 10.0  #: seconds a session must last for the next failure to start a new backoff
#: seconds between publishing rounds, at least: a meter pushing many telegrams a second
#: publishes once a second (each round reads the store, which folds its journal)
INTERVAL = 1.0
Channel = tuple[str, str]  #: (device, channel)


class Publisher:
    """Publishes ``hub``'s newest readings to the broker of ``settings``; `run` it."""

    def __init__(self, hub: Hub, settings: MqttSettings, *, backoff: float = 1.0,
                 interval: float = INTERVAL) -> None:
        self.hub, self.settings = hub, settings
        self.backoff, self.interval = backoff, interval
        self.connected = False  #: whether the broker link is up
        self.published = 0  #: states published since the start
        self.rounds = 0  #: publishing rounds done (each publishes what was marked)
        self._lock = threading.Lock()
        self._marked: set[Channel] | None = set()  #: None: every channel
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _on_write(self, keys: pa.Table | None) -> None:
        """In the writing thread: mark the channels ``keys`` touched."""
        if keys is None:
            touched = None
        else:
            pairs = keys.select(["device", "channel"]).group_by(["device", "channel"]
                                                                 ).aggregate([])
            touched = set(zip(pairs["device"].to_pylist(), pairs["channel"].to_pylist(),
                              strict=True))
        self._mark(touched)

    def _mark(self, touched: set[Channel] | None) -> None:
        with self._lock:
            if touched is None or self._marked is None:
                self._marked = None
            else:
                self._marked |= touched
        if self._loop is not None and self._wake is not None:
            with contextlib.suppress(RuntimeError):  # the loop closed: nobody publishes
                self._loop.call_soon_threadsafe(self._wake.set)

    async def run(self) -> None:
        """Publish until cancelled, reconnecting whenever the broker is lost (or anything
        else failed: the store, say), after a pause that doubles while sessions keep
        failing within `STEADY` seconds."""
        self._loop, self._wake = asyncio.get_running_loop(), asyncio.Event()
        stop_listening = self.hub.listen(self._on_write)
        delay = self.backoff
        try:
            while True:
                began = time.monotonic()
                try:
                    async with self._client() as client:
                        self.connected = True
                        log.info("publishing to the MQTT broker at %s:%d",
                                 self.settings.host, self.settings.port)
                        try:
                            await self._session(client)
                        except asyncio.CancelledError:
                            await self._goodbye(client)
                            raise
                except Exception as exc:  # told, then tried again
                    if isinstance(exc, aiomqtt.MqttError):
                        log.warning("MQTT broker %s:%d %s (%s); trying again in %.1f s",
                                    self.settings.host, self.settings.port,
                                    "lost" if self.connected else "not reachable", exc,
                                    delay)
                    else:
                        log.exception("publishing to MQTT failed; trying again in %.1f s",
                                      delay)
                    self.connected = False
                    if time.monotonic() - began >= STEADY:
                        delay = self.backoff  # it had worked a while: a new failure
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, BACKOFF_MAX)
        finally:
            self.connected = False
            stop_listening()

    async def _goodbye(self, client: aiomqtt.Client) -> None:
        """Say ``offline`` when stopped: a broker sends the last will only for a link that
        broke, and Home Assistant would show the sensors available meanwhile."""
        with contextlib.suppress(aiomqtt.MqttError, TimeoutError):
            async with asyncio.timeout(2):
                await client.publish(payloads.status_topic(self.settings.prefix),
                                     b"offline", qos=1, retain=True)

    def _client(self) -> aiomqtt.Client:
        settings = self.settings
        status = payloads.status_topic(settings.prefix)
        return aiomqtt.Client(
            settings.host, settings.port, username=settings.username,
            password=settings.password, identifier=settings.client_id,
            tls_context=ssl.create_default_context() if settings.tls else None,
            will=aiomqtt.Will(status, b"offline", qos=1, retain=True))

    async def _session(self, client: aiomqtt.Client) -> None:
        """Publish what is marked, a round at most every `interval` seconds, until the
        link breaks (the watch over the broker's messages raises then, even while
        nothing is written)."""
        await client.publish(payloads.status_topic(self.settings.prefix), b"online", qos=1,
                             retain=True)
        discovered: set[Channel] = set()
        self._mark(None)  # a new connection: everything once more
        assert self._wake is not None
        watch = asyncio.create_task(self._watch(client))
        try:
            while True:
                self._wake.clear()
                with self._lock:
                    marked: set[Channel] | None = self._marked
                    self._marked = set()
                if marked is None or marked:
                    for topic, payload, state in await asyncio.to_thread(
                            self._messages, marked, discovered):
                        await client.publish(topic, payload, qos=1, retain=True)
                        self.published += state
                self.rounds += 1
                await asyncio.sleep(self.interval)  # writes meanwhile only mark more
                waiting = asyncio.ensure_future(self._wake.wait())
                await asyncio.wait({waiting, watch}, return_when=asyncio.FIRST_COMPLETED)
                if watch.done():
                    waiting.cancel()
                    watch.result()  # the link broke: its error
                    raise aiomqtt.MqttError("the broker ended the link")
        finally:
            watch.cancel()

    async def _watch(self, client: aiomqtt.Client) -> None:
        """Home Assistant's birth message (``online`` on ``<discovery_prefix>/status``,
        when it starts) has everything published again; the iteration ends with an
        error when the link breaks."""
        await client.subscribe(f"{self.settings.discovery_prefix}/status", qos=1)
        async for message in client.messages:
            if bytes(message.payload) == b"online":
                self._mark(None)

    def _messages(self, marked: set[Channel] | None,
                  discovered: set[Channel]) -> list[tuple[str, bytes, bool]]:
        """The discovery configs not yet sent and the states of the ``marked`` channels
        (None: all) that are wanted, from the store's newest reading of each: (topic,
        payload, whether it is a state)."""
        selection = None if marked is None else Selection(
            devices=sorted({device for device, _ in marked}),
            channels=sorted({channel for _, channel in marked}))
        stats = self.hub.store.channel_stats(selection)
        devices = {d.device: {"name": d.name, "model": d.model, "serial": d.serial}
                   for d in self.hub.store.devices()} \
            if any(pair not in discovered for pair in _pairs(stats)) else {}
        settings, messages = self.settings, []
        for row in stats.to_pylist():
            device, channel, source = row["device"], row["channel"], row["source"]
            if (marked is not None and (device, channel) not in marked) or \
                    not settings.wanted(source, device, channel) or row["last_ts"] is None:
                continue
            if (device, channel) not in discovered:
                messages.append((
                    payloads.discovery_topic(settings.discovery_prefix, source, device,
                                             channel),
                    payloads.discovery_payload(
                        prefix=settings.prefix, source=source, device=device,
                        channel=channel, quantity=row["quantity"], kind=row["kind"],
                        unit=row["unit"], about=devices.get(device)), False))
                discovered.add((device, channel))
            messages.append((
                payloads.state_topic(settings.prefix, source, device, channel),
                payloads.state_payload(row["last_value"], row["unit"], row["last_ts"],
                                       self._quality(device, channel, row["last_ts"])), True))
        return messages

    def _quality(self, device: str, channel: str, at: dt.datetime) -> str:
        """The quality of a channel's newest reading (the statistics keep its value)."""
        rows = self.hub.store.scan(Selection(
            devices=[device], channels=[channel], start=at,
            end=at + dt.timedelta(microseconds=1))).read_all()
        qualities = rows["quality"].to_pylist()
        return str(qualities[-1]) if qualities else "ok"


def _pairs(stats: pa.Table) -> list[Channel]:
    return list(zip(stats["device"].to_pylist(), stats["channel"].to_pylist(), strict=True))

"""meterhub's link to an MQTT broker: each channel's newest reading published as it is
stored, with Home Assistant's discovery config of its sensor, and readings and telegrams
taken from the ingest topics (`meterhub.mqtt.ingest`).

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

Ingest subscriptions are QoS 1 in a persistent session (the broker keeps what comes
while meterhub is away), and a message is acknowledged only once what it holds is
committed, in the order the messages came (as MQTT wants): a link or a broker lost
meanwhile has the broker deliver it again, and the write is idempotent. At most
`IN_FLIGHT` messages are being stored at once; the broker holds the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import logging
import ssl
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import aiomqtt
import orjson
import pyarrow as pa

from meterhub import source_health
from meterhub.dsmr.intake import TelegramIntake
from meterhub.dsmr.parse_helper import TelegramReader
from meterhub.dsmr.settings import DsmrSettings
from meterhub.hub import Hub
from meterhub.ingest import GroupWriter
from meterhub.mqtt import dsmr_reader, health, payloads
from meterhub.mqtt.ingest import Ingest
from meterhub.mqtt.settings import MqttSettings
from meterhub.store.base import Selection
from meterhub.waits import woken

log = logging.getLogger("meterhub.mqtt")
BACKOFF_MAX = 60.0  #: seconds between attempts to reach a broker that is down, at most
STEADY = 10.0  #: seconds a session must last for the next failure to start a new backoff
#: seconds between publishing rounds, at least: a meter pushing many telegrams a second
#: publishes once a second (each round reads the store, which folds its journal)
INTERVAL = 1.0
IN_FLIGHT = 256  #: ingest messages being stored at once, at most
#: seconds between two looks at the sources' health (a source goes stale with time)
AVAILABILITY_EVERY = 30.0
STOP_WAIT = 30.0  #: seconds a stopping link waits for the store work under way, at most
Channel = tuple[str, str]  #: (device, channel)
T = TypeVar("T")


class MqttLink:
    """Publishes ``hub``'s newest readings to the broker of ``settings`` and takes in what
    comes on the ingest topics (unless ``ingest = false``); `run` it. Telegrams go to
    ``telegrams`` (the API's, so both count one meter's rejections), or to an intake of
    its own for the meter of ``dsmr``."""

    def __init__(self, hub: Hub, settings: MqttSettings, *, backoff: float = 1.0,
                 interval: float = INTERVAL, telegrams: TelegramIntake | None = None,
                 dsmr: DsmrSettings | None = None,
                 availability_every: float = AVAILABILITY_EVERY,
                 report_every: float = health.REPORT_EVERY) -> None:
        self.hub, self.settings = hub, settings
        self.backoff, self.interval = backoff, interval
        self.availability_every, self.report_every = availability_every, report_every
        self.telegrams, self.dsmr = telegrams, dsmr
        self.ingest: Ingest | None = None  #: while running, unless ingest is off
        self.connected = False  #: whether the broker link is up
        self.since: dt.datetime | None = None  #: when it came up, or went down
        self.last_error: str | None = None  #: why it went down last
        self.published = 0  #: states published since the start
        self.rounds = 0  #: publishing rounds done (each publishes what was marked)
        self._lock = threading.Lock()
        self._marked: set[Channel] | None = set()  #: None: every channel
        self._wake: asyncio.Event | None = None
        self._publishing = False  #: a round is under way
        #: per connection: the discovery configs of ours the broker holds (config topic ->
        #: state topic), those the store wants there (None before the first round), and
        #: each source's availability as published
        self._announced: dict[str, str] = {}
        self._expected: set[str] | None = None
        self._available: dict[str, bool] = {}
        self._day_at = -dsmr_reader.DAY_EVERY  #: when today's consumption was published
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tell_health: asyncio.Event | None = None  #: set: report the health now
        self._look_again: asyncio.Event | None = None  #: set: check the availabilities
        #: store work under way: a thread goes on when its awaiter is cancelled, so `run`
        #: waits for it before it returns (the store may be closed right after)
        self._working: set[asyncio.Future[Any]] = set()

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
        own = None
        if self.settings.ingest:
            telegrams = self.telegrams
            if telegrams is None:
                dsmr = self.dsmr or DsmrSettings()
                telegrams = own = TelegramIntake(dsmr, GroupWriter(self.hub, origin="dsmr"),
                                                 TelegramReader(dsmr))
            self.ingest = Ingest(self.settings, GroupWriter(self.hub, origin="mqtt"),
                                 telegrams)
        stop_listening = self.hub.listen(self._on_write)
        self._tell_health = asyncio.Event()
        reporter = asyncio.ensure_future(self._reports())
        delay = self.backoff
        try:
            while True:
                began = time.monotonic()
                try:
                    async with self._client() as client:
                        self._went(up=True)
                        log.info("publishing to the MQTT broker at %s:%d",
                                 self.settings.host, self.settings.port)
                        try:
                            await self._session(client)
                        except BaseException as exc:
                            # a link that still stands goes with a clean DISCONNECT, for
                            # which the broker drops the last will: say offline first
                            if not isinstance(exc, aiomqtt.MqttError):
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
                    if self.connected or self.last_error is None:
                        self._went(up=False, error=str(exc) or type(exc).__name__)
                    if time.monotonic() - began >= STEADY:
                        delay = self.backoff  # it had worked a while: a new failure
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, BACKOFF_MAX)
        finally:
            reporter.cancel()
            self._went(up=False, error="meterhub stopped")
            stop_listening()
            if self._working:  # (bounded: a store that hangs does not hold the stop)
                await asyncio.wait(self._working, timeout=STOP_WAIT)
            await self._report()
            if self.ingest is not None:
                self.ingest.writer.close()
            if own is not None:
                await own.close()

    def _went(self, *, up: bool, error: str | None = None) -> None:
        self.connected, self.since = up, dt.datetime.now(dt.UTC)
        if error is not None:
            self.last_error = error
        if self._tell_health is not None:
            self._tell_health.set()  # the change goes into the store at once

    async def _report(self) -> None:
        """Keep the link's health in the store (`meterhub.mqtt.health`); a store that
        fails it is told in the log, and the link goes on."""
        ingest = self.ingest
        state = health.report(
            client_id=self.settings.client_id, broker=f"{self.settings.host}:"
            f"{self.settings.port}", connected=self.connected, since=self.since,
            last_error=self.last_error, published=self.published,
            taken=ingest.messages if ingest else 0, rejected=ingest.rejected if ingest else 0,
            now=dt.datetime.now(dt.UTC))
        try:
            await self._in_thread(functools.partial(self.hub.write, None, origin="mqtt",
                                                    state=state))
        except Exception as exc:  # noqa: BLE001 - the store's own failures show elsewhere
            log.warning("could not keep the MQTT link's health in the store: %s", exc)

    async def _reports(self) -> None:
        """While the link runs, up or down: its health at every change and every
        `health.REPORT_EVERY` seconds (a report older than twice that says the process
        may have stopped)."""
        assert self._tell_health is not None
        while True:
            self._tell_health.clear()
            await self._report()
            await woken(self._tell_health, self.report_every)

    async def published_all(self, *, seconds: float) -> None:
        """Return once every write so far is published (or ``seconds`` passed: a broker
        that is down): before a process that wrote stops."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                while not self.connected or self._marked is None or self._marked or \
                        self._publishing:
                    await asyncio.sleep(0.02)

    def _track(self, work: asyncio.Future[T]) -> asyncio.Future[T]:
        self._working.add(work)
        work.add_done_callback(self._working.discard)
        return work

    async def _in_thread(self, function: Callable[..., T], *args: Any) -> T:
        """``function(*args)`` in a worker thread, which `run` waits for when stopped."""
        return await asyncio.shield(self._track(asyncio.ensure_future(
            asyncio.to_thread(function, *args))))

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
        client = aiomqtt.Client(
            settings.host, settings.port, username=settings.username,
            password=settings.password, identifier=settings.client_id,
            tls_context=ssl.create_default_context() if settings.tls else None,
            will=aiomqtt.Will(status, b"offline", qos=1, retain=True),
            # the broker keeps the ingest subscriptions, and what comes, while away
            clean_session=not settings.ingest)
        # acknowledged once stored (`_acknowledge`): aiomqtt has no word for it yet
        # (aiomqtt issue 345), paho-mqtt below it has; set before the broker can send
        client._client.manual_ack_set(True)
        return client

    async def _session(self, client: aiomqtt.Client) -> None:
        """Publish and take messages until the link breaks: the watch over the broker's
        messages raises then, even while nothing is written, and a round waiting for
        the broker's acknowledgements is stopped (it would wait out aiomqtt's timeout)."""
        ingest = self.ingest
        self._announced, self._expected, self._available = {}, None, {}
        self._look_again = asyncio.Event()
        # Home Assistant's topics at QoS 0: the persistent session queues none of them
        # while meterhub is away (the broker's room is for the ingest messages); the
        # retained ones come all the same
        await client.subscribe([(f"{self.settings.discovery_prefix}/status", 0),
                                (self._configs, 0),
                                *[(topic, 1) for topic in (ingest.filters() if ingest
                                                           else [])]])
        # online once subscribed: a client that waits for it may publish to ingest
        await client.publish(payloads.status_topic(self.settings.prefix), b"online", qos=1,
                             retain=True)
        self._mark(None)  # a new connection: everything once more
        tasks = {asyncio.ensure_future(self._watch(client)),
                 asyncio.ensure_future(self._publish(client)),
                 asyncio.ensure_future(self._availability(client))}
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()  # the link broke: its error
            raise aiomqtt.MqttError("the broker ended the link")
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.wait(tasks, timeout=STOP_WAIT)
            for task in tasks:  # their errors are the broken link's: retrieved, not logged
                if task.done() and not task.cancelled():
                    task.exception()

    async def _publish(self, client: aiomqtt.Client) -> None:
        """Publish what is marked, a round at most every `interval` seconds; a round of
        everything (the first of a connection, and after a delete) also removes the
        sensors of channels the store no longer has (or that are no longer wanted)."""
        discovered: dict[Channel, str] = {}  #: discovery config topics sent, by channel
        assert self._wake is not None
        self._publishing = False  # (a round the last link's end broke off)
        while True:
            self._wake.clear()
            with self._lock:
                marked: set[Channel] | None = self._marked
                self._marked = set()
            unwanted = self._expected is not None and bool(set(self._announced)
                                                           - self._expected)
            if marked is None or marked or unwanted:
                self._publishing = True
                if marked is None or marked:
                    messages, configs = await self._in_thread(self._messages, marked,
                                                              discovered)
                    if marked is None or self._expected is None:
                        self._expected = configs
                    else:
                        self._expected |= configs
                    for topic, payload, state in messages:
                        await client.publish(topic, payload, qos=1, retain=True)
                        self.published += state
                    if self._look_again is not None and any(
                            topic.endswith("/config") for topic, _, _ in messages):
                        self._look_again.set()  # a new source's availability at once
                await self._remove(client, discovered)
                self._publishing = False
            self.rounds += 1
            await asyncio.sleep(self.interval)  # writes meanwhile only mark more
            await self._wake.wait()

    async def _remove(self, client: aiomqtt.Client, discovered: dict[Channel, str]) -> None:
        """Remove the sensors the broker holds that the store does not want: an empty
        retained config (Home Assistant removes the entity) and state."""
        assert self._expected is not None
        kept = {self._announced[c] for c in self._expected if c in self._announced}
        for config in sorted(set(self._announced) - self._expected):
            state = self._announced.pop(config)
            log.info("removing the sensor of %s (no longer in the store or wanted)", state)
            await client.publish(config, b"", qos=1, retain=True)
            if state not in kept:  # (another config of ours may name it)
                await client.publish(state, b"", qos=1, retain=True)
            for channel in [c for c, topic in discovered.items() if topic == config]:
                del discovered[channel]

    async def _availability(self, client: aiomqtt.Client) -> None:
        """Each source's availability, at once and every `availability_every` seconds:
        ``offline`` while it is failing or stale (its sensors show unavailable)."""
        wanted = self.settings.sources
        while True:
            for source in await self._in_thread(source_health.sources, self.hub, {}):
                name, online = source["name"], not source["stale"]
                if (wanted and name not in wanted) or not source["devices"] or \
                        self._available.get(name) == online:
                    continue
                await client.publish(payloads.availability_topic(self.settings.prefix, name),
                                     b"online" if online else b"offline", qos=1, retain=True)
                self._available[name] = online
            assert self._look_again is not None
            self._look_again.clear()
            await woken(self._look_again, self.availability_every)

    @property
    def _configs(self) -> str:
        """The filter of the broker's discovery configs (ours among them)."""
        return f"{self.settings.discovery_prefix}/sensor/+/+/config"

    def _announce(self, topic: str, payload: bytes) -> None:
        """A discovery config the broker holds (retained, or just published): ours when
        meterhub made it (its node and unique id, its origin, a state topic of a channel
        under our prefix); one the store does not want is removed. Any other is left
        alone, whatever it says."""
        if not payload:
            self._announced.pop(topic, None)
            return
        node = topic.split("/")[-3]
        try:
            config = orjson.loads(payload)
            state = config["state_topic"]
            ours = node.startswith("meterhub_") and isinstance(state, str) and \
                str(config["unique_id"]).startswith(node) and \
                config["origin"]["name"] == "meterhub" and _is_state_topic(
                    state, self.settings.prefix)
        except (orjson.JSONDecodeError, KeyError, TypeError, IndexError):
            return  # not a config of ours
        if ours:
            self._announced[topic] = state
            if self._expected is not None and topic not in self._expected and \
                    self._wake is not None:
                self._wake.set()

    async def _watch(self, client: aiomqtt.Client) -> None:
        """Take the broker's messages until the link breaks (then raise its error) or a
        write of an ingested message fails (its error): Home Assistant's birth message
        (``online`` on ``<discovery_prefix>/status``, when it starts) has everything
        published again, the ingest topics' messages are stored."""
        acks: asyncio.Queue[tuple[aiomqtt.Message, asyncio.Future[None] | None]] = \
            asyncio.Queue()
        window = asyncio.Semaphore(IN_FLIGHT)
        tasks = {asyncio.ensure_future(self._take(client, acks, window)),
                 asyncio.ensure_future(self._acknowledge(client, acks, window))}
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()
        finally:
            for task in tasks:
                task.cancel()
            while not acks.empty():  # left to the broker to deliver again
                _, storing = acks.get_nowait()
                if storing is not None:
                    storing.add_done_callback(_settled)

    async def _take(self, client: aiomqtt.Client,
                    acks: asyncio.Queue[tuple[aiomqtt.Message, asyncio.Future[None] | None]],
                    window: asyncio.Semaphore) -> None:
        ingest = self.ingest
        birth = f"{self.settings.discovery_prefix}/status"
        config_root = f"{self.settings.discovery_prefix}/sensor/"
        async for message in client.messages:
            topic, storing = message.topic.value, None
            payload = message.payload if isinstance(message.payload, bytes) else b""
            if topic == birth:
                if payload == b"online":
                    self._mark(None)
            elif topic.startswith(config_root) and topic.endswith("/config"):
                self._announce(topic, payload)
            await window.acquire()
            if ingest is not None and ingest.wants(topic):
                storing = self._track(asyncio.ensure_future(ingest.take(topic, payload)))
            acks.put_nowait((message, storing))

    async def _acknowledge(
            self, client: aiomqtt.Client,
            acks: asyncio.Queue[tuple[aiomqtt.Message, asyncio.Future[None] | None]],
            window: asyncio.Semaphore) -> None:
        """Acknowledge each message once it is stored (or dropped), in order."""
        while True:
            message, storing = await acks.get()
            if storing is not None:
                # a failed write raises: the message stays unacknowledged; shielded, so a
                # link that ends meanwhile leaves the write to finish (`run` waits for it)
                await asyncio.shield(storing)
            if message.qos > 0:
                client._client.ack(message.mid, message.qos)
            window.release()

    def _messages(self, marked: set[Channel] | None, discovered: dict[Channel, str]
                  ) -> tuple[list[tuple[str, bytes, bool]], set[str]]:
        """The discovery configs not yet sent and the states of the ``marked`` channels
        (None: all) that are wanted, from the store's newest reading of each: (topic,
        payload, whether it is a state); and the config topics of those channels."""
        selection = None if marked is None else Selection(
            devices=sorted({device for device, _ in marked}),
            channels=sorted({channel for _, channel in marked}))
        stats = self.hub.store.channel_stats(selection)
        devices = {d.device: {"name": d.name, "model": d.model, "serial": d.serial}
                   for d in self.hub.store.devices()} \
            if any(pair not in discovered for pair in _pairs(stats)) else {}
        settings, messages, configs = self.settings, [], set()
        for row in stats.to_pylist():
            device, channel, source = row["device"], row["channel"], row["source"]
            if (marked is not None and (device, channel) not in marked) or \
                    not settings.wanted(source, device, channel) or row["last_ts"] is None:
                continue
            config = payloads.discovery_topic(settings.discovery_prefix, source, device,
                                              channel)
            configs.add(config)
            if (device, channel) not in discovered:
                messages.append((config, payloads.discovery_payload(
                    prefix=settings.prefix, source=source, device=device, channel=channel,
                    quantity=row["quantity"], kind=row["kind"], unit=row["unit"],
                    about=devices.get(device)), False))
                discovered[(device, channel)] = config
            messages.append((
                payloads.state_topic(settings.prefix, source, device, channel),
                payloads.state_payload(row["last_value"], row["unit"], row["last_ts"],
                                       self._quality(device, channel, row["last_ts"])), True))
        if settings.dsmr_reader_topics:
            messages += self._dsmr_reader(marked)
        return messages, configs

    def _dsmr_reader(self, marked: set[Channel] | None) -> list[tuple[str, bytes, bool]]:
        """DSMR-reader's topics of the meter, when the round has its readings: its newest
        reading and status, and today's consumption at most every `DAY_EVERY` seconds."""
        meter = self.dsmr or DsmrSettings()
        if marked is not None and all(device != meter.device for device, _ in marked):
            return []
        newest = dsmr_reader.reading(self.hub, meter)
        if newest is None:
            return []
        messages = [*dsmr_reader.reading_messages(newest),
                    *dsmr_reader.meter_messages(self.hub, meter)]
        now = time.monotonic()
        if marked is None or now - self._day_at >= dsmr_reader.DAY_EVERY:
            self._day_at = now
            messages += dsmr_reader.day_messages(self.hub, meter, dt.datetime.now(dt.UTC))
        return [(topic, payload, False) for topic, payload in messages]

    def _quality(self, device: str, channel: str, at: dt.datetime) -> str:
        """The quality of a channel's newest reading (the statistics keep its value)."""
        rows = self.hub.store.scan(Selection(
            devices=[device], channels=[channel], start=at,
            end=at + dt.timedelta(microseconds=1))).read_all()
        qualities = rows["quality"].to_pylist()
        return str(qualities[-1]) if qualities else "ok"


def _is_state_topic(topic: str, prefix: str) -> bool:
    """Whether ``topic`` has the shape of a channel's state under ``prefix``."""
    if not topic.startswith(f"{prefix}/"):
        return False
    levels = topic[len(prefix) + 1:].split("/")
    return len(levels) == 3 and all(payloads.level(part) == part for part in levels)


def _settled(task: asyncio.Future[None]) -> None:
    if not task.cancelled():
        task.exception()  # retrieved: the broker delivers its message again


def _pairs(stats: pa.Table) -> list[Channel]:
    return list(zip(stats["device"].to_pylist(), stats["channel"].to_pylist(), strict=True))

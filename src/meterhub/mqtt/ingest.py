"""Readings and raw P1 telegrams taken from MQTT topics into the store.

- ``<prefix>/ingest/<source>/<device>``: JSON, one reading or an array of them, validated
  as ``POST /api/v1/readings`` validates its items (`meterhub.model.to_readings`); the
  topic names their source and device (an item naming another one is refused), and a
  message is written whole or not at all.
- the telegram topic (``telegram_topic``, ``<prefix>/ingest/telegram`` by default): a raw
  P1 telegram, as ESP-based P1 readers publish them, through the same checks and count
  of rejections as a telegram pushed over HTTP (`meterhub.dsmr.intake`).

Writes are idempotent by key, so a message the broker delivers again changes nothing. A
bad message (one that cannot be read, or whose rows the store refuses) is counted
(`Ingest.rejected`), told in the log with its reason (once a minute per topic at most,
with a count of those dropped since) and dropped; a write that fails otherwise (the
store away, its disk full) leaves the message to come again.
"""

from __future__ import annotations

import logging
import time

import orjson
import pyarrow as pa

from meterhub.dsmr.intake import TelegramIntake
from meterhub.dsmr.parse_helper import NoTelegram
from meterhub.dsmr.telegram import TelegramError
from meterhub.errors import InputError
from meterhub.ingest import GroupWriter
from meterhub.model import READING_SCHEMA, records_to_arrow, shown, to_readings
from meterhub.mqtt.settings import MqttSettings

log = logging.getLogger("meterhub.mqtt")
MAX_MESSAGE = 1_000_000  #: bytes of one message, at most
MAX_READINGS = 10_000  #: readings in one message, at most
TELL_EVERY = 60.0  #: seconds between two log lines about bad messages on one topic
_TOLD_TOPICS = 1_000  #: topics whose last log line is remembered (a bound on memory)


class Ingest:
    """`take` a message of the ingest topics (`filters`); counts what it did."""

    def __init__(self, settings: MqttSettings, writer: GroupWriter,
                 telegrams: TelegramIntake | None) -> None:
        self.settings, self.writer, self.telegrams = settings, writer, telegrams
        self.root = f"{settings.prefix}/ingest/"
        self.telegram_topic = settings.telegram_topic or f"{self.root}telegram"
        self.messages = 0  #: messages taken (stored or rejected)
        self.readings = 0  #: readings of the messages stored (a telegram counts as one)
        self.rejected = 0  #: bad messages dropped
        #: topic (its first 200 characters) -> (last told, dropped since)
        self._told: dict[str, tuple[float, int]] = {}

    def filters(self) -> list[str]:
        """The topic filters to subscribe to."""
        return [f"{self.root}+/+", *([self.telegram_topic] if self.telegrams else [])]

    def wants(self, topic: str) -> bool:
        return (topic == self.telegram_topic and self.telegrams is not None) or (
            topic.startswith(self.root) and topic.count("/", len(self.root)) == 1)

    async def take(self, topic: str, payload: bytes) -> None:
        """Store the message, or count and tell why not; raise only what the write raised
        but a refusal of its rows (the store's failure, not the message's: the message is
        left unacknowledged, for the broker to deliver again)."""
        try:
            if topic == self.telegram_topic and self.telegrams is not None:
                if len(payload) > MAX_MESSAGE:
                    raise InputError(f"over {MAX_MESSAGE:,} bytes")
                await self.telegrams.take(payload.decode("latin-1"))
                stored = 1
            else:
                source, device = topic[len(self.root):].split("/")
                table = readings_of(payload, source, device)
                if table.num_rows:
                    await self.writer.write(table)
                stored = table.num_rows
        except (InputError, TelegramError) as exc:  # (`NoTelegram` is an InputError)
            self.rejected += 1
            self.messages += 1
            self._tell(topic, "an empty telegram" if isinstance(exc, NoTelegram) else str(exc))
            return
        self.readings += stored
        self.messages += 1

    def _tell(self, topic: str, reason: str) -> None:
        topic, now = topic[:200], time.monotonic()
        told, since = self._told.get(topic, (-TELL_EVERY, 0))
        if now - told < TELL_EVERY:
            self._told[topic] = (told, since + 1)
            return
        if len(self._told) >= _TOLD_TOPICS:
            self._told.clear()
        self._told[topic] = (now, 0)
        log.warning("MQTT message on %s dropped (%d so far): %s%s", shown(topic, 200),
                    self.rejected, reason, f" ({since} more dropped on it since the last "
                    "such line)" if since else "")


def readings_of(payload: bytes, source: str, device: str) -> pa.Table:
    """The readings of one ingest message on ``<prefix>/ingest/<source>/<device>``,
    validated; `InputError` saying why not (items by their 0-based index, as the API)."""
    if len(payload) > MAX_MESSAGE:
        raise InputError(f"over {MAX_MESSAGE:,} bytes: send smaller messages")
    try:
        data = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise InputError(f"not JSON ({exc.msg}): send a reading or an array of them") from None
    items = data if isinstance(data, list) else [data]
    if len(items) > MAX_READINGS:
        raise InputError(f"over {MAX_READINGS:,} readings: send smaller messages")
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise InputError(f"item {index}: expected an object with channel, ts, value "
                             "and unit")
        for key, expected in (("source", source), ("device", device)):
            if item.setdefault(key, expected) != expected:
                raise InputError(f"item {index}: {key} {shown(str(item[key]))} is not the "
                                 f"topic's {shown(expected)}")
    if not items:
        return READING_SCHEMA.empty_table()
    try:
        return to_readings(records_to_arrow(items), source=source, keep_hints=True)
    except InputError as exc:
        if exc.row is None:
            raise
        raise InputError(f"item {exc.row - 1}: {exc.reason}") from None
    except Exception as exc:  # the message's fault, whatever it was (logged)
        # a message that fails to read fails every time: delivered again and again, it
        # would hold up every message after it
        log.warning("MQTT readings that could not be read", exc_info=True)
        raise InputError(f"unreadable ({type(exc).__name__}: {exc})") from None

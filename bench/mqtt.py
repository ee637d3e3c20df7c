"""MQTT: telegrams taken in over MQTT beside HTTP pushes, and publish latency.

Ingest: `meterhub serve` in its own process with [mqtt], DSMR 5 telegrams published at
QoS 1 to its telegram topic by 8 clients as fast as the broker acknowledges them, timed
from the first publish until every telegram is in the store (the API's count, polled),
beside the same server's HTTP pushes (wrk, 8 keep-alive clients, 10 s: bench/dsmr.py's
run) in the same run.

Publish latency: from a reading stored (`Hub.write` returning) to its state received
by a subscriber of the broker, p50 and p99, beside a reference measured in the same run:
a message published straight to the same broker by a bare client (the broker's and the
loopback's own round trip).

Debian's mosquitto on a free loopback port (``apt-get install mosquitto``); writes of one
reading of one channel, each after the previous state arrived and a pause of 1.5 times
the publisher's round interval, so each measures one write's whole path (the write's
mark, a round reading the store, the publish). Run: ``python bench/mqtt.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiomqtt
import httpx
import orjson
import pyarrow as pa

import meterhub
from meterhub.keys import new_key
from meterhub.mqtt.link import INTERVAL, MqttLink
from meterhub.mqtt.settings import MqttSettings

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from tests.mqtt.conftest import Broker  # noqa: E402

from api import server  # noqa: E402
from dsmr import DSMR_READER_PUSHES, corpus, over_http  # noqa: E402
from sections import replace_section  # noqa: E402

PUBLISHERS = 8  #: clients publishing telegrams at once

TOPIC = "meterhub/lab/logger-1/air_temperature"


def reading(i: int) -> pa.Table:
    at = dt.datetime(2024, 1, 1, tzinfo=dt.UTC) + dt.timedelta(minutes=i)
    return pa.table({"source": ["lab"], "device": ["logger-1"],
                     "channel": ["air_temperature"], "ts": [at], "value": [20 + i / 100],
                     "unit": ["°C"], "quantity": ["air_temperature"], "kind": ["instant"]})


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered) * 1000, ordered[int(len(ordered) * 0.99)] * 1000


async def publish_latency(port: int, folder: Path, n: int) -> list[float]:
    took = []
    with meterhub.open(f"duckdb:///{folder / 'hub.duckdb'}") as hub:
        hub.write(reading(0))
        link = MqttLink(hub, MqttSettings(host="127.0.0.1", port=port))
        task = asyncio.create_task(link.run())
        async with aiomqtt.Client("127.0.0.1", port) as client:
            await client.subscribe(TOPIC, qos=1)
            for i in range(1, n + 1):
                await asyncio.sleep(INTERVAL * 1.5)
                await asyncio.to_thread(hub.write, reading(i))
                started = time.perf_counter()  # stored: the publisher was told
                async for message in client.messages:
                    state = orjson.loads(bytes(message.payload))  # type: ignore[arg-type]
                    if state["value"] == 20 + i / 100:
                        took.append(time.perf_counter() - started)
                        break
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    return took


async def publish_all(port: int, telegrams: list[str], clients: int) -> float:
    """Publish ``telegrams`` at QoS 1 from ``clients`` clients, each its share in order as
    fast as the broker acknowledges; the monotonic time of the first publish."""
    async def client_share(share: list[str]) -> None:
        async with aiomqtt.Client("127.0.0.1", port) as client:
            for text in share:
                await client.publish("meterhub/ingest/telegram", text.encode(), qos=1)

    started = time.monotonic()
    async with asyncio.TaskGroup() as group:
        for n in range(clients):
            group.create_task(client_share(telegrams[n::clients]))
    return started


def over_mqtt(telegrams: list[str], folder: Path, broker: Broker,
              clients: int = PUBLISHERS) -> tuple[float, float]:
    """telegrams/s from the first publish until all are stored, and the publishers' own
    rate (the broker acknowledges on receipt: it queues what meterhub has not taken)."""
    store = folder / "mqtt.duckdb"
    with meterhub.open(f"duckdb:///{store}") as hub:
        record, key = new_key("bench", "read", "100000000/minute")
        hub.store.add_key(record)
    config = folder / "meterhub.toml"
    config.write_text(f'[store]\nurl = "duckdb:///{store}"\n\n'
                      f'[mqtt]\nhost = "127.0.0.1"\nport = {broker.port}\n')
    with server([sys.executable, "-m", "meterhub.cli", "serve", "--config", str(config),
                 "--port", "0"]) as base, httpx.Client(
                     base_url=base, headers={"X-API-Key": key}) as api:
        asyncio.run(online(broker.port))
        started = time.monotonic()
        first = asyncio.run(publish_all(broker.port, telegrams, clients))
        published = time.monotonic()
        while stored(api) < len(telegrams):
            time.sleep(0.05)
            if time.monotonic() - started > 600:
                raise RuntimeError(f"{stored(api)} of {len(telegrams)} telegrams stored")
        done = time.monotonic()
    with meterhub.open(f"duckdb:///{store}") as hub:
        count = hub.count(device="p1", channel="electricity_delivered_1")
    if count != len(telegrams):
        raise RuntimeError(f"{count} telegrams stored of {len(telegrams)} published")
    return len(telegrams) / (done - first), len(telegrams) / (published - started)


def stored(api: httpx.Client) -> int:
    channels = api.get("/api/v1/channels", params={"device": "p1"}).json()["data"]
    return next((c["readings"] for c in channels if c["channel"] == "electricity_delivered_1"),
                0)


async def online(port: int) -> None:
    """Once the server's link said ``online`` (it has subscribed)."""
    async with aiomqtt.Client("127.0.0.1", port) as client:
        await client.subscribe("meterhub/status", qos=1)
        async with asyncio.timeout(30):
            async for message in client.messages:
                if message.payload == b"online":
                    return


async def bare_latency(port: int, n: int) -> list[float]:
    took = []
    async with aiomqtt.Client("127.0.0.1", port) as sub, \
            aiomqtt.Client("127.0.0.1", port) as pub:
        await sub.subscribe("bench/echo", qos=1)
        for i in range(n):
            started = time.perf_counter()
            await pub.publish("bench/echo", str(i).encode(), qos=1)
            async for message in sub.messages:
                if bytes(message.payload) == str(i).encode():  # type: ignore[arg-type]
                    took.append(time.perf_counter() - started)
                    break
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writes", type=int, default=60)
    parser.add_argument("--telegrams", type=int, default=15_000)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    started = time.monotonic()
    telegrams = corpus(max(args.telegrams, 24_000))
    with tempfile.TemporaryDirectory() as tmp:
        # the broker queues what meterhub has not taken yet: all of it (mosquitto's
        # default keeps 1,000 a client and drops the rest, QoS 1 or not)
        broker = Broker(Path(tmp), extra="max_queued_messages 0\n")
        broker.start()
        try:
            bare = asyncio.run(bare_latency(broker.port, 500))
            published = asyncio.run(publish_latency(broker.port, Path(tmp), args.writes))
            http_folder, mqtt_folder = Path(tmp) / "http", Path(tmp) / "mqtt"
            http_folder.mkdir()
            mqtt_folder.mkdir()
            http, http99 = over_http(telegrams, http_folder, 8)
            mqtt, sent = over_mqtt(telegrams[:args.telegrams], mqtt_folder, broker)
        finally:
            broker.stop()
    first, published = published[0], published[1:]  # the first round warms up (cold reads)
    (bare50, bare99), (pub50, pub99) = percentiles(bare), percentiles(published)
    text = "\n".join([
        "## MQTT: telegram ingest and publish latency",
        "",
        f"Command: `python bench/mqtt.py` ({time.monotonic() - started:.0f} s, "
        f"{dt.datetime.now(dt.UTC).date().isoformat()}, same machine as above), Debian's "
        "mosquitto on loopback.",
        "",
        f"Ingest: {args.telegrams:,} DSMR 5 telegrams (bench/dsmr.py's) published at QoS 1 "
        f"to `meterhub/ingest/telegram` by {PUBLISHERS} clients, each as fast as the broker "
        "acknowledges, to a `meterhub serve` process with [mqtt]; timed from the first "
        "publish until the API counts every telegram stored (each is acknowledged to the "
        "broker once committed). The reference is the HTTP push of the same telegrams in "
        "the same run (wrk, 8 keep-alive clients, one 10 s run, every answer 201 and "
        "stored).",
        "",
        "| path | telegrams/s | vs HTTP push | vs DSMR-reader's HTTP (8 clients) |",
        "|---|---|---|---|",
        f"| HTTP: POST /api/v1/datalogger/dsmrreading, 8 clients, p99 {http99:.0f} ms "
        f"(reference) | {http:,.0f} | 1.00x | {http / DSMR_READER_PUSHES:.1f}x |",
        f"| MQTT: published to the telegram topic -> stored | {mqtt:,.0f} | "
        f"{mqtt / http:.2f}x | {mqtt / DSMR_READER_PUSHES:.1f}x |",
        "",
        f"The publishers alone sent {sent:,.0f} telegrams/s (the broker acknowledges on "
        "receipt and queues for meterhub what it has not taken; `max_queued_messages 0` "
        "lets it queue them all: by default mosquitto keeps 1,000 for a client and drops "
        "the rest, QoS 1 or not).",
        "",
        "Publish latency: a reading written with `Hub.write` (DuckDB file) until "
        "its state reaches a subscriber, one write at a time, each after the publisher's "
        f"round interval ({INTERVAL:g} s) passed; the reference is a bare client's "
        "message to a subscriber through the same broker.",
        "",
        "| path | samples | p50 ms | p99 ms |",
        "|---|---|---|---|",
        f"| bare publish -> subscriber (reference) | {len(bare)} | {bare50:.2f} | "
        f"{bare99:.2f} |",
        f"| `Hub.write` returned -> state at a subscriber | {len(published)} | {pub50:.2f} "
        f"| {pub99:.2f} |",
        f"| the same, the first write after the publisher started | 1 | {first * 1000:.0f} "
        "| |",
        "",
        "A state costs a round: the store's per-channel statistics, the newest reading's "
        "quality (one narrow read), the discovery config the first time, and a QoS 1 "
        "publish. Writes in quicker succession than the round interval are coalesced: "
        "the channel's newest state goes out once per round, so a write that comes while "
        "the publisher waits out the interval after a round waits up to that interval "
        "(each write here comes 1.5 intervals after the previous state; with 1.1 a p99 of "
        "0.9 s showed such waits).",
    ])
    print(text)
    if not args.no_write:
        replace_section(ROOT / "BENCHMARKS.md", "mqtt", text)


if __name__ == "__main__":
    main()

"""MQTT publish latency: from a reading stored (`Hub.write` returning) to its state received
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
import orjson
import pyarrow as pa

import meterhub
from meterhub.mqtt.link import INTERVAL, MqttLink
from meterhub.mqtt.settings import MqttSettings

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from tests.mqtt.conftest import Broker  # noqa: E402

from sections import replace_section  # noqa: E402

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
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        broker = Broker(Path(tmp))
        broker.start()
        try:
            bare = asyncio.run(bare_latency(broker.port, 500))
            published = asyncio.run(publish_latency(broker.port, Path(tmp), args.writes))
        finally:
            broker.stop()
    first, published = published[0], published[1:]  # the first round warms up (cold reads)
    (bare50, bare99), (pub50, pub99) = percentiles(bare), percentiles(published)
    text = "\n".join([
        "## MQTT: publish latency",
        "",
        f"Command: `python bench/mqtt.py` ({time.monotonic() - started:.0f} s, "
        f"{dt.datetime.now(dt.UTC).date().isoformat()}, same machine as above), Debian's "
        "mosquitto on loopback. A reading written with `Hub.write` (DuckDB file) until "
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

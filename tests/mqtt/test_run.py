"""`meterhub run --no-api` with [mqtt]: the process publishes and takes readings from the
broker, and a reading the broker took is stored even when the process is killed in the
middle of a stream (acknowledged only once stored, kept by the broker meanwhile)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiomqtt
import orjson

import meterhub
from tests.mqtt.clients import collect, states
from tests.mqtt.conftest import Broker
from tests.mqtt.test_ingest import LAB, reading

STATE = "meterhub/lab/logger-1/air_temperature"


def start(folder: Path, broker: Broker) -> subprocess.Popen[str]:
    (folder / "meterhub.toml").write_text(
        f'[store]\nurl = "duckdb:///{folder / "hub.duckdb"}"\n\n'
        f'[mqtt]\nhost = "127.0.0.1"\nport = {broker.port}\n')
    return subprocess.Popen(
        [sys.executable, "-m", "meterhub.cli", "run", "--config", "meterhub.toml",
         "--no-api", "--every", "3600"], cwd=folder, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})


def stop(process: subprocess.Popen[str]) -> str:
    """Ctrl-C, as a user stops it; its output. Killed, and the test failed with that
    output, if it does not stop (no process is left behind to meet a later test's
    broker on a reused port)."""
    process.send_signal(signal.SIGINT)
    try:
        return process.communicate(timeout=30)[0]
    except subprocess.TimeoutExpired:
        process.kill()
        output = process.communicate()[0]
        raise AssertionError(f"meterhub run did not stop on Ctrl-C:\n{output[-3000:]}"
                             ) from None


async def online(broker: Broker) -> None:
    """Once the process said ``online`` (it subscribed right after)."""
    await collect(broker, lambda got: any(
        m.topic.value == "meterhub/status" and m.payload == b"online" for m in got), 30)


def test_run_without_the_api_takes_readings_from_the_broker_and_publishes_them(
        tmp_path: Path, broker: Broker) -> None:
    process = start(tmp_path, broker)
    try:
        async def run() -> list[aiomqtt.Message]:
            await online(broker)
            async with aiomqtt.Client("127.0.0.1", broker.port) as client:
                await client.publish(LAB, orjson.dumps([reading(0, 20.0), reading(1, 21.5)]),
                                     qos=1)
            # stored, then published as the channel's newest state
            return await collect(broker, lambda got: bool(states(got, STATE)), 20)

        got = asyncio.run(run())
        assert states(got, STATE)[0]["value"] == 21.5
    finally:
        output = stop(process)
    assert process.returncode == 0, output
    with meterhub.open(f"duckdb:///{tmp_path / 'hub.duckdb'}") as hub:
        assert list(hub.readings(device="logger-1")["value"]) == [20.0, 21.5]
    status = subprocess.run([sys.executable, "-m", "meterhub.cli", "status", "--config",
                             "meterhub.toml"], cwd=tmp_path, capture_output=True, text=True,
                            check=True)
    # under the table, or beside the CSV a pipe gets (on stderr, as every note)
    told = next(line for line in status.stderr.splitlines() if line.startswith("MQTT link"))
    assert told.startswith(f"MQTT link meterhub to 127.0.0.1:{broker.port}: down since ")
    assert told.endswith("(meterhub stopped); published 1 states, took 1 messages "
                         "(0 rejected)")


def test_a_reading_the_broker_took_is_stored_when_the_process_is_killed_meanwhile(
        tmp_path: Path, persistent_broker: Broker) -> None:
    broker, total = persistent_broker, 600
    process = start(tmp_path, broker)

    async def stream() -> None:
        nonlocal process
        await online(broker)
        async with aiomqtt.Client("127.0.0.1", broker.port) as client:
            for n in range(total):
                await client.publish(LAB, orjson.dumps(reading(n, float(n))), qos=1)
                if n == total // 3:
                    process.kill()  # SIGKILL: nothing is cleaned up
                    process.communicate(timeout=10)  # (its pipe closed)
                    process = start(tmp_path, broker)  # it takes the session up again

    asyncio.run(stream())
    time.sleep(0.1)
    try:
        async def done() -> None:  # the last reading is published once it is stored
            await collect(broker, lambda got: any(
                s["value"] == total - 1 for s in states(got, STATE)), 30)

        asyncio.run(done())
    finally:
        output = stop(process)
    assert process.returncode == 0, output
    with meterhub.open(f"duckdb:///{tmp_path / 'hub.duckdb'}") as hub:
        values = list(hub.readings(device="logger-1")["value"])
    assert values == [float(n) for n in range(total)]

"""A real MQTT broker for the tests: Debian's mosquitto (`make test` installs it) on a free
loopback port, with a throw-away config; without persistence a restart loses every
retained message and session, as a broker that crashed would, with it (`persistent`) a
restart keeps them, as a broker stopped and started again does."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

MOSQUITTO = "/usr/sbin/mosquitto"


class Broker:
    """One mosquitto process; `restart` stops it and starts it again on the same port."""

    def __init__(self, folder: Path, *, persistent: bool = False, extra: str = "") -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.config = folder / "mosquitto.conf"
        kept = f"persistence true\npersistence_location {folder}/\n" if persistent else \
            "persistence false\n"
        if persistent and os.geteuid() == 0:  # else it runs as "mosquitto", who cannot
            kept += "user root\n"  # write its database into the test's folder
        self.config.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\n"
                               + kept + extra)
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen([MOSQUITTO, "-c", str(self.config)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                assert self.process.poll() is None, "mosquitto did not start"
                assert time.monotonic() < deadline, "mosquitto did not listen"
                time.sleep(0.02)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    running = Broker(tmp_path)
    running.start()
    yield running
    running.stop()


@pytest.fixture
def persistent_broker(tmp_path: Path) -> Iterator[Broker]:
    running = Broker(tmp_path, persistent=True)
    running.start()
    yield running
    running.stop()

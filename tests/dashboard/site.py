"""A real `meterhub serve` for the dashboard's browser tests: a subprocess on a free loopback
port, started as a user starts it (a meterhub.toml, a store filled beforehand), over the
store a test module fills with known data, with a read key made for the browser.

The store is filled and the key made before the server starts: a DuckDB store belongs to
one process at a time, and the server is that process while it runs.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

import meterhub
from meterhub.hub import Hub
from meterhub.keys import new_key

#: how long a server may take to say where it listens
START_SECONDS = 60


@dataclass(frozen=True)
class Site:
    """A running `meterhub serve`: its address, a read key, its store's path."""

    base: str
    key: str
    store: Path

    def client(self) -> httpx.Client:
        """An HTTP client for the API with the read key (what the page is compared with)."""
        return httpx.Client(base_url=self.base, headers={"X-API-Key": self.key}, timeout=30)


def _drain(stream: object, lines: list[str]) -> None:
    # keep reading the server's output so a full pipe never blocks it; kept for failures
    for line in stream:  # type: ignore[attr-defined]
        lines.append(line)


@contextlib.contextmanager
def serve(folder: Path, fill: Callable[[Hub], None], config: str = "") -> Iterator[Site]:
    """`meterhub serve --port 0` over a store in ``folder`` that ``fill`` wrote, with
    ``config`` as its meterhub.toml (the [store] section is added); the Site until the
    block ends, then the server is stopped."""
    store = folder / "hub.duckdb"
    with meterhub.open(f"duckdb:///{store}") as hub:
        fill(hub)
        record, key = new_key("dashboard", "read")
        hub.store.add_key(record)
    toml = folder / "meterhub.toml"
    toml.write_text(f'[store]\nurl = "duckdb:///{store}"\n\n'
                    '[api]\nrate_limit = "100000/minute"\n\n' + config)
    process = subprocess.Popen(
        [sys.executable, "-m", "meterhub.cli", "serve", "--config", str(toml), "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=folder)
    assert process.stdout is not None
    output: list[str] = []
    started = threading.Event()
    first: list[str] = []

    def read_first() -> None:
        assert process.stdout is not None
        first.append(process.stdout.readline())
        started.set()
        _drain(process.stdout, output)

    reader = threading.Thread(target=read_first, daemon=True)
    reader.start()
    try:
        if not started.wait(START_SECONDS) or "meterhub API on http://" not in first[0]:
            raise RuntimeError("meterhub serve did not start: " + "".join(first + output))
        # "meterhub API on http://127.0.0.1:PORT/api/v1 (dashboard at ...)"
        base = first[0].split()[3].removesuffix("/api/v1")
        yield Site(base, key, store)
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=30)
        reader.join(timeout=10)
        process.stdout.close()

"""`meterhub demo`: every vendor emulator on loopback, a demo config, a real sync.

The emulators run as real HTTP servers (uvicorn, one thread each) on free loopback ports,
on the real clock and with every documented limit enforced, so the demo exercises exactly
what a sync against the vendors' clouds does. Data spans 6.9 days: a ZENTRA station's
5-minute records then fit one page (2,000 records), so no device waits a minute.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import uvicorn

from meterhub.clock import Clock, RealClock
from meterhub.emulators import climkit, copper, tandd, zentra

DAYS = 6.9


@dataclass
class Emulator:
    name: str
    url: str
    world: Any


def serve_in_thread(app: Any, **options: Any) -> tuple[str, uvicorn.Server, threading.Thread]:
    """Serve ``app`` with uvicorn on a free loopback port in a daemon thread; its base URL,
    server (set ``should_exit`` to stop it) and thread, once it accepts connections."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    config = {"log_level": "error", "lifespan": "off", **options}
    server = uvicorn.Server(uvicorn.Config(app, **config))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("a server did not start")
        time.sleep(0.02)
    return f"http://127.0.0.1:{sock.getsockname()[1]}", server, thread


@contextmanager
def emulators(*, devices: int = 3, seed: int = 0,
              clock: Clock | None = None) -> Iterator[dict[str, Emulator]]:
    """All four emulators serving on loopback until the block ends, on ``clock`` (the wall
    clock unless given: a faster one makes their data grow faster)."""
    clock = clock or RealClock()
    worlds: dict[str, tuple[Any, Any]] = {
        "zentra": (zentra, zentra.ZentraWorld.create(clock, devices=devices, days=DAYS,
                                                     seed=seed)),
        "tandd": (tandd, tandd.TanddWorld.create(clock, devices=devices, days=DAYS,
                                                 seed=seed)),
        "climkit": (climkit, climkit.ClimkitWorld.create(clock, sites=1, meters=devices,
                                                         days=DAYS, seed=seed)),
        "copper": (copper, copper.CopperWorld.create(clock, meters=devices, days=DAYS,
                                                     seed=seed)),
    }
    running: list[tuple[uvicorn.Server, threading.Thread]] = []
    try:
        served = {}
        for name, (module, world) in worlds.items():
            url, server, thread = serve_in_thread(module.create_app(world))
            running.append((server, thread))
            served[name] = Emulator(name, url, world)
        yield served
    finally:
        for server, _ in running:
            server.should_exit = True
        for _, thread in running:
            thread.join(timeout=10)


def config_text(served: dict[str, Emulator], store_url: str) -> str:
    """A meterhub.toml for the running emulators (their credentials are public)."""
    z, t, c, p = (served[n] for n in ("zentra", "tandd", "climkit", "copper"))
    return f"""# Written by `meterhub demo`: the four vendor emulators on loopback.
[store]
url = "{store_url}"

[[source]]
name = "tahmo"
type = "zentra"
base_url = "{z.url}"
token = "{z.world.token}"
devices = [{", ".join(f'"{d}"' for d in sorted(z.world.devices))}]

[[source]]
name = "lab"
type = "tandd"
base_url = "{t.url}"
api_key = "{tandd.API_KEY}"
login_id = "{tandd.LOGIN_ID}"
login_pass = "{tandd.LOGIN_PASS}"

[[source]]
name = "site"
type = "climkit"
base_url = "{c.url}/api/v1"
username = "{climkit.USERNAME}"
password = "{climkit.PASSWORD}"

[[source]]
name = "homes"
type = "copper"
base_url = "{p.url}"
auth_url = "{p.url}"
client_id = "{copper.CLIENT_ID}"
client_secret = "{copper.CLIENT_SECRET}"
enterprise_id = "{copper.ENTERPRISE}"
"""

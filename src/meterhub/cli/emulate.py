"""Commands that run the vendor emulators: emulate (one vendor) and demo (all four, synced
into a store, with a tour)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from meterhub.cli.common import app, listen, opened, out, user_errors
from meterhub.cli.data import stored_units
from meterhub.cli.output import print_table
from meterhub.cli.sync import run_sync, status_table
from meterhub.errors import MeterhubError
from meterhub.fileio import export_readings

DEFAULT_PORTS = {"zentra": 8401, "tandd": 8402, "climkit": 8403, "copper": 8404}


@app.command()
def emulate(
    vendor: Annotated[str, typer.Argument(
        help="Which vendor API: zentra, tandd, climkit or copper.")],
    host: Annotated[str, typer.Option(help="Address to listen on (loopback by default).")
                    ] = "127.0.0.1",
    port: Annotated[int | None, typer.Option(
        min=0, max=65535, help="Port; 0 picks a free one. Default: 8401 zentra, 8402 tandd, "
                               "8403 climkit, 8404 copper.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the synthetic devices.")] = 0,
    devices: Annotated[int, typer.Option(min=1, help="How many devices.")] = 3,
    days: Annotated[float, typer.Option(
        min=0.01, help="Days of history each device holds.")] = 7.0,
    frozen: Annotated[bool, typer.Option(
        help="Stop the data growing at start-up, so that later syncs see the same data.")
    ] = False,
    limits: Annotated[bool, typer.Option(
        help="Enforce the vendor's rate limits (--no-limits is for crash tests).")] = True,
) -> None:
    """Serve a vendor API emulator with synthetic devices, for development and tests."""
    import uvicorn

    from meterhub.emulators import EMULATORS

    with user_errors():
        if vendor not in EMULATORS:
            raise MeterhubError(f"unknown emulator {vendor!r}: use "
                                f"{', '.join(sorted(EMULATORS))}")
        app_, lines = EMULATORS[vendor](seed=seed, devices=devices, days=days, frozen=frozen,
                                        limits=limits)
    sock, actual = listen(host, port if port is not None else DEFAULT_PORTS.get(vendor, 0))
    out.print(f"{vendor} emulator listening on http://{host}:{actual}", soft_wrap=True,
              markup=False, highlight=False)
    for line in lines:
        out.print(line, soft_wrap=True, highlight=False, markup=False)
    out.file.flush()
    server = uvicorn.Server(uvicorn.Config(app_, log_level="warning", lifespan="off"))
    server.run(sockets=[sock])


@app.command()
def demo(
    store: Annotated[str, typer.Option(help="Store URL for the demo.")
                     ] = "duckdb:///meterhub-demo.duckdb",
    devices: Annotated[int, typer.Option(min=1, help="Devices per vendor.")] = 3,
) -> None:
    """Run every vendor emulator on loopback, sync a week from each, and show a tour."""
    import time
    import tomllib

    from meterhub.config import parse
    from meterhub.demo import config_text, emulators

    started = time.monotonic()
    config_path = Path("meterhub-demo.toml")
    with emulators(devices=devices) as served:
        config_path.write_text(config_text(served, store), encoding="utf-8")
        with user_errors():
            settings = parse(tomllib.loads(config_path.read_text(encoding="utf-8")),
                             path=config_path)
        out.print("[bold]meterhub demo[/]: four vendor emulators on loopback ("
                  + ", ".join(f"{e.name} {e.url}" for e in served.values())
                  + f"); configuration written to {config_path}", soft_wrap=True,
                  highlight=False)
        with opened(settings.store.url, create=True) as hub:
            failed = run_sync(hub, settings.sources)
            out.print()
            stored = stored_units(hub)
            print_table(status_table(hub), stored, title="Sync status",
                        drop_first=["calls", "readings", "last_success", "gaps",
                                    "last_error"])
            station = sorted(served["zentra"].world.devices)[0]
            print_table(hub.aggregate(device=station, channel="air_temperature", every="1d",
                                      tz="Africa/Nairobi", fn=["mean", "min", "max"],
                                      as_="arrow").drop_columns(["bucket_end"]), stored,
                        title=f"Daily air temperature of TAHMO station {station}, "
                              "Africa/Nairobi", drop_first=["device", "channel"])
            export = Path("meterhub-demo-export.csv")
            logger = sorted(served["tandd"].world.loggers)[0]
            with export.open("wb") as handle:
                rows = export_readings(hub.scan(device=logger), handle, "csv")
            out.print(f"Exported {rows:,} readings of T&D logger {logger} to {export}",
                      markup=False, highlight=False, soft_wrap=True)
    flags = f"--config {config_path}"
    out.print(f"\nDone in {time.monotonic() - started:.0f} s. The demo's store and sources "
              f"are in {config_path}; pass {flags} to look further:\n"
              f"  meterhub devices {flags}\n"
              f"  meterhub status {flags}\n"
              f"  meterhub query {flags} --device {station} --channel air_temperature "
              "--every 1h", markup=False, highlight=False, soft_wrap=True)
    if failed:
        raise typer.Exit(1)

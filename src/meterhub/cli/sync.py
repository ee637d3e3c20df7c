"""Commands that keep the store in step with the sources: config check, sync, run, status."""

from __future__ import annotations

import contextlib
import gc
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import pyarrow as pa
import typer
from rich.table import Table

from meterhub.cli.common import (
    ConfigOption,
    HostOption,
    OptionalConfig,
    PortOption,
    StoreOption,
    app,
    err,
    opened,
    out,
    store_url,
    user_errors,
)
from meterhub.cli.output import FormatOption, chosen, emit
from meterhub.hub import Hub
from meterhub.store import shown_url

config_app = typer.Typer(help="Check meterhub.toml.", no_args_is_help=True,
                         rich_markup_mode=None)
app.add_typer(config_app, name="config")


@config_app.command("check")
def config_check(
    config: ConfigOption = Path("meterhub.toml"),
    online: Annotated[bool, typer.Option(
        "--online", help="Also try every source's credentials with one cheap call each.")
    ] = False,
) -> None:
    """Validate the configuration: every source's type, credentials, URLs and variables."""
    import asyncio

    from meterhub.config import load

    with user_errors():
        settings = load(config)
    out.print(f"{config}: ok: store {shown_url(settings.store.url)}, "
              f"{len(settings.sources)} source(s): "
              + ", ".join(f"{s.name} ({s.type})" for s in settings.sources), soft_wrap=True,
              markup=False, highlight=False)
    if not online:
        return
    from meterhub.sources import check_credentials

    checks = asyncio.run(check_credentials(settings.sources))
    for check in checks:
        line = f"source {check.name} ({check.type}): {check.detail}"
        (out if check.ok else err).print(line, markup=False, highlight=False, soft_wrap=True)
    if not all(check.ok for check in checks):
        raise typer.Exit(1)


def _progress_table(rows: list[Any], final: bool) -> Table:
    view = Table(title="Sync" if not final else "Sync summary", header_style="bold")
    for name in ("source", "type", "devices", "done", "failed", "readings", "calls",
                 "waited", "ETA" if not final else "result"):
        view.add_column(name, justify="right" if name not in ("source", "type", "result")
                        else "left", overflow="fold")
    for p in rows:
        eta = p.eta()
        last = (("failed: " + p.error) if p.error else
                (f"{p.failed} device(s) failed" if p.failed else "ok")) if final else (
            "done" if p.finished else ("-" if eta is None else f"{eta:.0f} s"))
        view.add_row(p.name, p.type, str(p.devices), str(p.done), str(p.failed),
                     f"{p.readings:,}", f"{p.calls:,}", f"{p.waited:.0f} s", last)
    return view


def run_sync(hub: Hub, sources: list[Any], *, since: str | None = None,
             until: float | None = None) -> bool:
    """Sync with a live display on a terminal and a summary; True when anything failed."""
    import asyncio

    from rich.live import Live

    from meterhub.sync import SourceProgress, sync_all

    rows: dict[str, SourceProgress] = {}
    live = Live(_progress_table([], final=False), console=err, transient=True,
                auto_refresh=False) if err.is_terminal else None
    with live or contextlib.nullcontext():
        def show(progress: SourceProgress) -> None:
            rows[progress.name] = progress
            if live is not None:
                live.update(_progress_table(list(rows.values()), final=False), refresh=True)

        trace = None
        if os.environ.get("METERHUB_TRACE_COMMITS"):
            def trace(line: str) -> None:
                print(line, file=sys.stderr, flush=True)

        results = asyncio.run(sync_all(hub, sources, since=since, until=until, listener=show,
                                       trace=trace))
    out.print(_progress_table(results, final=True))
    out.print("waited: wall time the source's devices spent held back by its rate limits",
              markup=False, highlight=False)
    failed = False
    for p in results:
        if p.error:
            failed = True
            err.print(f"[bold red]error:[/] {p.error}", markup=False, highlight=False,
                      soft_wrap=True)
        for device, message in p.device_errors.items():
            failed = True
            err.print(f"error: source {p.name}, device {device}: {message}", markup=False,
                      highlight=False, soft_wrap=True)
    return failed


@app.command()
def sync(
    config: ConfigOption = Path("meterhub.toml"),
    source: Annotated[list[str] | None, typer.Option(
        metavar="NAME", help="Only this source (by name); repeat for several.")] = None,
    since: Annotated[str | None, typer.Option(
        metavar="TIME",
        help="Read again from this date or time (UTC); changed values update rows.")] = None,
    until: Annotated[str | None, typer.Option(
        metavar="TIME", help="Stop at this date or time (UTC).")] = None,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Print the plan (calls, readings, duration) and call no vendor.")
    ] = False,
) -> None:
    """Fetch new readings from every configured source into the store."""
    import time

    from meterhub.config import load
    from meterhub.sync import parse_until, plan_source

    with user_errors():
        settings = load(config)
        sources = [settings.source(name) for name in source] if source else settings.sources
        end = parse_until(until)
    with opened(settings.store.url, create=True) as hub:
        if dry_run:
            now = end or time.time()
            plans = [plan_source(hub, s, now=now, since=since) for s in sources]
            view = Table(title="Sync plan (no vendor was called)", header_style="bold")
            for name in ("source", "type", "devices", "readings", "calls", "duration",
                         "note"):
                view.add_column(name, overflow="fold")
            for p in plans:
                view.add_row(p.name, p.type, str(p.devices), f"~{p.records:,}",
                             f"{p.calls:,}", f"{p.seconds:.0f} s", p.note)
            out.print(view)
            out.print(f"total: {sum(p.calls for p in plans):,} calls, about "
                      f"{max([0.0, *(p.seconds for p in plans)]):.0f} s (sources run "
                      "together)", markup=False, highlight=False)
            return
        failed = run_sync(hub, sources, since=since, until=end)
    if failed:
        raise typer.Exit(1)


def serve_api(hub: Hub, settings: Any, host: str | None, port: int | None,
              background: Any = None) -> None:
    """Serve the API on uvicorn (uvloop + httptools) until stopped or told to exit."""
    import uvicorn

    from meterhub.api import create_app
    from meterhub.api.server import uvicorn_options
    from meterhub.cli.common import listen

    host = host or settings.api.host
    sock, actual = listen(host, settings.api.port if port is None else port)
    server: uvicorn.Server | None = None

    async def hosted() -> None:
        await background()
        if server is not None:  # a finite schedule (--rounds) ends the process
            server.should_exit = True

    api = create_app(hub, settings=settings, rate_limit=settings.api.rate_limit,
                     background=hosted if background is not None else None)
    # uvloop + httptools, with a deadline for request heads, a body idle timeout and
    # connection limits (meterhub.api.server)
    server = uvicorn.Server(uvicorn.Config(api, **uvicorn_options()))
    shown = f"[{host}]" if ":" in host else host
    pages = f", dashboard at http://{shown}:{actual}/" if settings.api.dashboard else ""
    out.print(f"meterhub API on http://{shown}:{actual}/api/v1 (docs at /docs{pages}) over "
              f"{hub.url}; stop with Ctrl-C", soft_wrap=True, markup=False, highlight=False)
    if not any(k.active for k in hub.store.api_keys()):
        # a shared store takes a key made by another process while this one serves
        how = ("run" if hub.store.shared else "stop the server and run")
        out.print(f"no API keys yet: {how} `meterhub keys create --name me --scope admin`",
                  soft_wrap=True, markup=False, highlight=False)
    out.file.flush()
    # what start-up made lives as long as the process: out of the collector's way, a
    # full collection went from about 60 ms to a few (DSMR pushes' p99: 90 -> 35 ms)
    gc.collect()
    gc.freeze()
    server.run(sockets=[sock])


@app.command("run")
def run_(
    config: ConfigOption = Path("meterhub.toml"),
    every: Annotated[float, typer.Option(
        min=1.0, help="Seconds between the starts of two sync rounds (at least 1).")] = 900.0,
    rounds: Annotated[int | None, typer.Option(
        min=1, help="Stop after this many rounds (default: run until stopped).")] = None,
    api: Annotated[bool, typer.Option(
        help="Serve the API in the same process (--no-api: only the schedule).")] = True,
    host: HostOption = None,
    port: PortOption = None,
    source: Annotated[list[str] | None, typer.Option(
        metavar="NAME", help="Only sync this source (by name); repeat for several. Splits "
        "the sync across processes that share a ClickHouse store.")] = None,
) -> None:
    """Serve the API and keep the store in sync on a schedule, in one process (one process
    owns a DuckDB file; any number share a ClickHouse store). With [mqtt] in the config it
    also publishes to the broker and takes readings and telegrams from it (also with
    --no-api)."""
    import asyncio
    import datetime as dt

    from meterhub.config import load
    from meterhub.sync import SourceProgress, run_forever

    with user_errors():
        settings = load(config)
        sources = [settings.source(name) for name in source] if source else settings.sources

    def report(number: int, results: list[SourceProgress]) -> None:
        stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        parts = [f"{p.name}: {p.readings:,} readings, {p.calls} calls"
                 + (f", failed ({p.error})" if p.error else
                    (f", {p.failed} device(s) failed" if p.failed else ""))
                 for p in results]
        out.print(f"{stamp} round {number}: " + "; ".join(parts), highlight=False,
                  soft_wrap=True, markup=False)
        out.file.flush()

    out.print(f"syncing {len(sources)} source(s) every {every:.0f} s into "
              f"{shown_url(settings.store.url)}; stop with Ctrl-C", markup=False, soft_wrap=True,
              highlight=False)
    with opened(settings.store.url, create=True) as hub:
        def schedule() -> Any:
            return run_forever(hub, sources, every=every, rounds=rounds,
                               on_round=report)

        if api:  # the API's lifespan runs the MQTT link when [mqtt] names a broker
            serve_api(hub, settings, host, port, background=schedule)
            return
        try:
            asyncio.run(_with_mqtt(hub, settings, schedule))
        except KeyboardInterrupt:
            out.print("stopped")


async def _with_mqtt(hub: Hub, settings: Any, schedule: Any) -> None:
    """The schedule, and the MQTT link beside it when [mqtt] names a broker; what the
    last round wrote is published before a finite schedule ends."""
    import asyncio

    if settings.mqtt is None:
        await schedule()
        return
    from meterhub.mqtt.link import MqttLink

    link = MqttLink(hub, settings.mqtt, dsmr=settings.dsmr)
    running = asyncio.ensure_future(link.run())
    try:
        await schedule()
        await link.published_all(seconds=5)
    finally:
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running


@app.command()
def status(store: StoreOption = None, config: OptionalConfig = None,
           fmt: FormatOption = None) -> None:
    """Per source and device: last success, newest reading, lag, calls, last error, gaps;
    and the MQTT link's health, when one runs."""
    from meterhub.mqtt import health

    with opened(store_url(store, config), create=False) as hub, user_errors():
        emit(status_table(hub), chosen(fmt), {}, title="Sync status",
             drop_first=["calls", "readings", "last_success", "gaps"],
             notes=["calls: the calls the source made while this device was being fetched "
                    "(devices of one source share its limits and run together)",
                    *map(health.line, health.links(hub))])


def status_table(hub: Hub) -> pa.Table:
    """One row per synced (source, device): its health as data."""
    import datetime as dt

    state = hub.store.sync_status().to_pylist()
    stats = hub.channels(as_="arrow").to_pylist()
    gaps = hub.gaps(as_="arrow").to_pylist()
    newest: dict[str, Any] = {}
    for row in stats:
        if row["last_ts"] is not None and (row["device"] not in newest or
                                           row["last_ts"] > newest[row["device"]]):
            newest[row["device"]] = row["last_ts"]
    open_gaps: dict[str, int] = {}
    for gap in gaps:
        open_gaps[gap["device"]] = open_gaps.get(gap["device"], 0) + 1
    now = dt.datetime.now(dt.UTC)
    rows = []
    for row in state:
        latest = newest.get(row["device"])
        rows.append({
            "source": row["source"], "device": row["device"],
            "last_success": row["last_success"], "newest_reading": latest,
            "lag_h": None if latest is None else round(
                (now - latest).total_seconds() / 3600, 1),
            "calls": int(row["calls"] or 0), "readings": int(row["readings"] or 0),
            "last_error": None if not row["last_error_class"] else
            f"{row['last_error_class']}: {row['last_error']}",
            "gaps": open_gaps.get(row["device"], 0)})
    schema = pa.schema([("source", pa.string()), ("device", pa.string()),
                        ("last_success", pa.timestamp("us", "UTC")),
                        ("newest_reading", pa.timestamp("us", "UTC")),
                        ("lag_h", pa.float64()), ("calls", pa.int64()),
                        ("readings", pa.int64()), ("last_error", pa.string()),
                        ("gaps", pa.int64())])
    return pa.Table.from_pylist(rows, schema=schema)

"""The ``meterhub`` command: a thin typer shell over `meterhub.Hub`."""

from __future__ import annotations

import contextlib
import math
import os
import sys
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

import pyarrow as pa
import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from meterhub import __version__
from meterhub.errors import MeterhubError
from meterhub.fileio import FORMATS, Format, export_readings, guess_format, read_readings_file
from meterhub.hub import Hub
from meterhub.hub import open as open_hub
from meterhub.store import DEFAULT_URL

app = typer.Typer(
    name="meterhub",
    help="One hub for sensor and meter data: import, store, query, aggregate and export "
         "readings.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console()
err = Console(stderr=True)

StoreOption = Annotated[str, typer.Option(
    "--store", envvar="METERHUB_STORE",
    help="Store URL, e.g. duckdb:///meterhub.duckdb (env METERHUB_STORE).")]
DeviceOption = Annotated[list[str] | None, typer.Option(
    "--device", "-d", help="Device id; repeat for several. Default: all.")]
ChannelOption = Annotated[list[str] | None, typer.Option(
    "--channel", "-c", help="Channel name; repeat for several. Default: all.")]
StartOption = Annotated[str | None, typer.Option(
    help="Start, inclusive, ISO 8601 (naive times are UTC, or in --tz for aggregates).")]
EndOption = Annotated[str | None, typer.Option(help="End, exclusive, ISO 8601.")]
UnitOption = Annotated[str | None, typer.Option(
    help="Convert values to this unit, e.g. degF, MJ, L, hPa.")]


@contextlib.contextmanager
def _user_errors() -> Iterator[None]:
    """Any meterhub error becomes one line on stderr and exit code 1."""
    try:
        yield
    except MeterhubError as exc:
        err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None


@contextlib.contextmanager
def _hub(store: str) -> Iterator[Hub]:
    with _user_errors():
        hub = open_hub(store)
        try:
            yield hub
        finally:
            hub.close()


def _version(value: bool) -> None:
    if value:
        out.print(f"meterhub {__version__}")
        raise typer.Exit()


@app.callback()
def _main(version: Annotated[bool, typer.Option(
        "--version", callback=_version, is_eager=True, help="Print the version.")] = False
          ) -> None:
    """meterhub: readings from many devices in one store."""


@app.command("import")
def import_(
    files: Annotated[list[Path], typer.Argument(help="CSV, JSON (array or lines) or Parquet "
                                                     "files of readings.")],
    store: StoreOption = DEFAULT_URL,
    fmt: Annotated[str | None, typer.Option(
        "--format", help="csv, json or parquet; default: from the file's extension.")] = None,
    source: Annotated[str, typer.Option(
        help="Source name for rows that do not name one.")] = "import",
) -> None:
    """Import readings. Every file is checked first; one bad row writes nothing of it.

    Columns: device, channel, ts, value, unit; optional source, quality, seq, error_code,
    validated, and quantity and kind (instant, counter, delta) for new channels.
    """
    with _user_errors():
        tables = [(path, read_readings_file(path, fmt=fmt, source=source)) for path in files]
    with _hub(store) as hub:
        for path, table in tables:
            result = hub.write(table, origin=f"import:{path.name}")
            out.print(f"{path}: {result.written:,} readings written "
                      f"({result.rows:,} rows read)")


@app.command()
def export(
    store: StoreOption = DEFAULT_URL,
    device: DeviceOption = None,
    channel: ChannelOption = None,
    start: StartOption = None,
    end: EndOption = None,
    unit: UnitOption = None,
    fmt: Annotated[str | None, typer.Option(
        "--format", help="csv, json or parquet; default: from --output's extension, "
                         "else csv.")] = None,
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", help="File to write; default: standard output.")] = None,
) -> None:
    """Export readings as CSV, JSON or Parquet, streamed (times are UTC)."""
    with _user_errors():
        kind: Format = guess_format(output, fmt) if output and (fmt or output.suffix) else \
            guess_format(Path("out.csv"), fmt)
        if kind == "parquet" and output is None and sys.stdout.isatty():
            raise MeterhubError("Parquet is binary: pass --output FILE.parquet")
    with _hub(store) as hub:
        reader = hub.scan(device=device, channel=channel, start=start, end=end, unit=unit)
        if output is None:
            export_readings(reader, sys.stdout.buffer, kind)
            sys.stdout.buffer.flush()
            return
        total = hub.count(device=device, channel=channel, start=start, end=end)
        partial = output.with_name(output.name + ".part")
        with Progress(TextColumn("{task.description}"), BarColumn(),
                      TextColumn("{task.completed:,}/{task.total:,}"), TimeRemainingColumn(),
                      console=err, transient=True, disable=total < 200_000) as progress:
            task = progress.add_task(f"exporting to {output.name}", total=total)
            try:
                with partial.open("wb") as handle:
                    rows = export_readings(reader, handle, kind,
                                           on_batch=lambda n: progress.advance(task, n))
                partial.replace(output)
            finally:
                partial.unlink(missing_ok=True)
        err.print(f"{output}: {rows:,} readings exported")


def _cell(value: Any) -> str:
    """Table text for a value; escaped, since rich reads [brackets] as markup."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    if hasattr(value, "isoformat"):
        return str(value.isoformat(sep=" "))
    return escape(str(value))


def _print_table(table: pa.Table, title: str | None = None) -> None:
    view = Table(title=title, show_lines=False, header_style="bold")
    for name in table.column_names:
        view.add_column(name, justify="right" if pa.types.is_floating(
            table.schema.field(name).type) or pa.types.is_integer(
            table.schema.field(name).type) else "left")
    for row in table.to_pylist():
        view.add_row(*(_cell(row[name]) for name in table.column_names))
    out.print(view)


@app.command()
def query(
    store: StoreOption = DEFAULT_URL,
    device: DeviceOption = None,
    channel: ChannelOption = None,
    start: StartOption = None,
    end: EndOption = None,
    every: Annotated[str | None, typer.Option(
        help="Aggregate into buckets: 15min, 1h, 1d, 1w, 1mo or 1y.")] = None,
    tz: Annotated[str, typer.Option(help="IANA time zone for buckets and naive times.")] = "UTC",
    fn: Annotated[list[str] | None, typer.Option(
        help="Aggregate function(s): mean min max first last count (instant), consumption "
             "(counter), sum (delta). Default: all for the kind.")] = None,
    unit: UnitOption = None,
    limit: Annotated[int, typer.Option(help="Show at most this many rows.")] = 50,
) -> None:
    """Show readings, or aggregates per bucket with --every, as a table."""
    with _hub(store) as hub:
        if every is None:
            reader = hub.scan(device=device, channel=channel, start=start, end=end, unit=unit,
                              batch_size=max(limit, 1))
            batches, shown = [], 0
            for batch in reader:
                batches.append(batch.slice(0, limit - shown))
                shown += batches[-1].num_rows
                if shown >= limit:
                    break
            table = pa.Table.from_batches(batches, schema=reader.schema)
            table = table.drop_columns(["source"])
            total = hub.count(device=device, channel=channel, start=start, end=end)
            title = f"{total:,} readings" + (f", first {limit:,} shown" if total > limit else "")
        else:
            table = hub.aggregate(device=device, channel=channel, start=start, end=end,
                                  every=every, tz=tz, fn=fn, unit=unit, as_="arrow")
            title = f"{table.num_rows:,} buckets of {every} in {tz}" + (
                f", first {limit:,} shown" if table.num_rows > limit else "")
            table = table.drop_columns(["bucket_end"]).slice(0, limit)
        _print_table(table, title)


@app.command()
def devices(store: StoreOption = DEFAULT_URL) -> None:
    """List devices with their channels, reading counts and newest measurement."""
    with _hub(store) as hub:
        stats: pa.Table = hub.channels(as_="arrow")
        _print_table(stats.select(["source", "device", "channel", "kind", "unit", "readings",
                                   "first_ts", "last_ts"]),
                     f"{len(hub.store.devices())} devices, {stats.num_rows} channels")


@app.command()
def gaps(
    store: StoreOption = DEFAULT_URL,
    device: DeviceOption = None,
    channel: ChannelOption = None,
    start: StartOption = None,
    end: EndOption = None,
) -> None:
    """List missing intervals and seq jumps per channel."""
    with _hub(store) as hub:
        table = hub.gaps(device=device, channel=channel, start=start, end=end, as_="arrow")
        _print_table(table, f"{table.num_rows} gaps")


@app.command()
def compact(store: StoreOption = DEFAULT_URL) -> None:
    """Rewrite the store clustered by device, channel and time (faster range queries)."""
    with _hub(store) as hub:
        hub.compact()
        out.print(f"{hub.url}: compacted")


@app.command()
def sample(
    store: Annotated[str, typer.Option(
        "--store", envvar="METERHUB_STORE", help="Store URL.")] = "duckdb:///meterhub-sample.duckdb",
) -> None:
    """Import the bundled sample (a weather station and an energy meter) and show a tour."""
    path = resources.files("meterhub") / "data" / "sample.csv"
    with resources.as_file(path) as sample_path, _user_errors():
        table = read_readings_file(sample_path)
    with _hub(store) as hub:
        result = hub.write(table, origin="sample")
        out.print(f"[bold]Imported[/] {result.written:,} sample readings into {hub.url}\n")
        _print_table(hub.channels(as_="arrow").select(
            ["device", "channel", "kind", "unit", "readings", "last_ts"]),
            "Channels")
        _print_table(hub.aggregate(device="ws-demo-1", channel="air_temperature", every="1d",
                                   tz="Europe/Amsterdam", as_="arrow").select(
            ["bucket", "mean", "min", "max", "count", "unit"]),
            "Daily air temperature, Europe/Amsterdam (27 October has 25 hours)")
        _print_table(hub.aggregate(device="em-demo-1", channel="energy_import", every="1d",
                                   tz="Europe/Amsterdam", as_="arrow").select(
            ["bucket", "consumption", "count", "unit"]),
            "Daily consumption of a kWh counter")
    out.print(f"\nTry: meterhub query --store {store} --device ws-demo-1 --every 1h "
              "--tz Europe/Amsterdam --unit degF --channel air_temperature")


@app.command()
def emulate(
    vendor: Annotated[str, typer.Argument(
        help="Which vendor API: zentra, tandd, climkit or copper.")],
    host: Annotated[str, typer.Option(help="Address to listen on (loopback by default).")
                    ] = "127.0.0.1",
    port: Annotated[int | None, typer.Option(
        help="Port; 0 picks a free one. Default: 8401 zentra, 8402 tandd, 8403 climkit, "
             "8404 copper.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the synthetic devices.")] = 0,
    devices: Annotated[int, typer.Option(help="How many devices.")] = 3,
    days: Annotated[float, typer.Option(help="Days of history each device holds.")] = 7.0,
    frozen: Annotated[bool, typer.Option(
        help="Stop the data growing at start-up, so that later syncs see the same data.")
    ] = False,
    limits: Annotated[bool, typer.Option(
        help="Enforce the vendor's rate limits (--no-limits is for crash tests).")] = True,
) -> None:
    """Serve a vendor API emulator with synthetic devices, for development and tests."""
    import uvicorn

    from meterhub.emulators import EMULATORS

    with _user_errors():
        if vendor not in EMULATORS:
            raise MeterhubError(f"unknown emulator {vendor!r}: use "
                                f"{', '.join(sorted(EMULATORS))}")
        app_, lines = EMULATORS[vendor](seed=seed, devices=devices, days=days, frozen=frozen,
                                        limits=limits)
    port = port if port is not None else {"zentra": 8401, "tandd": 8402,
                                               "climkit": 8403, "copper": 8404}.get(vendor, 0)
    sock, actual = _listen(host, port)
    out.print(f"{vendor} emulator listening on http://{host}:{actual}", soft_wrap=True)
    for line in lines:
        out.print(line, soft_wrap=True, highlight=False)
    out.file.flush()
    server = uvicorn.Server(uvicorn.Config(app_, log_level="warning", lifespan="off"))
    server.run(sockets=[sock])


def _listen(host: str, port: int) -> tuple[Any, int]:
    """A bound socket (port 0 picks a free one) and its port; exit 1 if it cannot bind."""
    import socket

    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        err.print(f"[bold red]error:[/] cannot listen on {host}:{port}: {exc.strerror}",
                  soft_wrap=True)
        raise typer.Exit(1) from None
    return sock, int(sock.getsockname()[1])


config_app = typer.Typer(help="Check meterhub.toml.", no_args_is_help=True)
app.add_typer(config_app, name="config")
ConfigOption = Annotated[Path, typer.Option(
    "--config", envvar="METERHUB_CONFIG", help="Configuration file (env METERHUB_CONFIG).")]


@config_app.command("check")
def config_check(config: ConfigOption = Path("meterhub.toml")) -> None:
    """Validate the configuration: every source's type, credentials, URLs and variables."""
    from meterhub.config import load

    with _user_errors():
        settings = load(config)
    out.print(f"{config}: ok: store {settings.store.url}, {len(settings.sources)} source(s): "
              + ", ".join(f"{s.name} ({s.type})" for s in settings.sources), soft_wrap=True)


def _progress_table(rows: list[Any], final: bool) -> Table:
    view = Table(title="Sync" if not final else "Sync summary", header_style="bold")
    for name in ("source", "type", "devices", "done", "failed", "readings", "calls",
                 "waiting on limits", "ETA" if not final else "result"):
        view.add_column(name, justify="right" if name not in ("source", "type", "result")
                        else "left")
    for p in rows:
        eta = p.eta()
        last = (("failed: " + p.error) if p.error else
                (f"{p.failed} device(s) failed" if p.failed else "ok")) if final else (
            "done" if p.finished else ("-" if eta is None else f"{eta:.0f} s"))
        view.add_row(_cell(p.name), p.type, str(p.devices), str(p.done), str(p.failed),
                     f"{p.readings:,}", f"{p.calls:,}", f"{p.waited:.0f} s", _cell(last))
    return view


def _run_sync(hub: Hub, sources: list[Any], *, since: str | None = None,
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
    failed = False
    for p in results:
        if p.error:
            failed = True
            err.print(f"[bold red]error:[/] {escape(p.error)}", highlight=False,
                      soft_wrap=True)
        for device, message in p.device_errors.items():
            failed = True
            err.print(f"[bold red]error:[/] {escape(f'source {p.name}, device {device}: ')}"
                      f"{escape(message)}", highlight=False, soft_wrap=True)
    return failed


@app.command()
def sync(
    config: ConfigOption = Path("meterhub.toml"),
    source: Annotated[list[str] | None, typer.Option(
        help="Only this source (by name); repeat for several.")] = None,
    since: Annotated[str | None, typer.Option(
        help="Read again from this date or time (UTC); changed values update rows.")] = None,
    until: Annotated[str | None, typer.Option(help="Stop at this date or time (UTC).")
                     ] = None,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Print the plan (calls, readings, duration) and call no vendor.")
    ] = False,
) -> None:
    """Fetch new readings from every configured source into the store."""
    import time

    from meterhub.config import load
    from meterhub.sync import parse_until, plan_source

    with _user_errors():
        settings = load(config)
        sources = [settings.source(name) for name in source] if source else settings.sources
        end = parse_until(until)
    with _hub(settings.store.url) as hub:
        if dry_run:
            now = end or time.time()
            plans = [plan_source(hub, s, now=now, since=since) for s in sources]
            view = Table(title="Sync plan (no vendor was called)", header_style="bold")
            for name in ("source", "type", "devices", "readings", "calls", "duration",
                         "note"):
                view.add_column(name)
            for p in plans:
                view.add_row(_cell(p.name), p.type, str(p.devices), f"~{p.records:,}",
                             f"{p.calls:,}", f"{p.seconds:.0f} s", _cell(p.note))
            out.print(view)
            out.print(f"total: {sum(p.calls for p in plans):,} calls, about "
                      f"{max([0.0, *(p.seconds for p in plans)]):.0f} s (sources run "
                      "together)")
            return
        failed = _run_sync(hub, sources, since=since, until=end)
    if failed:
        raise typer.Exit(1)


def _settings(config: Path | None) -> Any:
    """Settings from --config; without it, ./meterhub.toml if there is one, else defaults."""
    from meterhub.config import DEFAULT_PATH, Settings, load

    with _user_errors():
        if config is None:
            return load(DEFAULT_PATH) if DEFAULT_PATH.is_file() else Settings()
        return load(config)


OptionalConfig = Annotated[Path | None, typer.Option(
    "--config", envvar="METERHUB_CONFIG",
    help="Configuration file (env METERHUB_CONFIG; default ./meterhub.toml if present).")]
OptionalStore = Annotated[str | None, typer.Option(
    "--store", envvar="METERHUB_STORE", help="Store URL (default: from the configuration).")]
HostOption = Annotated[str | None, typer.Option(
    help="Address to listen on (default [api] host, 127.0.0.1).")]
PortOption = Annotated[int | None, typer.Option(
    help="Port; 0 picks a free one (default [api] port, 8000).")]


def _serve_api(hub: Hub, settings: Any, host: str | None, port: int | None,
               background: Any = None, on_ready: Any = None) -> None:
    """Serve the API on uvicorn (uvloop + httptools) until stopped or told to exit."""
    import uvicorn

    from meterhub.api import create_app

    host = host or settings.api.host
    sock, actual = _listen(host, settings.api.port if port is None else port)
    server: uvicorn.Server | None = None

    async def hosted() -> None:
        await background()
        if server is not None:  # a finite schedule (--rounds) ends the process
            server.should_exit = True

    api = create_app(hub, settings=settings, rate_limit=settings.api.rate_limit,
                     background=hosted if background is not None else None)
    server = uvicorn.Server(uvicorn.Config(api, loop="uvloop", http="httptools",
                                           log_level="warning", access_log=False))
    shown = f"[{host}]" if ":" in host else host
    out.print(f"meterhub API on http://{shown}:{actual}/api/v1 (docs at /docs) over "
              f"{hub.url}; stop with Ctrl-C", soft_wrap=True, markup=False)
    if not any(k.active for k in hub.store.api_keys()):
        out.print("no API keys yet: stop the server and run `meterhub keys create --name me "
                  "--scope admin`", soft_wrap=True, markup=False)
    out.file.flush()
    server.run(sockets=[sock])


@app.command()
def serve(config: OptionalConfig = None, store: OptionalStore = None, host: HostOption = None,
          port: PortOption = None) -> None:
    """Serve the REST API (readings, aggregates, catalog, push, keys) over the store."""
    settings = _settings(config)
    with _hub(store or settings.store.url) as hub:
        _serve_api(hub, settings, host, port)


@app.command("run")
def run_(
    config: ConfigOption = Path("meterhub.toml"),
    every: Annotated[float, typer.Option(
        help="Seconds between the starts of two sync rounds.")] = 900.0,
    rounds: Annotated[int | None, typer.Option(
        help="Stop after this many rounds (default: run until stopped).")] = None,
    api: Annotated[bool, typer.Option(
        help="Serve the API in the same process (--no-api: only the schedule).")] = True,
    host: HostOption = None,
    port: PortOption = None,
) -> None:
    """Serve the API and keep the store in sync on a schedule, in one process (one process
    owns the store file)."""
    import asyncio
    import datetime as dt

    from meterhub.config import load
    from meterhub.sync import SourceProgress, run_forever

    with _user_errors():
        settings = load(config)

    def report(number: int, results: list[SourceProgress]) -> None:
        stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        parts = [f"{p.name}: {p.readings:,} readings, {p.calls} calls"
                 + (f", failed ({p.error})" if p.error else
                    (f", {p.failed} device(s) failed" if p.failed else ""))
                 for p in results]
        out.print(f"{stamp} round {number}: " + "; ".join(parts), highlight=False,
                  soft_wrap=True, markup=False)
        out.file.flush()

    out.print(f"syncing {len(settings.sources)} source(s) every {every:.0f} s into "
              f"{settings.store.url}; stop with Ctrl-C", markup=False, soft_wrap=True)
    with _hub(settings.store.url) as hub:
        def schedule() -> Any:
            return run_forever(hub, settings.sources, every=every, rounds=rounds,
                               on_round=report)

        if api:
            _serve_api(hub, settings, host, port, background=schedule)
            return
        try:
            asyncio.run(schedule())
        except KeyboardInterrupt:
            out.print("stopped")


@app.command()
def p1(
    serial: Annotated[str | None, typer.Option(
        help="Serial port of the meter's P1 cable, e.g. /dev/ttyUSB0.")] = None,
    file: Annotated[Path | None, typer.Option(help="Replay the telegrams of a capture file.")
                    ] = None,
    dsmr_version: Annotated[str | None, typer.Option(
        help="DSMR version or dialect: 2.2, 4, 5, belgium, luxembourg ... (default [dsmr] "
             "version, 5).")] = None,
    count: Annotated[int | None, typer.Option(
        help="Stop after this many telegrams (default: read until stopped).")] = None,
    config: OptionalConfig = None, store: OptionalStore = None,
) -> None:
    """Store telegrams from a P1 port (reopened when it fails) or from a capture file."""
    from meterhub.p1 import read_serial, replay_file

    if (serial is None) == (file is None):
        err.print("[bold red]error:[/] give either --serial PORT or --file CAPTURE",
                  soft_wrap=True)
        raise typer.Exit(1)
    settings = _settings(config)
    dsmr = settings.dsmr
    if dsmr_version is not None:
        with _user_errors():
            from meterhub.config import DsmrSettings

            try:
                dsmr = DsmrSettings(**{**dsmr.model_dump(), "version": dsmr_version})
            except ValueError as exc:
                raise MeterhubError(f"--dsmr-version: unknown DSMR version "
                                    f"{dsmr_version!r}") from exc
    with _hub(store or settings.store.url) as hub, _user_errors():
        if file is not None:
            counts = replay_file(hub, file, dsmr)
        else:
            assert serial is not None
            out.print(f"reading DSMR {dsmr.version} telegrams from {serial} into {hub.url}; "
                      "stop with Ctrl-C", markup=False, soft_wrap=True)
            out.file.flush()
            try:
                counts = read_serial(hub, serial, dsmr, count=count)
            except KeyboardInterrupt:
                out.print("stopped")
                return
    out.print(f"{counts.accepted:,} telegram(s) stored, {counts.rejected:,} rejected",
              markup=False)


keys_app = typer.Typer(help="Make, list and revoke API keys.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Option(help="What the key is for, e.g. datalogger.")],
    scope: Annotated[str, typer.Option(
        help="read (queries), write (also pushes readings) or admin (also manages keys).")
    ] = "read",
    rate_limit: Annotated[str | None, typer.Option(
        help="This key's own limit, e.g. 100/minute (default: [api] rate_limit).")] = None,
    config: OptionalConfig = None, store: OptionalStore = None,
) -> None:
    """Make an API key. It is printed once, on stdout; only its hash is stored."""
    from meterhub.keys import new_key

    settings = _settings(config)
    with _hub(store or settings.store.url) as hub, _user_errors():
        record, text = new_key(name, scope, rate_limit)
        hub.store.add_key(record)
    err.print(f"key {record.name!r} (id {record.key_id}, scope {record.scope.value}, "
              f"limit {record.rate_limit or settings.api.rate_limit}); it is shown only now, "
              "keep it somewhere safe:", soft_wrap=True, markup=False, highlight=False)
    print(text)


@keys_app.command("list")
def keys_list(config: OptionalConfig = None, store: OptionalStore = None) -> None:
    """Every key: id, name, scope, limit, when made and revoked (never the key itself)."""
    settings = _settings(config)
    with _hub(store or settings.store.url) as hub:
        keys = hub.store.api_keys()
    view = Table(title="API keys", header_style="bold")
    for column in ("id", "name", "scope", "rate limit", "created", "revoked"):
        view.add_column(column)
    for key in keys:
        view.add_row(key.key_id, _cell(key.name), key.scope.value,
                     key.rate_limit or f"{settings.api.rate_limit} (default)",
                     _cell(key.created_at), _cell(key.revoked_at))
    out.print(view)


@keys_app.command("revoke")
def keys_revoke(
    key: Annotated[str, typer.Argument(help="The key's id, or the name of an active key.")],
    config: OptionalConfig = None, store: OptionalStore = None,
) -> None:
    """Revoke a key: requests with it are refused from now on."""
    settings = _settings(config)
    with _hub(store or settings.store.url) as hub, _user_errors():
        known = hub.store.api_keys()
        by_id = [k for k in known if k.key_id == key]
        by_name = [k for k in known if k.name == key and k.active]
        target = next(iter(by_id or by_name), None)
        if target is None:
            raise MeterhubError(f"no key with id or active name {key!r}: see `meterhub keys "
                                "list`")
        hub.store.revoke_key(target.key_id)
    out.print(f"revoked key {target.name!r} (id {target.key_id})", markup=False)


@app.command()
def status(
    config: ConfigOption = Path("meterhub.toml"),
    store: Annotated[str | None, typer.Option(
        "--store", envvar="METERHUB_STORE", help="Store URL (default: from --config).")
    ] = None,
) -> None:
    """Per source and device: last success, newest reading, lag, calls, last error, gaps."""

    from meterhub.config import load

    with _user_errors():
        url = store or load(config).store.url
    with _hub(url) as hub:
        _print_status(hub)


def _print_status(hub: Hub) -> None:
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
    view = Table(title="Sync status", header_style="bold")
    for name in ("source", "device", "last success", "newest reading", "lag", "calls*",
                 "readings", "last error", "gaps"):
        view.add_column(name)
    for row in state:
        latest = newest.get(row["device"])
        lag = "" if latest is None else f"{(now - latest).total_seconds() / 3600:.1f} h"
        error = "" if not row["last_error_class"] else \
            f"{row['last_error_class']}: {row['last_error']}"
        view.add_row(_cell(row["source"]), _cell(row["device"]), _cell(row["last_success"]),
                     _cell(latest), lag, str(row["calls"] or 0), f"{row['readings'] or 0:,}",
                     _cell(error), str(open_gaps.get(row["device"], 0)))
    out.print(view)
    out.print("* calls the source made while this device was being fetched (devices of one "
              "source share its limits and run together)", highlight=False)


@app.command()
def demo(
    store: Annotated[str, typer.Option(help="Store URL for the demo.")
                     ] = "duckdb:///meterhub-demo.duckdb",
    devices: Annotated[int, typer.Option(help="Devices per vendor.")] = 3,
) -> None:
    """Run every vendor emulator on loopback, sync a week from each, and show a tour."""
    import time

    from meterhub.config import parse
    from meterhub.demo import config_text, emulators

    started = time.monotonic()
    config_path = Path("meterhub-demo.toml")
    with emulators(devices=devices) as served:
        import tomllib

        config_path.write_text(config_text(served, store), encoding="utf-8")
        with _user_errors():
            settings = parse(tomllib.loads(config_path.read_text(encoding="utf-8")),
                             path=config_path)
        out.print("[bold]meterhub demo[/]: four vendor emulators on loopback ("
                  + ", ".join(f"{e.name} {e.url}" for e in served.values())
                  + f"); configuration written to {config_path}", soft_wrap=True)
        with _hub(settings.store.url) as hub:
            failed = _run_sync(hub, settings.sources)
            out.print()
            _print_status(hub)
            station = sorted(served["zentra"].world.devices)[0]
            _print_table(hub.aggregate(device=station, channel="air_temperature", every="1d",
                                       tz="Africa/Nairobi", fn=["mean", "min", "max"],
                                       as_="arrow").drop_columns(["bucket_end"]),
                         f"Daily air temperature of TAHMO station {station}, Africa/Nairobi")
            export = Path("meterhub-demo-export.csv")
            logger = sorted(served["tandd"].world.loggers)[0]
            with export.open("wb") as handle:
                rows = export_readings(hub.scan(device=logger), handle, "csv")
            out.print(f"Exported {rows:,} readings of T&D logger {logger} to {export}")
    out.print(f"\nDone in {time.monotonic() - started:.0f} s. Next: meterhub status --config "
              f"{config_path}; meterhub query --store {store} --device {station} --every 1h",
              soft_wrap=True)
    if failed:
        raise typer.Exit(1)


def main() -> None:
    """Console-script entry point."""
    app(prog_name="meterhub")


if __name__ == "__main__":
    main()

__all__ = ["FORMATS", "app", "main"]

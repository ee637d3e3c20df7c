"""Commands over the stored data: import, export, query, devices, gaps, channels, delete,
compact, sample."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import IO, Annotated

import pyarrow as pa
import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from meterhub.cli.common import (
    ChannelOption,
    DeviceOption,
    EndOption,
    OptionalConfig,
    StartOption,
    StoreOption,
    UnitOption,
    app,
    err,
    fail,
    opened,
    out,
    store_url,
    user_errors,
)
from meterhub.cli.output import (
    Format,
    FormatOption,
    StoredUnits,
    chosen,
    emit,
    file_format,
    print_table,
    write,
)
from meterhub.errors import InputError, MeterhubError
from meterhub.fileio import Format as FileFormat
from meterhub.fileio import export_readings, guess_format, in_file, read_readings_file
from meterhub.hub import Hub
from meterhub.model import TS_RANGE_TEXT
from meterhub.store.base import WriteResult

TABLE_ROWS = 50  #: rows a table shows unless --limit or --all says otherwise
MAX_ROWS = 2**62  #: a --limit beyond this shows every row
#: the rule each aggregate follows, said under every aggregate a person reads
CONSUMPTION_RULE = ("consumption: a counter's rise from the last reading before each bucket "
                    "to its last reading in it, edge to edge, so a rise across midnight "
                    "counts in the day it ends in (DSMR-reader's day statistics, `meterhub "
                    "energy`, count first to last reading within the day instead)")


def stored_units(hub: Hub) -> StoredUnits:
    """Each channel's stored unit, for showing values to their resolution."""
    return {(c.device, c.channel): c.unit for c in hub.store.channels()}


def written(result: WriteResult) -> str:
    """What a write did, in words: new, replaced and unchanged keys."""
    return (f"{result.new:,} new, {result.replaced:,} replaced, {result.unchanged:,} "
            f"unchanged ({result.rows:,} rows read)")


@app.command("import")
def import_(
    files: Annotated[list[Path], typer.Argument(help="CSV, JSON (array or lines) or Parquet "
                                                     "files of readings.")],
    store: StoreOption = None,
    config: OptionalConfig = None,
    fmt: Annotated[str | None, typer.Option(
        "--format", help="csv, json or parquet; default: from the file's extension.")] = None,
    source: Annotated[str, typer.Option(
        help="Source name for rows that do not name one.")] = "import",
) -> None:
    """Import readings. Every file is checked first; one bad row writes nothing of it.

    Columns: device, channel, ts, value, unit; optional source, quality, seq, error_code,
    validated, and quantity and kind (instant, counter, delta) for new channels.
    """
    with user_errors():
        tables = [(path, read_readings_file(path, fmt=fmt, source=source)) for path in files]
    with opened(store_url(store, config), create=True) as hub, user_errors():
        for path, table in tables:
            try:
                result = hub.write(table, origin=f"import:{path.name}")
            except InputError as exc:  # found by the store (a unit, a value in it): where
                raise in_file(exc, path, guess_format(path, fmt)) from None
            out.print(f"{path}: {written(result)}", markup=False, highlight=False,
                      soft_wrap=True)


@app.command()
def export(
    store: StoreOption = None,
    config: OptionalConfig = None,
    device: DeviceOption = None,
    channel: ChannelOption = None,
    start: StartOption = None,
    end: EndOption = None,
    unit: UnitOption = None,
    fmt: Annotated[str | None, typer.Option(
        "--format", help="csv, json or parquet; default: from --output's extension, "
                         "else csv.")] = None,
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", metavar="FILE", help="File to write; default: standard output.")] = None,
) -> None:
    """Export readings as CSV, JSON or Parquet, streamed (times are UTC, values exact)."""
    with user_errors():
        kind: FileFormat = guess_format(output, fmt) if output and (fmt or output.suffix) \
            else guess_format(Path("out.csv"), fmt)
        if kind == "parquet" and output is None and sys.stdout.isatty():
            raise MeterhubError("Parquet is binary: pass --output FILE.parquet")
    with opened(store_url(store, config), create=False) as hub, user_errors():
        reader = hub.scan(device=device, channel=channel, start=start, end=end, unit=unit)
        # each row carries its channel's quantity and kind: the file imports back to the
        # same channels (a counter stays a counter)
        channels = hub.store.channels()
        if output is None:
            export_readings(reader, sys.stdout.buffer, kind, channels=channels)
            sys.stdout.buffer.flush()
            return
        total = hub.count(device=device, channel=channel, start=start, end=end)
        with Progress(TextColumn("{task.description}"), BarColumn(),
                      TextColumn("{task.completed:,}/{task.total:,}"), TimeRemainingColumn(),
                      console=err, transient=True, disable=total < 200_000) as progress:
            task = progress.add_task(f"exporting to {output.name}", total=total)
            with _written_to(output) as handle:
                rows = export_readings(reader, handle, kind, channels=channels,
                                       on_batch=lambda n: progress.advance(task, n))
    err.print(f"{output}: {rows:,} readings exported", markup=False, highlight=False)


@contextlib.contextmanager
def _written_to(output: Path) -> Iterator[IO[bytes]]:
    """A binary handle whose bytes become the file ``output`` when the block ends without
    an error: written beside it as ``.part`` and renamed, so a failed write leaves no half
    file. A device or a pipe (``/dev/stdout``), which the rename would replace, is written
    directly. A folder, or a file the system cannot write, is one error line."""
    if output.is_dir():
        raise fail(f"{output} is a folder: name a file in it, e.g. {output / 'readings.csv'}")
    direct = output.exists() and not output.is_file()
    partial = output if direct else output.with_name(output.name + ".part")
    try:
        try:
            with partial.open("wb") as handle:
                yield handle
            if not direct:
                partial.replace(output)
        finally:
            if not direct:
                partial.unlink(missing_ok=True)
    except OSError as exc:
        raise fail(f"cannot write {output}: {exc.strerror or exc}") from None


def _save(table: pa.Table, output: Path, stored: StoredUnits) -> None:
    """Write a query's rows to a file (csv, json or parquet by suffix), all or nothing."""
    kind = file_format(output)
    with _written_to(output) as handle:
        write(table, kind, handle, stored)


@app.command()
def query(
    store: StoreOption = None,
    config: OptionalConfig = None,
    device: DeviceOption = None,
    channel: ChannelOption = None,
    start: StartOption = None,
    end: EndOption = None,
    every: Annotated[str | None, typer.Option(
        metavar="SIZE", help="Aggregate into buckets: 15min, 1h, 1d, 1w, 1mo or 1y.")] = None,
    tz: Annotated[str, typer.Option(
        metavar="ZONE", help="IANA time zone for buckets and naive times.")] = "UTC",
    fn: Annotated[list[str] | None, typer.Option(
        metavar="NAME", help="Aggregate function(s): mean min max first last count "
                             "(instant), consumption (counter), sum (delta). Default: all "
                             "for the kind.")] = None,
    unit: UnitOption = None,
    limit: Annotated[int | None, typer.Option(
        min=1, metavar="N", help=f"Show at most this many rows (default: {TABLE_ROWS} in a "
                                 "table, all in CSV, JSON and files).")] = None,
    all_rows: Annotated[bool, typer.Option("--all", help="Show every row.")] = False,
    fmt: FormatOption = None,
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", metavar="FILE", help="Save the rows (readings or aggregates) to "
                                               "a file: .csv, .json or .parquet.")] = None,
) -> None:
    """Show readings, or aggregates per bucket with --every."""
    shown = chosen(fmt)
    if all_rows and limit is not None:
        raise typer.BadParameter("give --limit or --all, not both")
    cap = None if all_rows else (
        limit if limit is not None else (TABLE_ROWS if shown is Format.TABLE and output is None
                                         else None))
    if cap is not None:
        cap = min(cap, MAX_ROWS)  # Arrow counts rows in 64 bits: more is every row anyway
    with opened(store_url(store, config), create=False) as hub, user_errors():
        stored = stored_units(hub)
        notes: list[str] = []
        if every is None:
            reader = hub.scan(device=device, channel=channel, start=start, end=end, unit=unit,
                              batch_size=min(cap or 65_536, 65_536))
            batches, count = [], 0
            for batch in reader:
                batches.append(batch if cap is None else batch.slice(0, cap - count))
                count += batches[-1].num_rows
                if cap is not None and count >= cap:
                    break
            table = pa.Table.from_batches(batches, schema=reader.schema).drop_columns(
                ["source"])
            total = hub.count(device=device, channel=channel, start=start, end=end)
            what = "readings"
        else:
            table = hub.aggregate(device=device, channel=channel, start=start, end=end,
                                  every=every, tz=tz, fn=fn, unit=unit, as_="arrow")
            table = table.drop_columns(["bucket_end"])
            total = table.num_rows
            if cap is not None:
                table = table.slice(0, cap)
            what = f"buckets of {every} in {tz}"
            if "consumption" in table.column_names:
                notes.append(CONSUMPTION_RULE)
        title = f"{total:,} {what}"
        if table.num_rows < total:
            title += f", first {table.num_rows:,} shown"
            notes.insert(0, f"{total - table.num_rows:,} more row(s) not shown: --all shows "
                            "every row, -o FILE saves them")
        if output is not None:
            _save(table, output, stored)
            err.print(f"{output}: {table.num_rows:,} rows saved", markup=False,
                      highlight=False)
            for note in notes[1:] if table.num_rows < total else notes:
                err.print(note, markup=False, highlight=False, soft_wrap=True)
            return
        drop_first = ["seq", "error_code", "validated", "count", "first", "last", "kind",
                      "quality"]
        for name, asked in (("device", device), ("channel", channel)):
            if asked is not None and len(asked) == 1:  # said in the title instead
                drop_first.append(name)
                title += f", {name} {asked[0]}"
        emit(table, shown, stored, title=title, notes=notes, drop_first=drop_first)


@app.command()
def devices(store: StoreOption = None, config: OptionalConfig = None,
            fmt: FormatOption = None) -> None:
    """List devices with their channels, reading counts and newest measurement."""
    with opened(store_url(store, config), create=False) as hub, user_errors():
        stats: pa.Table = hub.channels(as_="arrow")
        table = stats.select(["source", "device", "channel", "kind", "unit", "readings",
                              "first_ts", "last_ts"])
        outside = hub.count_outside_range()
        notes = [f"{outside:,} reading(s) lie outside the times meterhub keeps "
                 f"({TS_RANGE_TEXT}) and are left out of every read: `meterhub delete "
                 "--device ID --outside-range --yes` removes them"] if outside else []
        emit(table, chosen(fmt), {}, title=f"{len(hub.store.devices())} devices, "
             f"{stats.num_rows} channels", drop_first=["first_ts", "source", "readings"],
             notes=notes)


@app.command()
def gaps(
    store: StoreOption = None,
    config: OptionalConfig = None,
    device: DeviceOption = None,
    channel: ChannelOption = None,
    start: StartOption = None,
    end: EndOption = None,
    fmt: FormatOption = None,
) -> None:
    """List missing intervals and seq jumps per channel."""
    with opened(store_url(store, config), create=False) as hub, user_errors():
        table = hub.gaps(device=device, channel=channel, start=start, end=end, as_="arrow")
        emit(table, chosen(fmt), {}, title=f"{table.num_rows} gaps",
             drop_first=["source", "expected_s", "missing"])


channels_app = typer.Typer(help="Inspect and change channels.", no_args_is_help=True,
                           rich_markup_mode=None)
app.add_typer(channels_app, name="channels")


@channels_app.command("set-kind")
def channels_set_kind(
    device: Annotated[str, typer.Argument(help="The channel's device.")],
    channel: Annotated[str, typer.Argument(help="The channel.")],
    kind: Annotated[str, typer.Argument(
        help="instant (a level), counter (a meter register) or delta (an amount per "
             "interval).")],
    store: StoreOption = None,
    config: OptionalConfig = None,
) -> None:
    """Change a channel's kind; its readings stay, its aggregates follow the new kind.

    A write never changes a kind by itself: a file whose kind column contradicts a stored
    channel is refused and points here.
    """
    with opened(store_url(store, config), create=False) as hub, user_errors():
        before = hub.set_kind(device, channel, kind)
    out.print(f"{device}/{channel}: kind {before.value} -> {kind}", markup=False,
              highlight=False)


@app.command()
def delete(
    device: Annotated[list[str], typer.Option(
        "--device", "-d", metavar="ID", help="Device whose readings to delete; repeat for "
                                            "several.")],
    store: StoreOption = None,
    config: OptionalConfig = None,
    channel: ChannelOption = None,
    start: Annotated[str | None, typer.Option(
        metavar="TIME", help="Start, inclusive, ISO 8601 (naive times are UTC, or in --tz); "
                             "any year from 1 to 9999.")] = None,
    end: Annotated[str | None, typer.Option(
        metavar="TIME", help="End, exclusive, ISO 8601; any year from 1 to 9999.")] = None,
    tz: Annotated[str | None, typer.Option(
        metavar="ZONE", help="IANA time zone for naive --start and --end.")] = None,
    outside_range: Annotated[bool, typer.Option(
        "--outside-range", help=f"Delete only readings outside the times meterhub keeps "
                                f"({TS_RANGE_TEXT}), stored before writes were checked.")
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", help="Really delete (required).")] = False,
) -> None:
    """Delete readings of a device (a channel, a time range); prints how many went.

    Devices and channels stay. Nothing is deleted without --yes.
    """
    if not yes:
        raise fail("delete removes readings for good: add --yes to go ahead")
    with opened(store_url(store, config), create=False) as hub, user_errors():
        count = hub.delete(device=device, channel=channel, start=start, end=end, tz=tz,
                           outside_range=outside_range)
    out.print(f"{count:,} readings deleted", markup=False, highlight=False)


@app.command()
def compact(store: StoreOption = None, config: OptionalConfig = None) -> None:
    """Rewrite the store clustered by device, channel and time (faster range queries)."""
    with opened(store_url(store, config), create=False) as hub:
        hub.compact()
        out.print(f"{hub.url}: compacted", markup=False, highlight=False)


@app.command()
def sample(
    store: Annotated[str, typer.Option(
        "--store", envvar="METERHUB_STORE", help="Store URL.")] = "duckdb:///meterhub-sample.duckdb",
) -> None:
    """Import the bundled sample (a weather station and an energy meter) and show a tour."""
    path = resources.files("meterhub") / "data" / "sample.csv"
    with resources.as_file(path) as sample_path, user_errors():
        table = read_readings_file(sample_path)
    with opened(store, create=True) as hub:
        result = hub.write(table, origin="sample")
        out.print(f"[bold]Imported[/] the sample into {hub.url}: {written(result)}\n",
                  highlight=False, soft_wrap=True)
        stored = stored_units(hub)
        print_table(hub.channels(as_="arrow").select(
            ["device", "channel", "kind", "unit", "readings", "last_ts"]), stored,
            title="Channels", drop_first=["readings"])
        print_table(hub.aggregate(device="ws-demo-1", channel="air_temperature", every="1d",
                                  tz="Europe/Amsterdam", as_="arrow").select(
            ["device", "channel", "bucket", "mean", "min", "max", "count", "unit"]), stored,
            title="Daily air temperature of ws-demo-1, Europe/Amsterdam (27 October has 25 "
                  "hours)", drop_first=["device", "channel"])
        print_table(hub.aggregate(device="em-demo-1", channel="energy_import", every="1d",
                                  tz="Europe/Amsterdam", as_="arrow").select(
            ["device", "channel", "bucket", "consumption", "count", "unit"]), stored,
            title="Daily consumption of em-demo-1's kWh counter",
            drop_first=["device", "channel"])
    out.print(f"\nTry: meterhub query --store {store} --device ws-demo-1 --every 1h "
              "--tz Europe/Amsterdam --unit degF --channel air_temperature", markup=False,
              highlight=False, soft_wrap=True)

"""How commands print data: one table, CSV or JSON writer for every command.

``--format`` defaults to a table on a terminal and CSV when the output is piped. A table
never cuts an id, a time or a value: columns the terminal cannot hold are left out, least
important first, and the table says which; what still does not fit wraps. Values are shown
to their channel's resolution (`meterhub.display`); stored values are never rounded.
"""

from __future__ import annotations

import datetime as dt
import math
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from enum import StrEnum
from pathlib import Path
from typing import IO, Annotated, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import typer
from rich import box
from rich.markup import escape
from rich.measure import Measurement
from rich.table import Table

from meterhub.cli.common import err, out
from meterhub.display import SIGNIFICANT, decimals
from meterhub.encode import stream
from meterhub.errors import InputError


class Format(StrEnum):
    TABLE = "table"
    CSV = "csv"
    JSON = "json"


FormatOption = Annotated[Format | None, typer.Option(
    "--format", case_sensitive=False,
    help="table, csv or json (default: table on a terminal, csv when piped).")]
#: columns that hold a channel's values (rounded to its resolution when shown)
VALUE_COLUMNS = ("value", "mean", "min", "max", "first", "last", "consumption", "sum")
#: columns that name things: kept whole on one line as long as the terminal allows
IDS = frozenset({"source", "device", "channel", "id", "name", "unit", "kind", "scope"})
#: a unit per channel, keyed (device, channel): the unit its values are stored in
StoredUnits = Mapping[tuple[str, str], str]


def chosen(fmt: Format | None) -> Format:
    """The format asked for, else a table on a terminal and CSV when piped."""
    if fmt is not None:
        return fmt
    return Format.TABLE if out.is_terminal else Format.CSV


def file_format(path: Path) -> str:
    """csv, json or parquet from a file name's suffix."""
    kind = path.suffix.lower().lstrip(".")
    if kind not in ("csv", "json", "parquet"):
        raise InputError(f"{path}: cannot tell the format from {path.suffix or 'no suffix'!r}:"
                         " name the file .csv, .json or .parquet")
    return kind


def _places(batch: pa.RecordBatch | pa.Table, stored: StoredUnits
            ) -> Iterator[tuple[int | None, np.ndarray[Any, Any]]]:
    """(decimals, row mask) per distinct (device, channel, unit) of the rows."""
    if not {"device", "channel", "unit"} <= set(batch.column_names) or not batch.num_rows:
        return
    keys = pa.Table.from_batches([batch]) if isinstance(batch, pa.RecordBatch) else batch
    groups = keys.select(["device", "channel", "unit"]).group_by(
        ["device", "channel", "unit"]).aggregate([]).to_pylist()
    for group in groups:
        shown = group["unit"]
        places = decimals(stored.get((group["device"], group["channel"]), shown), shown)
        if len(groups) == 1:
            yield places, np.ones(batch.num_rows, dtype=bool)
            continue
        mask = pc.and_(pc.and_(pc.equal(batch.column("device"), group["device"]),
                               pc.equal(batch.column("channel"), group["channel"])),
                       pc.equal(batch.column("unit"), group["unit"]))
        yield places, np.asarray(mask.to_numpy(zero_copy_only=False), dtype=bool)


def _round_significant(values: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    with np.errstate(divide="ignore", invalid="ignore"):
        magnitude = np.floor(np.log10(np.abs(values)))
        scale = np.where(np.isfinite(magnitude), 10.0 ** (SIGNIFICANT - 1 - magnitude), 1.0)
        return np.where(np.isfinite(values) & (values != 0),
                        np.round(values * scale) / scale, values)


def rounded(batch: pa.RecordBatch, stored: StoredUnits) -> pa.RecordBatch:
    """The batch with its value columns rounded to each channel's resolution."""
    columns = [n for n in VALUE_COLUMNS if n in batch.column_names
               and pa.types.is_floating(batch.schema.field(n).type)]
    if not columns:
        return batch
    masks = list(_places(batch, stored))
    for name in columns:
        index = batch.schema.get_field_index(name)
        column = batch.column(index)
        values = column.to_numpy(zero_copy_only=False).astype(np.float64)
        for places, mask in masks:
            values[mask] = (_round_significant(values[mask]) if places is None
                            else np.round(values[mask], places))
        batch = batch.set_column(index, name, pa.array(values, mask=pc.is_null(
            column).to_numpy(zero_copy_only=False)))
    return batch


def write(data: pa.Table | Iterable[pa.RecordBatch], fmt: str, sink: IO[bytes],
          stored: StoredUnits, *, schema: pa.Schema | None = None) -> int:
    """Write rows as csv, json or parquet (text formats rounded for reading); the row count."""
    if isinstance(data, pa.Table):
        schema, batches = data.schema, iter(data.to_batches())
    else:
        assert schema is not None
        batches = iter(data)
    count = 0

    def counted() -> Iterator[pa.RecordBatch]:
        nonlocal count
        for batch in batches:
            count += batch.num_rows
            yield batch if fmt == "parquet" else rounded(batch, stored)

    reader = pa.RecordBatchReader.from_batches(schema, counted())
    for chunk in stream(reader, fmt):  # type: ignore[arg-type]
        sink.write(chunk)
    sink.flush()
    return count


def emit(table: pa.Table, fmt: Format, stored: StoredUnits, *, title: str | None = None,
         drop_first: Sequence[str] = (), notes: Sequence[str] = ()) -> None:
    """Print ``table`` as ``fmt``. Notes (rows left out, the rule a number follows) go
    under a table, and to stderr with CSV or JSON so that a pipe gets only data."""
    if fmt is Format.TABLE:
        print_table(table, stored, title=title, drop_first=drop_first)
        for note in notes:
            out.print(note, markup=False, highlight=False)
        return
    write(table, fmt.value, sys.stdout.buffer, stored)
    for note in notes:
        err.print(note, markup=False, highlight=False, soft_wrap=True)


def _text(value: Any, places: int | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.{places}f}" if places is not None else f"{value:.{SIGNIFICANT}g}"
    if isinstance(value, dt.datetime):
        text = value.isoformat(sep=" ")
        return text[:-6] + "Z" if text.endswith("+00:00") else text
    if hasattr(value, "isoformat"):
        return str(value.isoformat())
    return str(value)


def _row_places(table: pa.Table, stored: StoredUnits) -> list[int | None]:
    places: list[int | None] = [None] * table.num_rows
    for value, mask in _places(table, stored):
        for i in np.flatnonzero(mask):
            places[int(i)] = value
    return places


def print_table(table: pa.Table, stored: StoredUnits, *, title: str | None = None,
                drop_first: Sequence[str] = ()) -> None:
    """A table that never cuts a cell: the columns in ``drop_first`` are left out, in that
    order, while the table is wider than the terminal; what still does not fit wraps (times
    at their space first, ids and numbers only when nothing else is left)."""
    places = _row_places(table, stored)
    rows = table.to_pylist()
    names = list(table.column_names)
    texts = {n: [_text(row[n], places[i] if n in VALUE_COLUMNS else None)
                 for i, row in enumerate(rows)] for n in names}
    widths = {n: max([len(n), *(len(t) for t in texts[n])]) for n in names}
    overhead = Measurement.get(out, out.options.update_width(1_000_000), _layout(
        table, names, texts, len(rows), title, widths)).maximum - sum(widths.values())

    def room(columns: Sequence[str]) -> int:  # width left for cells beside the box
        return out.width - overhead + 3 * (len(names) - len(columns))

    shown, left_out = list(names), []
    for name in drop_first:
        if sum(widths[n] for n in shown) <= room(shown):
            break
        if name in shown and len(shown) > 1:
            shown.remove(name)
            left_out.append(name)
    fitted = _fit({n: widths[n] for n in shown}, texts, room(shown), keep={
        n for n in shown if n in IDS or n in VALUE_COLUMNS or pa.types.is_integer(
            table.schema.field(n).type)})
    out.print(_layout(table, shown, texts, len(rows), title, fitted))
    wrapped = fitted != {n: widths[n] for n in shown}
    if left_out:
        out.print(f"{len(left_out)} column(s) left out to fit {out.width} columns: "
                  f"{', '.join(left_out)} (a wider terminal or --format csv shows every "
                  "column)", markup=False, highlight=False)
    if wrapped:
        out.print(f"long cells wrapped to fit {out.width} columns (--format csv keeps each "
                  "row on one line)", markup=False, highlight=False)


def _layout(table: pa.Table, columns: Sequence[str], texts: Mapping[str, list[str]],
            rows: int, title: str | None, widths: Mapping[str, int]) -> Table:
    view = Table(title=title, header_style="bold", box=box.SIMPLE_HEAD)
    for name in columns:
        field = table.schema.field(name)
        numeric = pa.types.is_floating(field.type) or pa.types.is_integer(field.type)
        # fold: a cell wider than its column goes on over the next line, never "…"
        view.add_column(escape(name), justify="right" if numeric else "left",
                        overflow="fold", width=widths[name])
    for i in range(rows):
        view.add_row(*(escape(texts[n][i]) for n in columns))
    return view


def _fit(widths: dict[str, int], texts: Mapping[str, list[str]], room: int,
         keep: set[str]) -> dict[str, int]:
    """Column widths within ``room``: columns not in ``keep`` narrow to their longest word
    first (a time wraps at its space), then the widest of ``keep`` gives way, a character
    at a time."""
    widths = dict(widths)
    if sum(widths.values()) <= room:
        return widths
    for name in widths:
        if name not in keep:
            words = [len(w) for t in texts[name] for w in t.split()] or [1]
            widths[name] = max(max(words), max(len(w) for w in name.split("_")))
    while sum(widths.values()) > room and max(widths.values()) > 1:
        # a time keeps its date and its clock on a line each; names and numbers fold
        pool = [n for n in widths if n in keep and widths[n] > 1] or list(widths)
        widest = max(pool, key=lambda n: widths[n])
        widths[widest] -= 1
    return widths

"""The catalog's rules, whatever the backend: which channels a write creates and of which
kind, the units their readings are stored in, and a process's cache of the catalog.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from meterhub.errors import InputError, NotFoundError, UnitError
from meterhub.model import Channel, ChannelKind
from meterhub.store.base import Selection
from meterhub.units import (
    Quantity,
    check_unit_for,
    convert,
    quantity_for_unit,
    unit_for_channel,
)


def new_channel(item: dict[str, Any], kind: ChannelKind) -> Channel:
    """Metadata for a channel first seen in a write: the row's quantity hint, else the
    quantity its unit measures, and the kind `new_channel_kinds` chose."""
    quantity = item.get("quantity") or quantity_for_unit(item["unit"]).value
    return Channel(item["device"], item["channel"], quantity,
                   unit_for_channel(quantity, item["unit"]), kind)


#: Quantities (as units measure them) whose readings may be a running total or an amount
#: per interval: a new channel of these needs a kind hint, or data that proves a register.
_AMOUNTS = (Quantity.ENERGY, Quantity.VOLUME)
#: Lengths: rain per interval (delta), a rain total that resets (counter), or a depth or
#: level (instant); the data cannot tell them apart, so a kind hint is required.
_LENGTHS = (Quantity.PRECIPITATION,)
REGISTER_MIN_READINGS = 4  #: readings a write needs to prove a register (see below)
REGISTER_MIN_LEVEL = 10.0  #: how many times its rise a register's first value must be


def new_channel_kinds(table: pa.Table, fresh: Mapping[tuple[str, str], tuple[
        ChannelKind | None, set[str]]]) -> dict[tuple[str, str], ChannelKind]:
    """The kind of each channel a write creates: ``fresh`` maps (device, channel) to its
    kind hint (None without one) and the units its rows come in.

    Without a hint, the kind follows from the unit when that is unambiguous:

    - a unit of energy (kWh, Wh, MJ, ...) or volume (m³, L, ccf, ...) is a meter register
      (counter) or an amount per interval (delta). It is taken for a register only when the
      write proves one: all the channel's rows are in one unit, and its readings (one per
      timestamp, the write's last row of it; a sensor error is no reading), in time order,
      number at least `REGISTER_MIN_READINGS` (4), never decrease, rise from the first to
      the last, and the first is at least `REGISTER_MIN_LEVEL` (10) times that rise. A
      register carries its lifetime total, so it stands high above what it moves within a
      file; amounts per interval go down again, start near zero or stay flat. Else the
      write is refused: a wrong guess would aggregate silently wrong, a refusal only asks
      for a kind column.
    - a unit of length (mm, in) is refused without a hint: rain per interval (delta), a
      rain total that resets (counter) and a snow depth or water level (instant) look
      alike.
    - any other unit measures a level (temperature, humidity, pressure, power, voltage,
      current, flow, speed, ...) or a plain number: instant.

    Raises `InputError` naming the first row of a channel whose kind stays unknown.
    """
    kinds: dict[tuple[str, str], ChannelKind] = {}
    undecided: dict[tuple[str, str], Quantity] = {}
    for key, (hint, units) in fresh.items():
        quantity = quantity_for_unit(min(units))
        if hint is not None:
            kinds[key] = hint
        elif quantity in _AMOUNTS or quantity in _LENGTHS:
            undecided[key] = quantity
        else:
            kinds[key] = ChannelKind.INSTANT
    provable = [key for key, quantity in undecided.items()
                if quantity in _AMOUNTS and len(fresh[key][1]) == 1]
    registers = _registers(table, provable) if provable else set()
    for key, quantity in undecided.items():
        if key not in registers:
            unit = min(fresh[key][1])
            if quantity in _LENGTHS:
                options = ("delta for an amount per interval such as rain per hour, counter "
                           "for a running total, instant for a depth or level")
            else:
                options = ("counter for a meter register, delta for an amount per interval")
            reason = (f"channel {key[0]}/{key[1]} is new and its unit {unit} may be read "
                      f"several ways: add a kind column ({options})")
            row = first_row(table, key) + 1
            raise InputError(f"row {row}: {reason}", row=row, reason=reason)
        kinds[key] = ChannelKind.COUNTER
    return kinds


def _registers(table: pa.Table, keys: Sequence[tuple[str, str]]) -> set[tuple[str, str]]:
    """Those of ``keys`` whose rows in ``table`` prove a meter register (the rule is in
    `new_channel_kinds`), computed for all of them at once."""
    wanted = pa.table({"device": [k[0] for k in keys], "channel": [k[1] for k in keys],
                       "_code": pa.array(np.arange(len(keys), dtype=np.int64))})
    rows = pa.table({"device": table.column("device"), "channel": table.column("channel"),
                     "ts": table.column("ts").cast(pa.timestamp("us")).cast(pa.int64()),
                     "value": table.column("value"),
                     "_row": pa.array(np.arange(table.num_rows, dtype=np.int64))})
    rows = rows.join(wanted, ["device", "channel"], join_type="inner")
    code = rows.column("_code").to_numpy()
    ts = rows.column("ts").to_numpy()
    order = np.lexsort((rows.column("_row").to_numpy(), ts, code))
    code, ts = code[order], ts[order]
    # values are finite (see `to_readings`): NaN stands for a sensor error's null
    values = rows.column("value").to_numpy(zero_copy_only=False).astype(np.float64)[order]
    last = np.ones(len(code), dtype=bool)  # the last row of a timestamp wins
    last[:-1] = (code[1:] != code[:-1]) | (ts[1:] != ts[:-1])
    last &= ~np.isnan(values)  # and a sensor error is no reading
    code, values = code[last], values[last]
    if not len(code):
        return set()
    same = code[1:] == code[:-1]
    falls = np.zeros(len(keys), dtype=bool)
    falls[code[1:][same & (values[1:] < values[:-1])]] = True
    counts = np.bincount(code, minlength=len(keys))
    starts = np.flatnonzero(np.r_[True, ~same])
    ends = np.r_[starts[1:], len(code)] - 1
    first = np.zeros(len(keys))
    rise = np.zeros(len(keys))
    first[code[starts]] = values[starts]
    rise[code[starts]] = values[ends] - values[starts]
    proven = (counts >= REGISTER_MIN_READINGS) & ~falls & (rise > 0) & (
        first >= REGISTER_MIN_LEVEL * rise)
    return {keys[int(i)] for i in np.flatnonzero(proven)}


def first_row(table: pa.Table, key: tuple[str, str], kind: str | None = None) -> int:
    """The 0-based index of the first row of channel ``key`` (with kind hint ``kind``)."""
    mask = pc.and_(pc.equal(table.column("device"), key[0]),
                   pc.equal(table.column("channel"), key[1]))
    if kind is not None:
        mask = pc.and_(mask, pc.equal(table.column("kind"), kind))
    found = np.flatnonzero(pc.fill_null(mask, False).to_numpy(zero_copy_only=False))
    return int(found[0]) if len(found) else 0


def first_other_kind(table: pa.Table, key: tuple[str, str]) -> int:
    """The 0-based index of the first row of channel ``key`` whose kind hint differs from
    the channel's first one."""
    mask = pc.and_(pc.and_(pc.equal(table.column("device"), key[0]),
                           pc.equal(table.column("channel"), key[1])),
                   pc.is_valid(table.column("kind")))
    index = np.flatnonzero(pc.fill_null(mask, False).to_numpy(zero_copy_only=False))
    hints = table.column("kind").take(pa.array(index)).to_pylist()
    return next(int(i) for i, hint in zip(index, hints, strict=True) if hint != hints[0])


def kind_conflict(device: str, channel: str, stored: str, given: str,
                   index: int) -> InputError:
    """The refusal of a kind hint (row ``index``, 0-based) that a stored channel's kind
    contradicts: a kind changes only on purpose."""
    reason = (f"channel {device}/{channel} is stored as {stored}, not {given}: change it "
              f"with `meterhub channels set-kind {device} {channel} {given}`, or give kind "
              f"{stored}")
    return InputError(f"row {index + 1}: {reason}", row=index + 1, reason=reason)


def to_channel_units(table: pa.Table, series: pa.Table) -> pa.Table:
    """Values rescaled into each channel's stored unit (vectorised per distinct pair).

    A unit must fit the channel's quantity (`check_unit_for`), and every converted
    value must still be a finite number (1.7e308 MWh is no number of kWh): else the
    write is refused, naming the first row at fault."""
    units = {(d, c): u for d, c, u in zip(series.column("device").to_pylist(),
                                          series.column("channel").to_pylist(),
                                          series.column("unit").to_pylist(), strict=True)}
    quantities = {(d, c): q for d, c, q in zip(series.column("device").to_pylist(),
                                               series.column("channel").to_pylist(),
                                               series.column("quantity").to_pylist(),
                                               strict=True)}
    pairs = table.select(["device", "channel", "unit"]).group_by(
        ["device", "channel", "unit"]).aggregate([]).to_pylist()
    mismatched = [p for p in pairs if units[(p["device"], p["channel"])] != p["unit"]]
    if not mismatched:
        return table
    values = table.column("value").to_numpy(zero_copy_only=False).astype(np.float64)
    for pair in mismatched:
        mask = pc.and_(pc.and_(pc.equal(table.column("device"), pair["device"]),
                               pc.equal(table.column("channel"), pair["channel"])),
                       pc.equal(table.column("unit"), pair["unit"]))
        index = np.flatnonzero(mask.to_numpy(zero_copy_only=False))
        key = (pair["device"], pair["channel"])
        target = units[key]
        try:
            check_unit_for(quantities[key], pair["unit"], stored=target)
            with np.errstate(over="ignore"):  # an overflow is refused just below
                converted = convert(values[index], pair["unit"], target)
        except UnitError as exc:
            reason = f"channel {key[0]}/{key[1]} stores {target}: {exc}"
            raise InputError(f"row {int(index[0]) + 1}: {reason}", row=int(index[0]) + 1,
                             reason=reason) from None
        # NaN stands for a sensor error's null here: only a number that grew is at fault
        bad = np.flatnonzero(np.isinf(converted))
        if len(bad):
            at = int(index[bad[0]])
            reason = (f"value {float(values[at])!r} {pair['unit']} is "
                      f"{float(converted[bad[0]])} "
                      f"{target} in channel {key[0]}/{key[1]}'s unit: not a finite "
                      "number")
            raise InputError(f"row {at + 1}: {reason}", row=at + 1, reason=reason)
        values[index] = converted
    valid = pc.is_valid(table.column("value"))
    column = pa.array(values, mask=pc.invert(valid).to_numpy(zero_copy_only=False))
    table = table.set_column(table.schema.get_field_index("value"), "value", column)
    return table.set_column(table.schema.get_field_index("unit"), "unit",
                            pa.array([units[(d, c)] for d, c in zip(
                                table.column("device").to_pylist(),
                                table.column("channel").to_pylist(), strict=True)]))


def known_series(table: pa.Table, index: Mapping[tuple[str, str], tuple[int, str, str]]
                 ) -> npt.NDArray[np.int64] | None:
    """Each row's series id, when the write is small and every row's channel is known
    and already in the row's unit; else None (the general path handles the rest).

    A kind hint that differs from a known channel's kind is refused (`_kind_conflict`).
    """
    ids = np.empty(table.num_rows, dtype=np.int64)
    hints = (table.column("kind").to_pylist() if "kind" in table.column_names
             else [None] * table.num_rows)
    for i, (device, channel, unit, kind) in enumerate(zip(
            table.column("device").to_pylist(), table.column("channel").to_pylist(),
            table.column("unit").to_pylist(), hints, strict=True)):
        known = index.get((device, channel))
        if known is None or known[1] != unit:
            return None
        if kind is not None and kind != known[2]:
            raise kind_conflict(device, channel, known[2], kind, i)
        ids[i] = known[0]
    return ids


class KnownLayouts:
    """`known_series` of small writes that repeat their rows' keys (a meter's pushes send
    the same channels in the same order each time): the keys of writes found known are
    kept, by row count, with the catalog index they were checked against, and a write
    whose keys equal some of them is known without a lookup per row (a tenth of the time
    for a group of 8 telegrams). Not thread-safe: its owner holds a lock around `known`."""

    KEPT = 64  #: row counts whose known keys are kept
    EACH = 4  #: keys kept per row count (meters whose writes have as many rows)

    def __init__(self) -> None:
        self._index: object = None
        self._keys: dict[int, list[pa.Table]] = {}

    def known(self, table: pa.Table, index: Mapping[tuple[str, str], tuple[int, str, str]]
              ) -> bool:
        """Whether `known_series` finds every row of ``table`` known (and raises as it
        does)."""
        keys = table.select([name for name in ("device", "channel", "unit", "kind")
                             if name in table.column_names])
        if index is not self._index:  # the catalog changed: nothing checked holds
            self._index, self._keys = index, {}
        kept = self._keys.get(table.num_rows, [])
        if any(known.equals(keys) for known in kept):
            return True
        if known_series(table, index) is None:
            return False
        if len(self._keys) >= self.KEPT:
            self._keys.clear()
        self._keys[table.num_rows] = [keys, *kept[:self.EACH - 1]]
        return True


def distinct_keys(table: pa.Table) -> list[dict[str, Any]]:
    """The distinct (source, device, channel, unit[, quantity][, kind]) of a write's rows."""
    hint_cols = [name for name in ("quantity", "kind") if name in table.column_names]
    names = ["source", "device", "channel", "unit", *hint_cols]
    return list(table.select(names).group_by(names).aggregate([]).to_pylist())


def new_channels(table: pa.Table, distinct: Sequence[Mapping[str, Any]],
                 known: Mapping[tuple[str, str], str]) -> tuple[list[Channel], bool]:
    """The channels a write creates (``known`` maps the stored ones of its devices to their
    kind), and whether every channel of the write is new (so none of its keys is stored).

    A kind hint must equal a known channel's kind (a kind changes only through
    `Store.set_kind`); a new channel without one gets the kind `new_channel_kinds` finds.
    """
    firsts: dict[tuple[str, str], Mapping[str, Any]] = {}
    units: dict[tuple[str, str], set[str]] = {}
    hinted: dict[tuple[str, str], set[str]] = {}
    for item in distinct:
        key = (item["device"], item["channel"])
        firsts.setdefault(key, item)
        units.setdefault(key, set()).add(item["unit"])
        if item.get("kind"):
            hinted.setdefault(key, set()).add(item["kind"])
    for key, kinds in hinted.items():
        stored = known.get(key)
        if stored is not None and kinds != {stored}:
            raise kind_conflict(*key, stored, min(kinds - {stored}),
                                first_row(table, key, min(kinds - {stored})))
        if len(kinds) > 1:
            reason = (f"rows give channel {key[0]}/{key[1]} the kinds "
                      f"{' and '.join(sorted(kinds))}: give it one kind")
            row = first_other_kind(table, key) + 1
            raise InputError(f"row {row}: {reason}", row=row, reason=reason)
    fresh = {key: item for key, item in firsts.items() if key not in known}
    chosen = new_channel_kinds(table, {key: (
        ChannelKind(min(hinted[key])) if key in hinted else None, units[key])
        for key in fresh})
    new = []
    for key, item in fresh.items():
        try:
            new.append(new_channel(dict(item), chosen[key]))
        except UnitError as exc:
            row = first_row(table, key) + 1
            reason = f"channel {key[0]}/{key[1]}: {exc}"
            raise InputError(f"row {row}: {reason}", row=row, reason=reason) from None
    return new, len(fresh) == len(firsts)


class SeriesRow(NamedTuple):
    """One channel as the stores address it."""

    series_id: int
    device: str
    channel: str
    unit: str
    kind: str
    source: str


class CatalogCache:
    """A process's copy of the catalog (every channel as a `SeriesRow`), in (device,
    channel) order.

    A store whose catalog only its own process changes keeps the copy until `changed`
    (a read that raced a change is not kept); one that other processes change too gives a
    ``max_age`` in seconds, after which the copy is read again.
    """

    def __init__(self, load: Callable[[], list[SeriesRow]], *,
                 max_age: float | None = None) -> None:
        self._load = load
        self._max_age = max_age
        self._lock = threading.Lock()
        self._rows: list[SeriesRow] | None = None
        self._read_at = 0.0
        self._generation = 0
        self._index: tuple[object, dict[tuple[str, str], tuple[int, str, str]]] | None = None

    def rows(self) -> list[SeriesRow]:
        with self._lock:
            cached, generation = self._rows, self._generation
            if cached is not None and self._max_age is not None and \
                    time.monotonic() - self._read_at > self._max_age:
                cached = None
        if cached is not None:
            return cached
        read_at = time.monotonic()
        rows = self._load()
        with self._lock:
            if generation == self._generation:
                self._rows, self._read_at = rows, read_at
        return rows

    def index(self) -> dict[tuple[str, str], tuple[int, str, str]]:
        """(device, channel) -> (series_id, unit, kind)."""
        rows = self.rows()
        index = self._index
        if index is None or index[0] is not rows:
            index = (rows, {(r.device, r.channel): (r.series_id, r.unit, r.kind)
                            for r in rows})
            self._index = index
        return index[1]

    def changed(self) -> None:
        with self._lock:
            self._generation += 1
            self._rows = None

    def select(self, selection: Selection) -> list[SeriesRow]:
        """The selection's channels, or `NotFoundError` when it names some and none match.

        With a ``max_age`` a miss reads the catalog again first: another process may have
        added the channel a moment ago."""
        rows = self._matching(selection)
        if not rows and self._max_age is not None and _names_any(selection):
            self.changed()
            rows = self._matching(selection)
        if not rows and _names_any(selection):
            wanted = ", ".join(f"{name} {', '.join(values)}" for name, values in (
                ("device", selection.devices), ("channel", selection.channels),
                ("source", selection.sources)) if values)
            raise NotFoundError(f"no channel matches {wanted}: list them with "
                                "`meterhub devices`")
        return rows

    def _matching(self, selection: Selection) -> list[SeriesRow]:
        devices, channels, sources = (None if v is None else set(v) for v in (
            selection.devices, selection.channels, selection.sources))
        return [r for r in self.rows()
                if (devices is None or r.device in devices)
                and (channels is None or r.channel in channels)
                and (sources is None or r.source in sources)]


def _names_any(selection: Selection) -> bool:
    return bool(selection.devices or selection.channels or selection.sources)

"""Group commit for pushed readings: many small writes, one transaction.

Telegrams arrive every few seconds per meter, and from many clients at once; a commit
each would cap ingest at a few hundred per second (PERF.md: 56-561 commits/s). Tables
submitted close together are written together, and each submitter resumes only after
the write that holds its rows is durable, so a 201 always means stored: a DuckDB file
takes them into its journal (`Hub.write_soon`), folded into the store in larger commits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Protocol, TypeAlias

import pyarrow as pa

from meterhub.hub import Hub
from meterhub.waits import woken

log = logging.getLogger("meterhub.ingest")
#: seconds after a write by which what the journal holds is folded into the store, when
#: no read and no full journal did it sooner
FOLD_AFTER = 2.0


class Joinable(Protocol):
    """Rows that become one Arrow table with others of their kind more cheaply than a table
    each (a telegram's 19 readings: a table of them costs more than parsing them). A class
    whose ``in_reading_form`` is true joins them as `meterhub.model.to_readings` would."""

    @staticmethod
    def join(items: Sequence[Any]) -> pa.Table: ...


Data: TypeAlias = pa.Table | Joinable | None


class GroupWriter:
    """Writes what was submitted meanwhile in one transaction.

    A store commit costs about 5.5 ms however few rows it holds (bench/dsmr.py), a journal
    append about a tenth of it; either way the group size bounds the rate. A group is
    written once it is as large as the last one (whose writers are likely back: clients
    that wait for their answer come back together) and no request says a write is on its
    way (`arriving`, while its telegram is parsed), or after ``window`` seconds at most.
    One meter pushing alone is written at once; under load each write takes everything
    that arrived meanwhile. Measured on two cores, a
    window of 5 ms gave more than 2 or 10 ms, and flushing as soon as nothing was
    arriving made groups of one and half the rate with 8 clients.

    The write runs in a worker thread, so the event loop answers and reads the next
    requests meanwhile (DuckDB lets go of the GIL while it works). That was slower while
    telegrams were parsed on the loop, whose Python fought the write's for the GIL; under
    load they are parsed in a helper process now (`meterhub.dsmr.parse_helper`).
    """

    def __init__(self, hub: Hub, *, window: float = 0.005, origin: str = "push") -> None:
        self.hub = hub
        self.window = window
        self.origin = origin
        self.commits = 0
        self._pending: list[tuple[Data, Mapping[str, str] | None,
                                  asyncio.Future[None]]] = []
        self._flusher: asyncio.Task[None] | None = None
        self._arriving = 0
        self._expected = 1  #: the size of the last group
        self._gathered: asyncio.Event | None = None
        self._folder: asyncio.Task[None] | None = None  #: the fold `FOLD_AFTER` a write
        self._due: asyncio.Task[None] | None = None  #: a fold of a full journal

    @contextlib.contextmanager
    def arriving(self) -> Iterator[None]:
        """Around the work before a `write` (parsing a telegram): a group waits for it."""
        self._arriving += 1
        try:
            yield
        finally:
            self._arriving -= 1
            self._wake()  # it may not write at all (a rejected telegram, say)

    def _complete(self) -> bool:
        return len(self._pending) >= self._expected and not self._arriving

    def _wake(self) -> None:
        """Let a gathering group be written if it is complete."""
        if self._gathered is not None and self._pending and self._complete():
            self._gathered.set()

    async def write(self, data: Data, state: Mapping[str, str] | None = None) -> None:
        """Return once ``data`` (a table, or rows that join into one) and the ``state``
        values are committed; raise what the write raised. Later state values of a key win
        over earlier ones in a group."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._pending.append((data, state, future))
        if self._flusher is None or self._flusher.done() or self._flusher.get_loop() is not loop:
            self._gathered = asyncio.Event()
            self._flusher = asyncio.create_task(self._flush(self._gathered))
        else:
            self._wake()
        await future

    async def _flush(self, gathered: asyncio.Event) -> None:
        while self._pending:
            if not self._complete():  # let the group gather
                gathered.clear()
                await woken(gathered, self.window)
            batch, self._pending = self._pending, []
            self._expected = len(batch)
            try:
                due = await asyncio.to_thread(self._write, [(t, s) for t, s, _ in batch])
            except Exception:  # noqa: BLE001 - settled per submission below
                # one bad table must fail only its own request: write them one by one
                for table, state, future in batch:
                    try:
                        await asyncio.to_thread(self._write, [(table, state)])
                    except Exception as exc:  # noqa: BLE001 - handed to the submitter
                        if not future.done():  # (a submitter gone meanwhile)
                            future.set_exception(exc)
                    else:
                        if not future.done():
                            future.set_result(None)
            else:
                for _, _, future in batch:
                    if not future.done():
                        future.set_result(None)
                if due and (self._due is None or self._due.done()):
                    # beside the next groups: they go on into the journal meanwhile
                    self._due = asyncio.create_task(self._fold())
            if self._folder is None or self._folder.done():
                self._folder = asyncio.create_task(self._fold_later())

    def close(self) -> None:
        """Stop the folds still to come (the store folds what is left when it closes)."""
        for task in (self._folder, self._due):
            if task is not None:
                task.cancel()

    async def _fold_later(self) -> None:
        await asyncio.sleep(FOLD_AFTER)
        await self._fold()

    async def _fold(self) -> None:
        """Fold the journal into the store; a failure is told, and the journal keeps what
        it holds for the next fold (every read tries again)."""
        try:
            await asyncio.to_thread(self.hub.fold_journal)
        except Exception:
            log.exception("could not fold the journal into the store")

    def _write(self, items: list[tuple[Data, Mapping[str, str] | None]]) -> bool:
        """Write a group; True when the journal is due to be folded."""
        tables: list[pa.Table] = []
        joins: dict[Callable[[Sequence[Any]], pa.Table], list[Any]] = {}
        checked = True  # only rows a parser made in reading form (`Joinable`)
        for data, _ in items:
            if isinstance(data, pa.Table):
                if data.num_rows:
                    tables.append(data)
                    checked = False
            elif data is not None:
                joins.setdefault(type(data).join, []).append(data)
                checked = checked and getattr(data, "in_reading_form", False)
        tables += [join(group) for join, group in joins.items()]
        state: dict[str, str] = {}
        for _, values in items:
            state.update(values or {})
        due = self.hub.write_soon(pa.concat_tables(tables, promote_options="permissive")
                                  if len(tables) > 1 else tables[0] if tables else None,
                                  origin=self.origin, state=state, checked=checked)
        self.commits += 1
        return due

"""Group commit for pushed readings: many small writes, one transaction.

Telegrams arrive every few seconds per meter, and from many clients at once; a commit
each would cap ingest at a few hundred per second (PERF.md: 56-561 commits/s). Tables
submitted within a few milliseconds are written together, and each submitter resumes
only after the commit that holds its rows, so a 201 always means stored.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pyarrow as pa
from starlette.concurrency import run_in_threadpool

from meterhub.hub import Hub


class GroupWriter:
    """Collects tables for ``window`` seconds, then writes them in one transaction."""

    def __init__(self, hub: Hub, *, window: float = 0.005, origin: str = "push") -> None:
        self.hub = hub
        self.window = window
        self.origin = origin
        self.commits = 0
        self._pending: list[tuple[pa.Table, asyncio.Future[None]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def write(self, table: pa.Table) -> None:
        """Return once ``table`` is committed; raise what its write raised."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._pending.append((table, future))
        if self._flusher is None or self._flusher.done() or self._flusher.get_loop() is not loop:
            self._flusher = asyncio.create_task(self._flush())
        await future

    async def _flush(self) -> None:
        while self._pending:
            await asyncio.sleep(self.window)  # let the group gather
            batch, self._pending = self._pending, []
            try:
                tables = [table for table, _ in batch]
                await run_in_threadpool(self._write, pa.concat_tables(
                    tables, promote_options="permissive"))
            except Exception:  # noqa: BLE001 - settled per table below
                # one bad table must fail only its own request: write them one by one
                for table, future in batch:
                    try:
                        await run_in_threadpool(self._write, table)
                    except Exception as exc:  # noqa: BLE001 - handed to the submitter
                        future.set_exception(exc)
                    else:
                        future.set_result(None)
            else:
                for _, future in batch:
                    if not future.done():
                        future.set_result(None)

    def _write(self, table: pa.Table) -> Any:
        result = self.hub.write(table, origin=self.origin)
        self.commits += 1
        return result

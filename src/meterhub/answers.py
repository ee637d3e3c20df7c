"""Answers kept for repeated reads, dropped as soon as a write could change them.

A dashboard, a Home Assistant poll or a datalogger asks the same small question again and
again (the hourly consumption of yesterday, the last 31 days). Each answer costs a few
store queries; kept here it costs a dictionary lookup. Only a store that one process owns
(DuckDB) allows it: every write goes through this process, so every change is seen.

An answer is kept with its `AnswerScope`: the devices and channels it selected and the end
of its range. A committed write reports the rows it wrote (`Change`); an answer is dropped
when a written row belongs to its channels and is not later than its end. Earlier rows
count (a counter's consumption starts from the reading before the range); rows exactly at
the end count (a counter's buckets are right-closed). Deletes and catalog changes drop
everything.

A read that was computing while a write committed must not keep its answer: a read runs
inside `reading`, whose token is the generation it began at, and `put` refuses the answer
when a change since then touches it. Changes are remembered only while reads are in flight
(a write's rows are not held on to otherwise), and each is reduced to its channels'
earliest times outside the lock.
"""

from __future__ import annotations

import contextlib
import threading
from collections import OrderedDict, deque
from collections.abc import Hashable, Iterator
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import pyarrow as pa

from meterhub.store.base import Selection
from meterhub.timebase import epoch_us

MAX_BYTES = 64 * 1024 * 1024  #: answers kept at most, in bytes
MAX_ANSWER_BYTES = 4 * 1024 * 1024  #: a larger answer is not kept (a JSON page of 20,000)
MAX_ANSWERS = 2_048
_LOG = 256  #: changes remembered for reads in flight; an older read's answer is refused


@dataclass(frozen=True, slots=True)
class AnswerScope:
    """What an answer read: its devices and channels (None: all) and its end (epoch µs,
    None: no end)."""

    devices: frozenset[str] | None
    channels: frozenset[str] | None
    end_us: int | None

    @classmethod
    def of(cls, selection: Selection) -> AnswerScope:
        return cls(None if selection.devices is None else frozenset(selection.devices),
                   None if selection.channels is None else frozenset(selection.channels),
                   None if selection.end is None else epoch_us(selection.end))

    def touched_by(self, change: Change) -> bool:
        firsts = change.firsts
        devices = firsts.keys() if self.devices is None else self.devices & firsts.keys()
        for device in devices:
            for channel, first in firsts[device].items():
                if ((self.channels is None or channel in self.channels)
                        and (self.end_us is None or first <= self.end_us)):
                    return True
        return False


class Change:
    """What one committed write changed: its rows (``device``, ``channel``, ``ts``), or
    anything (a delete, a catalog change)."""

    __slots__ = ("__dict__", "anything", "rows")

    def __init__(self, rows: pa.Table | None) -> None:
        self.anything = rows is None
        self.rows = rows

    @cached_property
    def firsts(self) -> dict[str, dict[str, int]]:
        """device -> channel -> its earliest written time (epoch µs); computed only when an
        answer or a read in flight needs it (most writes meet an empty cache)."""
        rows = self.rows
        out: dict[str, dict[str, int]] = {}
        if rows is None or rows.num_rows == 0:
            return out
        firsts = rows.select(["device", "channel", "ts"]).group_by(
            ["device", "channel"]).aggregate([("ts", "min")])
        times = firsts.column("ts_min").cast(pa.timestamp("us")).to_numpy().view(np.int64)
        for device, channel, first in zip(firsts.column("device").to_pylist(),
                                          firsts.column("channel").to_pylist(),
                                          times.tolist(), strict=True):
            out.setdefault(device, {})[channel] = first
        return out

    def touches(self, scope: AnswerScope) -> bool:
        return self.anything or scope.touched_by(self)


class AnswerCache:
    """Answers by key, each with its `AnswerScope`, least recently used first out."""

    def __init__(self, max_bytes: int = MAX_BYTES, max_answers: int = MAX_ANSWERS) -> None:
        self.max_bytes = max_bytes
        self.max_answers = max_answers
        self._lock = threading.Lock()
        self._answers: OrderedDict[Hashable, tuple[Any, AnswerScope, int]] = OrderedDict()
        self._bytes = 0
        self._generation = 0
        self._reads = 0  #: reads in flight
        self._log: deque[tuple[int, Change]] = deque(maxlen=_LOG)
        self._forgotten = 0  #: the newest generation no longer in the log
        self.hits = self.misses = 0

    def __len__(self) -> int:
        return len(self._answers)

    @property
    def generation(self) -> int:
        """How many changes there have been: a read's answer is as new as the changes it
        began after."""
        return self._generation

    @contextlib.contextmanager
    def reading(self) -> Iterator[int]:
        """Around a read whose answer may be kept: its token for `put`."""
        with self._lock:
            self._reads += 1
            token = self._generation
        try:
            yield token
        finally:
            with self._lock:
                self._reads -= 1
                if not self._reads:  # no read left that began before these changes
                    self._forget()

    def _forget(self) -> None:
        if self._log:
            self._forgotten = self._log[-1][0]
            self._log.clear()

    def get(self, key: Hashable) -> Any:
        with self._lock:
            held = self._answers.get(key)
            if held is None:
                self.misses += 1
                return None
            self._answers.move_to_end(key)
            self.hits += 1
            return held[0]

    def _unchanged(self, scope: AnswerScope, token: int) -> bool:
        if self._generation == token:
            return True
        if self._forgotten > token:
            return False  # changes since the read began are no longer known
        return not any(change.touches(scope) for generation, change in self._log
                       if generation > token)

    def put(self, key: Hashable, answer: Any, scope: AnswerScope, token: int, size: int) -> bool:
        """Keep ``answer`` (``size`` bytes) unless a change since ``token`` touches it;
        whether it was kept. Call it inside the `reading` that gave the token."""
        if size > MAX_ANSWER_BYTES or size > self.max_bytes:
            return False
        with self._lock:
            if not self._unchanged(scope, token):
                return False
            held = self._answers.pop(key, None)
            if held is not None:
                self._bytes -= held[2]
            self._answers[key] = (answer, scope, size)
            self._bytes += size
            while self._bytes > self.max_bytes or len(self._answers) > self.max_answers:
                _, (_, _, dropped) = self._answers.popitem(last=False)
                self._bytes -= dropped
            return True

    def changed(self, rows: pa.Table | None) -> None:
        """A write committed ``rows`` (None: anything may have changed): drop the answers
        it touches."""
        change = Change(rows)
        with self._lock:
            needed = bool(self._answers) or self._reads > 0
        if needed:
            change.firsts  # noqa: B018 (a group-by of the write: not under the lock)
            change.rows = None  # only its channels' earliest times are kept
        with self._lock:
            self._generation += 1
            if self._reads:
                if len(self._log) == self._log.maxlen:
                    self._forgotten = self._log[0][0]
                self._log.append((self._generation, change))
            else:
                self._forget()
            if not self._answers:
                return
            if rows is None:
                self._answers.clear()
                self._bytes = 0
                return
            for key in [k for k, (_, scope, _) in self._answers.items()
                        if change.touches(scope)]:
                self._bytes -= self._answers.pop(key)[2]

"""How the API reads the store: in a few threads, once per question, from memory if it can.

Threads: a small answer is mostly Python and pyarrow calls, each of which lets go of the
GIL and must win it back: sixteen requests in sixteen threads spend their time queueing for
it (measured: 24 hourly buckets, wrk -c16, 2 cores: 368 requests/s in the thread pool's
forty threads, 541 in three). Reads run in at most a core's worth of threads plus one (so
one may wait on the store while the others compute); the rest wait their turn on the event
loop.

Memory: a repeated question is answered from `meterhub.answers` on the event loop, with no
thread and no store call; questions asked at once while it is being computed wait for that
one computation instead of each making their own (a dashboard opened by several people, a
server just started under load).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable, Hashable
from typing import TypeVar

import anyio
import anyio.to_thread
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from meterhub import encode
from meterhub.answers import AnswerCache, AnswerScope

T = TypeVar("T")

READ_THREADS = (os.cpu_count() or 1) + 1  #: store reads running at once


class ReadThreads:
    """Runs functions in at most ``size`` threads at once (created on first use: anyio's
    limiter belongs to the running event loop)."""

    def __init__(self, size: int = READ_THREADS) -> None:
        self.size = size
        self._limiter: anyio.CapacityLimiter | None = None

    async def run(self, func: Callable[[], T]) -> T:
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(self.size)
        return await anyio.to_thread.run_sync(func, limiter=self._limiter)


class _Computing:
    """A question being computed: askers wait for ``done``; ``answer`` is what the
    computation made of it (body, headers) and ``token`` the generation it read at."""

    __slots__ = ("answer", "done", "token")

    def __init__(self) -> None:
        self.done = asyncio.Event()
        self.answer: tuple[bytes, dict[str, str] | None] | None = None
        self.token = -1


class Answering:
    """Questions of the API answered in `ReadThreads`, kept in ``answers`` (None: the store
    is shared, nothing is kept, and reads go to the thread pool: they wait on the network,
    not the GIL) and given again from there."""

    def __init__(self, answers: AnswerCache | None, threads: ReadThreads | None = None
                 ) -> None:
        self.answers = answers
        self.threads = threads or ReadThreads()
        self._computing: dict[Hashable, _Computing] = {}

    def held(self, key: Hashable, fmt: encode.Format) -> Response | None:
        """The kept answer to this question, if any."""
        found = self.answers.get(key) if self.answers is not None else None
        return None if found is None else _response(found, fmt)

    def reading(self, kept: bool = True) -> contextlib.AbstractContextManager[int]:
        """Around a computation whose answer may be ``kept``: its token for `keep` (one that
        will not be kept does not make writes meanwhile remember what they changed)."""
        if self.answers is None or not kept:
            return contextlib.nullcontext(0)
        return self.answers.reading()

    def keep(self, key: Hashable, token: int, scope: AnswerScope, body: bytes,
             fmt: encode.Format, headers: dict[str, str] | None = None) -> Response:
        """Answer with ``body``, kept for the same question (in the thread that made it,
        inside `reading`); those who asked meanwhile are given it too."""
        if self.answers is not None:
            self.answers.put(key, (body, headers), scope, token, len(body))
            computing = self._computing.get(key)
            if computing is not None:
                computing.answer, computing.token = (body, headers), token
        return _response((body, headers), fmt)

    async def run(self, compute: Callable[[], T]) -> T:
        if self.answers is None:
            return await run_in_threadpool(compute)
        return await self.threads.run(compute)

    async def answer(self, key: Hashable, fmt: encode.Format,
                     compute: Callable[[], Response]) -> Response:
        """The kept answer, else ``compute()`` in a read thread (it calls `keep`). A
        question already being computed waits for that computation and takes its answer
        when its read began after the question was asked (so the answer is as new as the
        question); else it computes its own."""
        if self.answers is None:
            return await self.run(compute)
        found = self.held(key, fmt)
        if found is not None:
            return found
        computing = self._computing.get(key)
        if computing is not None:
            arrived = self.answers.generation
            await computing.done.wait()
            # its read began after every change this asker could know of
            if computing.answer is not None and computing.token >= arrived:
                return _response(computing.answer, fmt)
            found = self.held(key, fmt)
            return found if found is not None else await self.run(compute)
        computing = self._computing[key] = _Computing()
        try:
            return await self.run(compute)
        finally:
            del self._computing[key]
            computing.done.set()


def _response(answer: tuple[bytes, dict[str, str] | None], fmt: encode.Format) -> Response:
    body, headers = answer
    return Response(body, media_type=encode.MEDIA_TYPES[fmt], headers=headers)

"""A real uvicorn (uvloop + httptools) serving an app on a loopback port, in a thread."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from fastapi import FastAPI

from meterhub.demo import serve_in_thread


@contextlib.contextmanager
def served(app: FastAPI) -> Iterator[str]:
    """The base URL of ``app`` served on 127.0.0.1 until the block ends."""
    base, server, thread = serve_in_thread(app, loop="uvloop", http="httptools",
                                           log_level="warning", access_log=False,
                                           lifespan="on")
    try:
        yield base
    finally:
        server.should_exit = True
        thread.join(timeout=10)

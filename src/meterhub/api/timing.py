"""Server-Timing: how long each answer took the server until its head was sent, as
``Server-Timing: app;dur=<ms>``. Browsers show it in their devtools and give it to a page's
Performance API (``PerformanceResourceTiming.serverTiming``), which is how the dashboard's
benchmarks (bench/dashboard.py) tell server time from network and drawing time.

Pure ASGI, like `meterhub.api.security.RateLimitHeaders`: a streamed body passes untouched
(its head goes out before the body, so a bulk answer's figure is its time to first byte).
"""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class ServerTiming:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()

        async def send_timed(message: Message) -> None:
            if message["type"] == "http.response.start":
                spent = (time.perf_counter() - started) * 1000
                message["headers"] = [*message.get("headers", []),
                                      (b"server-timing", f"app;dur={spent:.2f}".encode())]
            await send(message)

        await self.app(scope, receive, send_timed)

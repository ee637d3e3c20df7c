"""A real browser for the dashboard's tests: Debian's chromium driven by playwright.

The browser is the system's (`make test` installs Debian's ``chromium`` with apt-get when it
is missing), never one of playwright's own builds: nothing here runs ``playwright install``,
and PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD keeps anything that would from downloading. One browser
a test process (session scope; with pytest-xdist, one a worker that runs a browser test),
a fresh context (cookies, cache, storage) a test. Between browser tests the other tests of
the worker run as if no browser were there (see `Chromium`).

Screenshots go to ``tests/artifacts/`` (ignored by git), or the folder METERHUB_TEST_ARTIFACTS
names (for a CI that keeps them).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.sync_api import (
    Browser,
    ConsoleMessage,
    Page,
    Request,
    Response,
    ViewportSize,
    sync_playwright,
)

os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")

ARTIFACTS = Path(os.environ.get("METERHUB_TEST_ARTIFACTS")
                 or Path(__file__).resolve().parents[1] / "artifacts")
#: laptop width; the phone width (375) is a context option a test asks for
VIEWPORT: ViewportSize = {"width": 1440, "height": 900}


def chromium() -> str:
    """The system chromium's path; a clear failure (not a skip) when it is missing."""
    found = shutil.which("chromium")
    if found is None:
        pytest.fail("Debian's chromium is not installed: `make test` installs it "
                    "(apt-get install chromium)", pytrace=False)
    return found


def launch_args() -> list[str]:
    # chromium's sandbox refuses to start as root (CI runs as root); small /dev/shm in
    # containers crashes renderers, so shared memory goes to /tmp
    args = ["--disable-dev-shm-usage"]
    if os.geteuid() == 0:
        args.append("--no-sandbox")
    return args


@dataclass
class Chromium:
    """The launched browser and playwright's event loop.

    Playwright's sync API marks its event loop as running in this thread from its start to
    its stop (it runs the loop in a greenlet of the same thread), and ``asyncio.run`` refuses
    to start while a loop runs: the in-process API client of tests/api/conftest.py, used by
    many tests, would fail in a pytest-xdist worker after its first browser test. So the loop
    is marked running only while a browser test holds it (`held`, which the ``browser`` and
    ``page`` fixtures do for the whole test); inside that, talk to the served app over HTTP,
    not through ``asyncio.run``."""

    browser: Browser
    loop: asyncio.AbstractEventLoop

    @contextlib.contextmanager
    def held(self) -> Iterator[Browser]:
        previous = asyncio._get_running_loop()
        asyncio._set_running_loop(self.loop)
        try:
            yield self.browser
        finally:
            asyncio._set_running_loop(previous)


@pytest.fixture(scope="session")
def session_browser() -> Iterator[Chromium]:
    """One chromium a test process, launched at its first browser test."""
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium(), headless=True,
                                              args=launch_args())
        loop = asyncio._get_running_loop()
        assert loop is not None
        asyncio._set_running_loop(None)  # until a test holds it
        shared = Chromium(launched, loop)
        try:
            yield shared
        finally:
            asyncio._set_running_loop(loop)  # the close and playwright's stop run the loop
            launched.close()


@pytest.fixture
def browser(session_browser: Chromium) -> Iterator[Browser]:
    """The session's chromium, usable for the whole test."""
    with session_browser.held() as held:
        yield held


@dataclass
class Watched:
    """A page and what went wrong on it: failed requests (network errors and answers of
    400 or more), console errors and uncaught exceptions, and every response by URL."""

    page: Page
    failed: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    responses: dict[str, Response] = field(default_factory=dict)

    def problems(self) -> list[str]:
        return self.failed + self.errors


def watch(page: Page) -> Watched:
    watched = Watched(page)

    def on_response(response: Response) -> None:
        watched.responses[response.url] = response
        if response.status >= 400:
            watched.failed.append(f"{response.status} {response.request.method} "
                                  f"{response.url}")

    def on_failed(request: Request) -> None:
        # the browser's own icon fetch is cancelled when the page navigates on (the login
        # to the page it leads to): no failure of any page
        if request.failure == "net::ERR_ABORTED" and "/favicon." in request.url:
            return
        watched.failed.append(f"failed {request.method} {request.url}: {request.failure}")

    def on_console(message: ConsoleMessage) -> None:
        if message.type in ("error", "assert"):
            watched.errors.append(f"console.{message.type}: {message.text}")

    page.on("response", on_response)
    page.on("requestfailed", on_failed)
    page.on("console", on_console)
    page.on("pageerror", lambda error: watched.errors.append(f"uncaught: {error}"))
    return watched


@pytest.fixture
def page(browser: Browser) -> Iterator[Watched]:
    """A new page in a fresh context (nothing cached or stored from another test),
    watched from its first request."""
    context = browser.new_context(viewport=VIEWPORT)
    try:
        yield watch(context.new_page())
    finally:
        context.close()


def screenshot(page: Page, name: str, *, full_page: bool = True) -> Path:
    """Save ``page`` as a PNG test artifact named after ``name`` (a test's node id will do)
    and return its path; screenshots are for a person to look at, never committed."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / (re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") + ".png")
    page.screenshot(path=str(path), full_page=full_page)
    return path


def log_in(page: Page, base: str, key: str, path: str = "/") -> None:
    """Open ``path`` of the dashboard at ``base``: sent to the login first, give ``key``."""
    page.goto(f"{base}{path}")
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Log in").click()

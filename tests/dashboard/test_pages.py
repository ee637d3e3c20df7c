"""Every page of the dashboard in a real chromium against a real `meterhub serve`, checked
alike: it draws (no failed request, no script error), what it loads of script and style
weighs at most 150 KB as transferred (compressed), every control has a label and is
reachable by keyboard, and at phone width (375 px) nothing but a table's own scrolling area
is wider than the screen."""

from __future__ import annotations

import json
from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest

from meterhub.dashboard.pages import PAGES, Page
from meterhub.hub import Hub
from tests.dashboard.browser import Watched, log_in, screenshot
from tests.dashboard.site import Site, serve

BUDGET = 150_000  #: bytes of JS + CSS a page may transfer (issue 17)


def fill(hub: Hub) -> None:
    """A week of a weather station's temperature and a heat meter's energy register."""
    ts = pd.date_range("2024-10-21", periods=7 * 144, freq="10min", tz="UTC")
    hub.write(pd.DataFrame({"device": "ws1", "channel": "temp", "ts": ts,
                            "value": 12 + 4 * np.sin(np.arange(len(ts)) / 23),
                            "unit": "degC", "kind": "instant"}), source="lab")
    hub.write(pd.DataFrame({"device": "hm1", "channel": "energy", "ts": ts,
                            "value": 500 + np.arange(len(ts)) * 0.25, "unit": "kWh",
                            "kind": "counter"}), source="lab")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    with serve(tmp_path_factory.mktemp("pages"), fill) as running:
        yield running


#: per control, what a screen reader would call it ('' for none) and its tab index
CONTROLS = """() => [...document.querySelectorAll(
    'main input:not([type=hidden]), main select, main textarea, main button, main summary,'
    + ' header button, nav a')].map(el => ({
    tag: el.tagName, id: el.id,
    name: (el.labels && el.labels.length ? [...el.labels].map(l => l.textContent).join(' ')
           : el.getAttribute('aria-label') || el.getAttribute('title')
             || el.textContent).trim(),
    tabindex: el.tabIndex}))"""

#: bytes transferred for the page's scripts and style sheets, by URL
WEIGHT = """() => Object.fromEntries(performance.getEntriesByType('resource')
    .filter(e => /\\.(js|css)$/.test(new URL(e.name).pathname))
    .map(e => [new URL(e.name).pathname, e.transferSize]))"""


@pytest.mark.parametrize("shown", PAGES, ids=lambda p: p.path.strip("/") or "overview")
def test_each_page_draws_light_labelled_and_narrow(page: Watched, site: Site,
                                                   shown: Page) -> None:
    log_in(page.page, site.base, site.key, shown.path)
    page.page.wait_for_selector("body[data-ready=true]")
    assert page.problems() == []
    # what it loaded is its own files, each once, compressed, within the budget
    weights = page.page.evaluate(WEIGHT)
    assert len(weights) == len(shown.scripts) + len(shown.styles) + 2  # + common.js, .css
    for path in weights:
        assert page.responses[site.base + path].headers.get("content-encoding") == "gzip"
    assert 0 < sum(weights.values()) <= BUDGET
    # every control has a name and the keyboard reaches it
    controls = page.page.evaluate(CONTROLS)
    assert len(controls) >= 5  # the navigation and the logout at least
    assert [c for c in controls if not c["name"] or c["tabindex"] < 0] == []
    name = shown.path.strip("/") or "overview"
    screenshot(page.page, f"page-{name}-1440")
    page.page.set_viewport_size({"width": 375, "height": 800})
    page.page.wait_for_timeout(100)  # charts follow their box on resize
    assert page.page.evaluate("document.documentElement.scrollWidth") <= 375
    screenshot(page.page, f"page-{name}-375")


@pytest.mark.parametrize("shown", PAGES, ids=lambda p: p.path.strip("/") or "overview")
def test_a_failing_store_is_a_message_on_every_page(page: Watched, site: Site,
                                                    shown: Page) -> None:
    """Every API answer a 500 with the server's problem detail, as a store that fails
    makes them: each page says so in words, in an alert, and is never blank."""
    detail = "the store does not answer; the server log has the details"
    log_in(page.page, site.base, site.key, "/gaps")  # the session, before the store fails
    page.page.wait_for_selector("body[data-ready=true]")
    page.page.route("**/api/**", lambda route: route.fulfill(
        status=500, content_type="application/problem+json",
        body=json.dumps({"title": "Internal Server Error", "status": 500,
                         "detail": detail})))
    page.page.goto(site.base + shown.path)
    page.page.wait_for_selector("body[data-ready=error]")
    alert = page.page.get_by_role("alert").first.inner_text()
    assert alert.startswith("Could not ")
    assert detail in alert or "500" in alert
    assert page.page.locator("h1").inner_text() == shown.title
    # said, not thrown (the console's lines are the browser's own about the 500s)
    assert [e for e in page.errors if not e.startswith("console.error: Failed to load")] == []

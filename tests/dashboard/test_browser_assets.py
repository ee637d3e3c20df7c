"""The vendored chart library in a real browser: a page served by uvicorn on loopback loads
uPlot by its hashed URLs and draws a chart; chromium reports no failed request and no
error, and keeps the library in its cache."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass

import pytest
from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from meterhub.dashboard.assets import CACHE_CONTROL, install
from tests.api.conftest import Client
from tests.api.live import served
from tests.dashboard.browser import Chromium, Watched, screenshot

#: five readings ten minutes apart from 2024-10-26T00:00Z (uPlot takes unix seconds)
XS = [1729900800 + 600 * i for i in range(5)]
YS = [10.5, 12.0, 11.25, 14.0, 13.5]
JS, CSS = "vendor/uPlot.iife.min.js", "vendor/uPlot.min.css"


@dataclass
class Site:
    base: str
    manifest: dict[str, str]
    hits: list[str]  # the paths the server was asked for, in order


def chart_page(manifest: dict[str, str]) -> str:
    data = json.dumps([XS, YS])
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>uPlot check</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="{manifest[CSS]}">
<script src="{manifest[JS]}"></script>
</head><body>
<div id="chart"></div>
<script>
window.draws = 0;
window.chart = new uPlot({{
  width: 640, height: 320, title: "five readings",
  series: [{{}}, {{label: "temp", stroke: "#1f77b4", width: 2, points: {{show: true}}}}],
  hooks: {{draw: [() => {{ window.draws += 1; }}]}},
}}, {data}, document.getElementById("chart"));
</script>
</body></html>"""


@pytest.fixture(scope="module")
def site() -> Iterator[Site]:
    app = FastAPI()
    manifest = install(app)
    hits: list[str] = []

    @app.middleware("http")
    async def count(request: Request,
                    call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        hits.append(request.url.path)
        return await call_next(request)

    @app.get("/")
    async def index() -> HTMLResponse:
        return HTMLResponse(chart_page(manifest))

    with served(app) as base:
        yield Site(base, manifest, hits)


def test_uplot_draws_a_chart_from_the_hashed_files(
        site: Site, page: Watched, request: pytest.FixtureRequest) -> None:
    response = page.page.goto(site.base + "/")
    assert response is not None
    assert response.status == 200
    page.page.wait_for_function("window.draws > 0")

    assert page.page.evaluate("typeof window.uPlot") == "function"
    assert page.page.evaluate("window.chart.data") == [XS, YS]
    canvas = page.page.locator("#chart canvas")
    assert canvas.count() == 1
    box = canvas.bounding_box()
    assert box is not None
    assert box["width"] > 0
    assert box["height"] > 0
    # the line and its points are on the canvas: pixels that are not transparent
    inked = page.page.evaluate("""() => {
        const c = document.querySelector('#chart canvas');
        const px = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let n = 0;
        for (let i = 3; i < px.length; i += 4) if (px[i] > 0) n++;
        return n;
    }""")
    assert inked > 500
    # the stylesheet applied: uPlot's legend is centred by uPlot.min.css alone
    assert page.page.evaluate(
        "getComputedStyle(document.querySelector('.u-legend')).textAlign") == "center"
    assert page.page.locator(".u-title").inner_text() == "five readings"

    assert page.problems() == []
    for name in (JS, CSS):
        got = page.responses[site.base + site.manifest[name]]
        assert got.status == 200
        headers = got.all_headers()
        assert headers["cache-control"] == CACHE_CONTROL
        assert "immutable" in headers["cache-control"]
        assert headers["content-encoding"] == "gzip"  # chromium accepts it
        assert headers["vary"] == "Accept-Encoding"
    assert page.responses[site.base + site.manifest[JS]].all_headers()[
        "content-type"] == "text/javascript; charset=utf-8"

    shot = screenshot(page.page, request.node.nodeid)
    assert shot.stat().st_size > 1000


def test_a_second_visit_takes_the_library_from_the_cache(site: Site, page: Watched) -> None:
    js = site.manifest[JS]
    before = site.hits.count(js)
    for _ in range(2):
        page.page.goto(site.base + "/")
        page.page.wait_for_function("window.draws > 0")
    assert site.hits.count(js) == before + 1  # the second page asked the server nothing
    assert site.hits.count("/") >= 2
    assert page.problems() == []


def test_the_in_process_client_runs_in_a_worker_that_has_a_browser(
        site: Site, session_browser: Chromium) -> None:
    """Between browser tests, a worker's other tests call ``asyncio.run`` (tests/api's
    Client) although playwright's loop lives on in the same thread."""
    for _ in range(2):
        with session_browser.held() as browser:
            context = browser.new_context()
            page = context.new_page()
            page.goto(site.base + "/")
            page.wait_for_function("window.draws > 0")
            context.close()
        app = FastAPI()
        manifest = install(app)
        assert Client(app).get(manifest[CSS]).status_code == 200

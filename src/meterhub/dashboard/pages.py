"""The dashboard's pages: HTML shells that load their script and style by hashed name
(`meterhub.dashboard.assets`) and draw what the API answers. A page asks for a login
first (`meterhub.api.login`); its script then reads the API with the session cookie, by
the same paths and answers as any other client.

Pages: the Overview (``/``), Explore (``/explore``), Energy (``/energy``) and Gaps
(``/gaps``). No inline script runs: the Content-Security-Policy allows this site's files
only.
"""

from __future__ import annotations

import html
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from fastapi import FastAPI, Request
from starlette.responses import HTMLResponse, Response

from meterhub.api.login import login_redirect


@dataclass(frozen=True)
class Page:
    """A page: its path and title, and its own files under static/ (after the shared
    ones), scripts in the order they load."""

    path: str
    title: str
    scripts: tuple[str, ...]
    styles: tuple[str, ...] = ()


CHART = ("vendor/uPlot.iife.min.js",)  #: the chart library, for the pages that draw charts
CHART_STYLE = ("vendor/uPlot.min.css",)
#: the pages, in the navigation's order
PAGES = (Page("/", "Overview", ("pages/overview.js",)),
         Page("/explore", "Explore", (*CHART, "pages/explore.js"),
              (*CHART_STYLE, "pages/explore.css")),
         Page("/energy", "Energy", (*CHART, "pages/energy.js"),
              (*CHART_STYLE, "pages/energy.css")),
         Page("/gaps", "Gaps", ("pages/gaps.js",)))
COMMON = "pages/common.js"  #: what every page's script uses, loaded before it
STYLE = "pages/dashboard.css"
ICON = "pages/favicon.svg"
HEADERS = {"Cache-Control": "no-store",
           "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'; "
                                      "base-uri 'none'; form-action 'self'",
           "X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin"}


def shell(page: Page, manifest: dict[str, str]) -> str:
    nav = "".join(
        f'<a href="{p.path}"{" aria-current=page" if p.path == page.path else ""}>'
        f"{html.escape(p.title)}</a>" for p in PAGES)
    title = page.title
    styles = "".join(f'<link rel="stylesheet" href="{manifest[name]}">\n'
                     for name in (STYLE, *page.styles))
    scripts = "".join(f'<script src="{manifest[name]}" defer></script>\n'
                      for name in (COMMON, *page.scripts))
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>meterhub: {html.escape(title)}</title>
<link rel="icon" href="{manifest[ICON]}" type="image/svg+xml">
{styles}{scripts}</head><body>
<header><strong>meterhub</strong><nav aria-label="Pages">{nav}</nav>
<form method="post" action="/logout"><button type="submit">Log out</button></form></header>
<main><h1>{html.escape(title)}</h1><p class="muted">Loading…</p></main>
</body></html>"""


def _endpoint(page: str) -> Callable[[Request], Awaitable[Response]]:
    async def serve(request: Request) -> Response:
        redirect = login_redirect(request)
        return redirect if redirect is not None else HTMLResponse(page, headers=HEADERS)

    return serve


def install(app: FastAPI, manifest: dict[str, str]) -> None:
    for page in PAGES:
        app.add_api_route(page.path, _endpoint(shell(page, manifest)),
                          methods=["GET", "HEAD"], include_in_schema=False)

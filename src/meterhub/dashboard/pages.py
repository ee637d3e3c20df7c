"""The dashboard's pages: HTML shells that load their script and style by hashed name
(`meterhub.dashboard.assets`) and draw what the API answers. A page asks for a login
first (`meterhub.api.login`); its script then reads the API with the session cookie, by
the same paths and answers as any other client.

Pages so far: the Overview (``/``) and Gaps (``/gaps``). No inline script runs: the
Content-Security-Policy allows this site's files only.
"""

from __future__ import annotations

import html
from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request
from starlette.responses import HTMLResponse, Response

from meterhub.api.login import login_redirect

#: the pages in the navigation: (path, title, script under static/)
PAGES = (("/", "Overview", "pages/overview.js"), ("/gaps", "Gaps", "pages/gaps.js"))
COMMON = "pages/common.js"  #: what every page's script uses, loaded before it
STYLE = "pages/dashboard.css"
ICON = "pages/favicon.svg"
HEADERS = {"Cache-Control": "no-store",
           "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'; "
                                      "base-uri 'none'; form-action 'self'",
           "X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin"}


def shell(path: str, title: str, script: str, manifest: dict[str, str]) -> str:
    nav = "".join(
        f'<a href="{href}"{" aria-current=page" if href == path else ""}>{html.escape(name)}'
        "</a>" for href, name, _ in PAGES)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>meterhub: {html.escape(title)}</title>
<link rel="icon" href="{manifest[ICON]}" type="image/svg+xml">
<link rel="stylesheet" href="{manifest[STYLE]}">
<script src="{manifest[COMMON]}" defer></script>
<script src="{manifest[script]}" defer></script>
</head><body>
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
    for path, title, script in PAGES:
        app.add_api_route(path, _endpoint(shell(path, title, script, manifest)),
                          methods=["GET", "HEAD"], include_in_schema=False)

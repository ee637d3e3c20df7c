"""/docs (Swagger UI) and /redoc (ReDoc) with their scripts and styles served by meterhub.

FastAPI's own pages load Swagger UI and ReDoc from a CDN and stay blank offline. These load
them from /docs/static/, files of the ``fastapi-offline`` package: a dependency that ships
current Swagger UI 5 and ReDoc 2 builds, so no minified JavaScript lives in this repository
and an upgrade of that package brings new builds.
"""

from __future__ import annotations

from pathlib import Path

import fastapi_offline
from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from starlette.exceptions import HTTPException
from starlette.responses import HTMLResponse, Response
from starlette.staticfiles import StaticFiles

STATIC = "/docs/static"
ASSETS = ("swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js", "favicon.png")


def assets_dir() -> Path:
    """The installed folder that holds `ASSETS`."""
    return Path(fastapi_offline.__file__).parent / "static"


def install(app: FastAPI) -> None:
    """Add /docs, /redoc and the files they load; make the app with docs_url=None and
    redoc_url=None so FastAPI's CDN pages are not there too."""
    files = StaticFiles(directory=assets_dir())  # its ETag and 304 answers, content types

    async def asset(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in ASSETS:  # only the listed files, nothing else of the folder
            raise HTTPException(404)
        return await files.get_response(name, request.scope)

    # a plain route, not a mount, so a POST is told the allowed methods (GET, HEAD)
    app.add_route(f"{STATIC}/{{name}}", asset, methods=["GET"], include_in_schema=False)

    def urls(request: Request) -> tuple[str, str]:
        root = request.scope.get("root_path", "").rstrip("/")  # behind a path prefix
        return f"{root}{app.openapi_url}", f"{root}{STATIC}"

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        spec, static = urls(request)
        return get_swagger_ui_html(
            openapi_url=spec, title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{static}/swagger-ui-bundle.js",
            swagger_css_url=f"{static}/swagger-ui.css",
            swagger_favicon_url=f"{static}/favicon.png",
            # no badge that sends the spec's address to validator.swagger.io
            swagger_ui_parameters={**(app.swagger_ui_parameters or {}), "validatorUrl": None})

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        spec, static = urls(request)
        return get_redoc_html(openapi_url=spec, title=f"{app.title} - ReDoc",
                              redoc_js_url=f"{static}/redoc.standalone.js",
                              redoc_favicon_url=f"{static}/favicon.png",
                              with_google_fonts=False)

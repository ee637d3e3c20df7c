"""/docs and /redoc work offline: every file they load comes from meterhub itself."""

from __future__ import annotations

import asyncio
import importlib.metadata
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

import meterhub
from meterhub.api import create_app
from tests.api.conftest import Client

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = re.compile(r'(?:src|href)="([^"]+)"')
KINDS = {".js": "javascript", ".css": "text/css", ".png": "image/png"}


@pytest.fixture(scope="module")
def app() -> Iterator[FastAPI]:
    with meterhub.open("duckdb:///:memory:") as hub:
        yield create_app(hub)


def referenced(page: str) -> list[str]:
    return REFERENCE.findall(page)


# each page uses a bundle whose UMD header defines its global (Redoc reads the <redoc> tag)
@pytest.mark.parametrize(("page", "kinds", "use", "defined"), [
    ("/docs", {".js", ".css", ".png"}, "SwaggerUIBundle(", b".SwaggerUIBundle="),
    ("/redoc", {".js", ".png"}, "<redoc spec-url=", b".Redoc="),
])
def test_a_docs_page_loads_only_files_the_app_serves(app: FastAPI, page: str,
                                                     kinds: set[str], use: str,
                                                     defined: bytes) -> None:
    client = Client(app)  # no key: the docs are public, as FastAPI's were
    html = client.get(page)
    assert html.status_code == 200
    assert html.headers["content-type"].startswith("text/html")
    # nothing from a CDN or a font service: no absolute address at all
    assert re.findall(r"(?:https?:)?//[\w.-]+", html.text) == []
    files = referenced(html.text)
    assert {Path(f).suffix for f in files} == kinds, files
    for path in files:
        assert path.startswith("/docs/static/"), path
        answer = client.get(path)
        assert answer.status_code == 200, path
        assert KINDS[Path(path).suffix] in answer.headers["content-type"], path
        assert len(answer.content) > 500, path
    assert use in html.text
    bundle = b"".join(client.get(f).content for f in files if f.endswith(".js"))
    assert defined in bundle
    spec_url = re.search(r"(?:url: '|spec-url=\")([^'\"]+)", html.text)
    assert spec_url is not None
    assert client.get(spec_url.group(1)).json()["info"]["title"] == "meterhub"


def test_swagger_ui_sends_the_spec_to_no_online_validator(app: FastAPI) -> None:
    assert '"validatorUrl": null' in Client(app).get("/docs").text


def test_only_the_listed_files_are_served_and_only_for_reading(app: FastAPI) -> None:
    client = Client(app)
    missing = client.get("/docs/static/__init__.py")
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    posted = client.post("/docs/static/swagger-ui.css")
    assert posted.status_code == 405
    assert posted.headers["allow"] == "GET, HEAD"


def test_an_unchanged_file_is_answered_304(app: FastAPI) -> None:
    client = Client(app)
    first = client.get("/docs/static/swagger-ui.css")
    again = client.get("/docs/static/swagger-ui.css",
                       headers={"If-None-Match": first.headers["etag"]})
    assert again.status_code == 304


def test_behind_a_path_prefix_the_pages_point_under_it(app: FastAPI) -> None:
    async def call() -> str:
        transport = httpx.ASGITransport(app=app, root_path="/hub")
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            return (await client.get("/docs")).text

    files = referenced(asyncio.run(call()))
    assert files
    assert all(f.startswith("/hub/docs/static/") for f in files), files


def test_the_files_come_with_a_declared_dependency() -> None:
    # an install from the wheel gets the files only if pyproject declares their package
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = {re.split(r"[\s<>=!~;\[]", d, maxsplit=1)[0].lower().replace("_", "-")
                for d in project["dependencies"]}
    from meterhub.api import docs

    module = docs.assets_dir().parent.name
    owners = importlib.metadata.packages_distributions()[module]
    assert {o.lower().replace("_", "-") for o in owners} & declared, (owners, declared)
    for name in docs.ASSETS:
        assert (docs.assets_dir() / name).is_file(), name

"""The dashboard's static files: content-hashed URLs, a year of caching, gzip when accepted,
ETags and 304s, and nothing served at any other path."""

from __future__ import annotations

import gzip
import hashlib
import re
from pathlib import Path

import pytest
from fastapi import FastAPI

from meterhub.dashboard import assets, pages
from meterhub.dashboard.assets import (
    CACHE_CONTROL,
    STATIC_DIR,
    accepts_gzip,
    build_manifest,
    etag_matches,
    hashed_name,
    install,
)
from tests.api.conftest import Client

VENDORED = ("vendor/uPlot.iife.min.js", "vendor/uPlot.min.css", "vendor/uPlot.LICENSE")
IDENTITY = {"Accept-Encoding": "identity"}


@pytest.fixture(scope="module")
def served() -> tuple[Client, dict[str, str]]:
    app = FastAPI()
    manifest = install(app)
    return Client(app), manifest


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:10]


def test_the_manifest_names_every_vendored_file_by_its_content() -> None:
    manifest = build_manifest()
    assert set(VENDORED) <= set(manifest)
    for name in VENDORED:
        assert manifest[name] == "/static/" + hashed_name(name, digest(STATIC_DIR / name))
    js = manifest["vendor/uPlot.iife.min.js"]
    assert re.fullmatch(r"/static/vendor/uPlot\.iife\.min\.[0-9a-f]{10}\.js", js)
    assert re.fullmatch(r"/static/vendor/uPlot\.[0-9a-f]{10}\.LICENSE",
                        manifest["vendor/uPlot.LICENSE"])


def test_the_vendored_library_is_uplot_1_6_with_its_mit_licence() -> None:
    js = (STATIC_DIR / "vendor/uPlot.iife.min.js").read_text()
    assert re.match(r"/\*! https://github\.com/leeoniya/uPlot \(v1\.6\.\d+\) \*/", js)
    assert "MIT License" in (STATIC_DIR / "vendor/uPlot.LICENSE").read_text()
    assert "uplot" in (Path(__file__).resolve().parents[2] / "dashboard/package-lock.json"
                       ).read_text()


def test_hashed_names_keep_folder_and_suffix() -> None:
    assert hashed_name("vendor/uPlot.min.css", "abc") == "vendor/uPlot.min.abc.css"
    assert hashed_name("app.js", "abc") == "app.abc.js"
    assert hashed_name("LICENSE", "abc") == "LICENSE.abc"
    assert hashed_name("vendor/.x", "abc") == "vendor/.x.abc"


@pytest.mark.parametrize(("name", "content_type"), [
    ("vendor/uPlot.iife.min.js", "text/javascript; charset=utf-8"),
    ("vendor/uPlot.min.css", "text/css; charset=utf-8"),
    ("vendor/uPlot.LICENSE", "text/plain; charset=utf-8"),
])
def test_each_file_is_served_with_its_type_and_a_year_of_immutable_caching(
        served: tuple[Client, dict[str, str]], name: str, content_type: str) -> None:
    client, manifest = served
    response = client.get(manifest[name], headers=IDENTITY)
    assert response.status_code == 200
    assert response.content == (STATIC_DIR / name).read_bytes()
    assert response.headers["content-type"] == content_type
    assert response.headers["cache-control"] == CACHE_CONTROL == \
        "public, max-age=31536000, immutable"
    assert re.fullmatch(r'"[0-9a-f]{32}"', response.headers["etag"])
    assert "content-encoding" not in response.headers
    assert response.headers["vary"] == "Accept-Encoding"
    assert int(response.headers["content-length"]) == len(response.content)


def test_gzip_is_sent_to_a_client_that_accepts_it(
        served: tuple[Client, dict[str, str]]) -> None:
    client, manifest = served
    path = manifest["vendor/uPlot.iife.min.js"]
    plain = client.get(path, headers=IDENTITY)
    packed = client.get(path, headers={"Accept-Encoding": "gzip, deflate, br"})
    assert packed.headers["content-encoding"] == "gzip"
    assert packed.headers["vary"] == "Accept-Encoding"
    assert packed.headers["cache-control"] == CACHE_CONTROL
    assert packed.headers["content-type"] == "text/javascript; charset=utf-8"
    assert packed.content == plain.content  # httpx decoded the body
    wire = int(packed.headers["content-length"])
    assert wire < len(plain.content) / 2
    assert packed.headers["etag"] != plain.headers["etag"]  # one strong ETag an encoding


def test_the_gzip_body_is_made_once_and_the_same_on_every_start() -> None:
    body = (STATIC_DIR / "vendor/uPlot.min.css").read_bytes()
    one = assets.asset("vendor/uPlot.min.css", body)
    two = assets.asset("vendor/uPlot.min.css", body)
    assert one.gzipped == two.gzipped
    assert one.gzipped is not None
    assert gzip.decompress(one.gzipped) == body
    assert assets.collect() is assets.collect()  # read once a process


def test_page_weight_of_the_chart_library_fits_the_budget() -> None:
    """Issue 17: each page's JS + CSS at most 150 KB compressed; uPlot takes under a fifth
    (22 KB gzipped for 1.6.32)."""
    items = {a.name: a for a in assets.collect()}
    sizes = [len(items[n].gzipped or b"") for n in VENDORED[:2]]
    assert all(sizes)
    assert sum(sizes) < 150_000 / 5


@pytest.mark.parametrize("page", pages.PAGES, ids=lambda page: page.path)
def test_each_pages_js_and_css_fit_150_kb_compressed(page: pages.Page) -> None:
    """Issue 17's budget, for what each page loads: the shared script and sheet, its own
    and the chart library's (the pages' transfers, measured in chromium, are the same
    bytes: tests/dashboard/test_pages.py)."""
    items = {a.name: a for a in assets.collect()}
    names = (pages.COMMON, pages.STYLE, *page.scripts, *page.styles)
    assert all(Path(name).suffix in (".js", ".css") for name in names)
    assert sum(len(items[name].gzipped or items[name].body) for name in names) <= 150_000


@pytest.mark.parametrize(("header", "accepted"), [
    ("gzip", True), ("GZIP;q=0.5", True), ("br, gzip;q=1.0", True), ("*", True),
    ("x-gzip", True), ("", False), ("identity", False), ("br", False), ("gzip;q=0", False),
    ("gzip;q=0.000", False), ("*, gzip;q=0", False), ("*;q=0", False), ("gzip;q=bad", False),
    ("deflate, *;q=0.1", True),
])
def test_accept_encoding_is_read_with_its_qualities(header: str, accepted: bool) -> None:
    assert accepts_gzip(header) is accepted


def test_a_refusal_of_gzip_gets_the_plain_bytes(served: tuple[Client, dict[str, str]]) -> None:
    client, manifest = served
    response = client.get(manifest["vendor/uPlot.min.css"],
                          headers={"Accept-Encoding": "br, gzip;q=0"})
    assert "content-encoding" not in response.headers
    assert int(response.headers["content-length"]) == len(response.content)


@pytest.mark.parametrize("encoding", ["identity", "gzip"])
def test_a_matching_etag_answers_304_with_the_cache_headers(
        served: tuple[Client, dict[str, str]], encoding: str) -> None:
    client, manifest = served
    path = manifest["vendor/uPlot.iife.min.js"]
    first = client.get(path, headers={"Accept-Encoding": encoding})
    etag = first.headers["etag"]
    for sent in (etag, f"W/{etag}", f'"nope", {etag}', "*"):
        again = client.get(path, headers={"Accept-Encoding": encoding, "If-None-Match": sent})
        assert again.status_code == 304, sent
        assert again.content == b""
        assert again.headers["etag"] == etag
        assert again.headers["cache-control"] == CACHE_CONTROL
        assert again.headers["vary"] == "Accept-Encoding"
    other = client.get(path, headers={"Accept-Encoding": encoding, "If-None-Match": '"nope"'})
    assert other.status_code == 200
    assert etag_matches(f" W/{etag} ", etag)


def test_head_answers_the_get_headers_without_a_body(
        served: tuple[Client, dict[str, str]]) -> None:
    client, manifest = served
    for encoding in ("identity", "gzip"):
        path = manifest["vendor/uPlot.iife.min.js"]
        got = client.get(path, headers={"Accept-Encoding": encoding})
        head = client.request("HEAD", path, headers={"Accept-Encoding": encoding})
        assert head.status_code == 200
        assert head.content == b""
        for header in ("content-type", "content-length", "cache-control", "etag", "vary"):
            assert head.headers[header] == got.headers[header], header
        assert head.headers.get("content-encoding") == got.headers.get("content-encoding")


@pytest.mark.parametrize("path", [
    "/static/vendor/uPlot.iife.min.js",  # the logical name is no URL
    "/static/vendor/uPlot.iife.min.0000000000.js",  # a stale or unknown hash
    "/static/uPlot.iife.min.js",
    "/static/vendor/",
    "/static/vendor",
    "/static/",
    "/static/../pyproject.toml",
    "/static/vendor/%2e%2e/assets.py",
    "/static/__init__.py",
])
def test_only_the_hashed_paths_answer(served: tuple[Client, dict[str, str]],
                                      path: str) -> None:
    client, _ = served
    response = client.get(path)
    assert response.status_code == 404
    assert "immutable" not in response.headers.get("cache-control", "")


def test_other_methods_are_told_get_and_head(served: tuple[Client, dict[str, str]]) -> None:
    client, manifest = served
    response = client.post(manifest["vendor/uPlot.min.css"])
    assert response.status_code == 405
    assert set(response.headers["allow"].replace(" ", "").split(",")) == {"GET", "HEAD"}


def test_any_static_folder_is_served_and_hidden_files_left_out(tmp_path: Path) -> None:
    (tmp_path / "pages").mkdir()
    (tmp_path / "pages" / "overview.js").write_text("console.log(1);\n" * 50)
    (tmp_path / "favicon.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    (tmp_path / ".hidden.js").write_text("secret")
    (tmp_path / "__pycache__").mkdir()
    (tmp_path / "__pycache__" / "x.js").write_text("cache")
    app = FastAPI()
    manifest = install(app, tmp_path)
    assert set(manifest) == {"pages/overview.js", "favicon.png"}
    client = Client(app)
    png = client.get(manifest["favicon.png"], headers={"Accept-Encoding": "gzip"})
    assert png.headers["content-type"] == "image/png"
    assert "content-encoding" not in png.headers  # only text is compressed
    assert "vary" not in png.headers
    js = client.get(manifest["pages/overview.js"], headers={"Accept-Encoding": "gzip"})
    assert js.headers["content-encoding"] == "gzip"
    assert js.text == "console.log(1);\n" * 50


def test_a_file_of_unknown_type_stops_the_start(tmp_path: Path) -> None:
    (tmp_path / "data.bin").write_bytes(b"\0")
    with pytest.raises(ValueError, match=r"no content type for '\.bin'"):
        install(FastAPI(), tmp_path)


def test_a_missing_static_folder_stops_the_start(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="static folder is missing"):
        install(FastAPI(), tmp_path / "nothing")

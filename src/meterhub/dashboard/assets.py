"""The dashboard's static files, served under content-hashed names with long cache headers.

Every file under ``static/`` (the vendored chart library and its licence in ``static/vendor/``,
copied there from the npm registry by ``dashboard/vendor.sh``; the pages' own scripts and
styles later) is read once at start-up. Its URL carries the first 10 hex digits of its
SHA-256, ``vendor/uPlot.iife.min.js`` -> ``/static/vendor/uPlot.iife.min.1a2b3c4d5e.js``, so a
browser may keep it for a year without asking again (``immutable``): a changed file gets a new
URL, and an old URL answers 404. Pages name their files through the manifest `install`
returns, never by a literal path.

Text files are gzipped once here (level 9, no timestamp, so the bytes and their ETag are the
same on every start) and sent gzipped to a client that accepts it, with ``Vary:
Accept-Encoding``; nothing else of the app is compressed, so no middleware is involved.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import Response

STATIC_DIR = Path(__file__).resolve().parent / "static"
PREFIX = "/static"
HASH_DIGITS = 10
CACHE_CONTROL = "public, max-age=31536000, immutable"

#: content types by file suffix; a file of any other suffix stops the start-up (a choice to
#: make, not a guess from the machine's mime tables)
CONTENT_TYPES = {
    ".js": "text/javascript",
    ".mjs": "text/javascript",
    ".css": "text/css",
    ".html": "text/html",
    ".txt": "text/plain",
    ".LICENSE": "text/plain",
    ".json": "application/json",
    ".map": "application/json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".woff2": "font/woff2",
}
COMPRESSIBLE = ("text/", "application/json", "image/svg+xml")


@dataclass(frozen=True)
class Asset:
    """One static file as it is served."""

    name: str  #: logical name, its path under the static folder: ``vendor/uPlot.min.css``
    url: str  #: the hashed URL path
    media_type: str
    body: bytes
    etag: str  #: strong ETag of ``body``
    gzipped: bytes | None  #: ``body`` gzipped, when it is text and that makes it smaller

    @property
    def gzip_etag(self) -> str:
        return self.etag[:-1] + '-gzip"'  # a strong ETag names one encoding of the bytes


def content_type(name: str) -> str:
    file = name.rsplit("/", 1)[-1]
    suffix = "." + file.rsplit(".", 1)[-1] if "." in file else ""
    if file == "LICENSE":
        return "text/plain"
    try:
        return CONTENT_TYPES[suffix]
    except KeyError:
        raise ValueError(f"static file {name!r}: no content type for {suffix or 'no suffix'!r}; "
                         "add it to meterhub.dashboard.assets.CONTENT_TYPES") from None


def hashed_name(name: str, digest: str) -> str:
    """``name`` with ``digest`` before the file's last suffix (after the name if it has none):
    ``vendor/uPlot.min.css`` -> ``vendor/uPlot.min.<digest>.css``."""
    folder, slash, file = name.rpartition("/")
    stem, dot, suffix = file.rpartition(".")
    file = f"{stem}.{digest}.{suffix}" if dot and stem else f"{file}.{digest}"
    return f"{folder}{slash}{file}"


def asset(name: str, body: bytes, prefix: str = PREFIX) -> Asset:
    digest = hashlib.sha256(body).hexdigest()
    media_type = content_type(name)
    gzipped = None
    if media_type.startswith(COMPRESSIBLE):
        packed = gzip.compress(body, compresslevel=9, mtime=0)
        gzipped = packed if len(packed) < len(body) else None
    return Asset(name=name, url=f"{prefix}/{hashed_name(name, digest[:HASH_DIGITS])}",
                 media_type=media_type, body=body, etag=f'"{digest[:32]}"', gzipped=gzipped)


@functools.cache
def collect(folder: Path = STATIC_DIR, prefix: str = PREFIX) -> tuple[Asset, ...]:
    """Every file under ``folder`` (not hidden ones, nor caches), read and hashed once a
    process: the files ship inside the package and do not change while it runs."""
    if not folder.is_dir():
        raise FileNotFoundError(f"the dashboard's static folder is missing: {folder}")
    found = []
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if not path.is_file() or any(part.startswith((".", "__")) for part in relative.parts):
            continue
        found.append(asset(relative.as_posix(), path.read_bytes(), prefix))
    return tuple(found)


def build_manifest(folder: Path = STATIC_DIR, prefix: str = PREFIX) -> dict[str, str]:
    """{logical name -> hashed URL path} of the files under ``folder``."""
    return {a.name: a.url for a in collect(folder, prefix)}


def accepts_gzip(accept_encoding: str) -> bool:
    """Whether an Accept-Encoding header takes gzip (RFC 9110 12.5.3: ``q=0`` refuses;
    ``*`` stands for every coding the header does not name)."""
    named: float | None = None
    anything: float | None = None
    for part in accept_encoding.split(","):
        coding, _, parameters = part.partition(";")
        quality = 1.0
        for parameter in parameters.split(";"):
            key, _, value = parameter.partition("=")
            if key.strip().lower() == "q":
                try:
                    quality = float(value.strip())
                except ValueError:
                    quality = 0.0
        coding = coding.strip().lower()
        if coding in ("gzip", "x-gzip"):
            named = quality if named is None else max(named, quality)
        elif coding == "*":
            anything = quality
    if named is not None:
        return named > 0
    return anything is not None and anything > 0


def etag_matches(if_none_match: str, etag: str) -> bool:
    """If-None-Match's weak comparison: any listed tag (``W/`` or not) equal to ``etag``."""
    if if_none_match.strip() == "*":
        return True
    return etag in {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}


def endpoint(item: Asset) -> Callable[[Request], Awaitable[Response]]:
    async def serve(request: Request) -> Response:
        packed = item.gzipped is not None and accepts_gzip(
            request.headers.get("accept-encoding", ""))
        body = item.gzipped if packed and item.gzipped is not None else item.body
        etag = item.gzip_etag if packed else item.etag
        headers = {"Cache-Control": CACHE_CONTROL, "ETag": etag}
        if item.gzipped is not None:
            headers["Vary"] = "Accept-Encoding"
        if packed:
            headers["Content-Encoding"] = "gzip"
        if etag_matches(request.headers.get("if-none-match", ""), etag):
            return Response(status_code=304, headers=headers)
        headers["Content-Length"] = str(len(body))
        return Response(b"" if request.method == "HEAD" else body, headers=headers,
                        media_type=item.media_type)

    return serve


def install(app: FastAPI, folder: Path = STATIC_DIR, prefix: str = PREFIX) -> dict[str, str]:
    """Serve the files under ``folder`` at their hashed paths (GET and HEAD; any other path
    under ``prefix``, an old hash too, is the app's 404) and return the manifest, {logical
    name -> hashed URL path}, that pages take their links from."""
    items = collect(folder, prefix)
    for item in items:
        # a plain route a file (not a mount): only these exact paths answer, and a POST is
        # told the allowed methods (Starlette adds HEAD to GET)
        app.add_route(item.url, endpoint(item), methods=["GET"], include_in_schema=False)
    return {item.name: item.url for item in items}

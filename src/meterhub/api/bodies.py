"""Request bodies read with a bound: paths open to anyone (a login form, a datalogger's
push) never read more than they can use."""

from __future__ import annotations

import contextlib

from fastapi import Request


async def bounded_body(request: Request, limit: int) -> bytes | None:
    """The request's body, or None when it is over ``limit`` bytes: said by its
    Content-Length (nothing is read then) or found while reading (reading stops there).
    The body is kept on the request, so its form (`Request.form`) is read from it."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        return None
    chunks, size = [], 0
    async with contextlib.aclosing(request.stream()) as stream:
        async for chunk in stream:
            size += len(chunk)
            if size > limit:
                return None
            chunks.append(chunk)
    request._body = b"".join(chunks)
    return request._body

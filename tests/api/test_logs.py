"""What the server logs, on a real uvicorn: one line per event, a traceback only for a
server error, and only once (Starlette's handler for unexpected errors re-raised them, so
uvicorn logged each a second time; a client that dropped its upload was an "unexpected
error" with two tracebacks)."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterator

import httpx
import pytest
from starlette.responses import StreamingResponse

from meterhub.errors import StoreError
from tests.api.conftest import Api
from tests.api.live import served

#: where every record of meterhub and uvicorn passes (uvicorn's own go to uvicorn.error)
LOGGERS = ("meterhub", "uvicorn.error")


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def wait_for(self, count: int, seconds: float = 5) -> list[logging.LogRecord]:
        deadline = time.monotonic() + seconds
        while len(self.records) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.2)  # and nothing more comes
        return list(self.records)


@pytest.fixture
def logged(api: Api) -> Iterator[tuple[str, Records]]:
    """The api fixture's app, with routes that fail, on a real uvicorn; and every record
    meterhub's and uvicorn's loggers emit meanwhile (meterhub's from INFO up)."""

    @api.app.get("/test/crash")
    def crash() -> None:
        raise RuntimeError("a bug")

    @api.app.get("/test/store-down")
    def store_down() -> None:
        raise StoreError("the disk went away")

    @api.app.get("/test/crash-midway")
    def crash_midway() -> StreamingResponse:
        def body() -> Iterator[bytes]:
            yield b"x" * 1000
            raise RuntimeError("a bug while streaming")

        return StreamingResponse(body(), media_type="text/plain")

    handler = Records()
    with served(api.app) as base:
        levels = {name: logging.getLogger(name).level for name in LOGGERS}
        logging.getLogger("meterhub").setLevel(logging.INFO)
        for name in LOGGERS:
            logging.getLogger(name).addHandler(handler)
        try:
            yield base, handler
        finally:
            for name, level in levels.items():
                logging.getLogger(name).removeHandler(handler)
                logging.getLogger(name).setLevel(level)


def with_traceback(records: list[logging.LogRecord]) -> list[logging.LogRecord]:
    return [r for r in records if r.exc_info]


def test_an_unexpected_error_is_one_500_and_one_logged_traceback(
        logged: tuple[str, Records]) -> None:
    base, handler = logged
    response = httpx.get(f"{base}/test/crash", timeout=10)
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    assert "server log has the details" in response.json()["detail"]
    assert "a bug" not in response.text
    records = handler.wait_for(1)
    assert len(records) == 1, [r.getMessage() for r in records]
    (record,) = records
    assert record.levelno == logging.ERROR
    assert "GET /test/crash" in record.getMessage()
    assert record.exc_info is not None
    assert "a bug" in str(record.exc_info[1])


def test_a_store_failure_is_one_500_and_one_logged_traceback(
        logged: tuple[str, Records]) -> None:
    base, handler = logged
    response = httpx.get(f"{base}/test/store-down", timeout=10)
    assert response.status_code == 500
    assert "the disk went away" not in response.text
    records = handler.wait_for(1)
    assert len(records) == 1, [r.getMessage() for r in records]
    assert records[0].levelno == logging.ERROR
    assert "the disk went away" in records[0].getMessage()
    assert len(with_traceback(records)) == 1


def test_an_error_after_the_answer_started_cuts_it_and_is_logged_once(
        logged: tuple[str, Records]) -> None:
    base, handler = logged
    with pytest.raises(httpx.RemoteProtocolError):  # the body ends early, never "complete"
        httpx.get(f"{base}/test/crash-midway", timeout=10)
    records = handler.wait_for(1)
    assert len(records) == 1, [r.getMessage() for r in records]
    assert len(with_traceback(records)) == 1
    assert records[0].levelno == logging.ERROR


def test_a_client_that_drops_its_upload_is_one_info_line(api: Api,
                                                         logged: tuple[str, Records]) -> None:
    base, handler = logged
    url = httpx.URL(base)
    assert url.port is not None
    item = (b'{"device": "d", "channel": "c", "ts": "2025-01-01T00:00:00Z", "value": 1, '
            b'"unit": "W"},')
    with socket.create_connection((url.host, url.port), timeout=10) as sock:
        sock.sendall(b"POST /api/v1/readings HTTP/1.1\r\nHost: x\r\nX-API-Key: "
                     + api.keys["write"].encode() + b"\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 5000000\r\n\r\n[" + item * 10_000)
    records = handler.wait_for(1)
    assert len(records) == 1, [r.getMessage() for r in records]
    (record,) = records
    assert record.levelno == logging.INFO
    assert record.exc_info is None
    assert "went away before the request body of POST /api/v1/readings ended" in (
        record.getMessage())
    assert "d" not in set(api.hub.devices()["device"])

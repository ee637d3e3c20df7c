"""`meterhub serve` against slow and oversized clients: half a request line (slowloris),
a trickle of bytes, nothing at all, an endless header, and a client that drops its upload.

uvicorn's keep-alive timer only starts after a response, so before meterhub's guard
(meterhub.api.server) these connections stayed open until the client went away."""

from __future__ import annotations

import contextlib
import selectors
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import meterhub
from meterhub.api import create_app
from meterhub.api.server import HEADER_TIMEOUT, GuardedHttpToolsProtocol, uvicorn_options
from meterhub.demo import serve_in_thread
from meterhub.keys import new_key


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[tuple[tuple[str, int], str, subprocess.Popen[str]]]:
    """A real `meterhub serve` process: its address, a write key, the process."""
    store = f"duckdb:///{tmp_path / 'limits.duckdb'}"
    with meterhub.open(store) as hub:
        record, key = new_key("pusher", "write")
        hub.store.add_key(record)
    process = subprocess.Popen([sys.executable, "-m", "meterhub.cli", "serve", "--store", store,
                                "--port", "0"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert "meterhub API on http://127.0.0.1:" in line, line
        port = int(line.split()[3].removesuffix("/api/v1").rsplit(":", 1)[1])
        yield ("127.0.0.1", port), key, process
    finally:
        if process.poll() is None:
            process.terminate()
            process.communicate(timeout=30)


def health(address: tuple[str, int]) -> bytes:
    with socket.create_connection(address, timeout=10) as sock:
        sock.sendall(b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        return read_all(sock)


def read_all(sock: socket.socket) -> bytes:
    parts = []
    while chunk := sock.recv(65536):
        parts.append(chunk)
    return b"".join(parts)


@pytest.mark.early
def test_half_request_lines_are_closed_within_the_header_timeout(
        serve: tuple[tuple[str, int], str, subprocess.Popen[str]]) -> None:
    address, _, _ = serve
    opened = time.monotonic()
    silent = [socket.create_connection(address, timeout=10) for _ in range(20)]
    halves = []
    for _ in range(400):
        sock = socket.create_connection(address, timeout=10)
        sock.sendall(b"GET /api/v1/hea")  # half a request line, then nothing
        halves.append(sock)
    trickle = [socket.create_connection(address, timeout=10) for _ in range(5)]
    line = b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 200
    # the server still answers others while those hang
    assert health(address).startswith(b"HTTP/1.1 200 ")
    waiting = {sock: "silent" for sock in silent} | {sock: "half" for sock in halves} | {
        sock: "trickle" for sock in trickle}
    closed_at: dict[str, list[float]] = {"silent": [], "half": [], "trickle": []}
    selector = selectors.DefaultSelector()
    for sock in waiting:
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ)
    sent = 0
    deadline = opened + HEADER_TIMEOUT + 5
    while waiting and time.monotonic() < deadline:
        for key, _ in selector.select(timeout=0.25):
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            try:
                data = sock.recv(4096)
            except ConnectionResetError:
                data = b""
            assert data == b"", data  # closed, not answered
            closed_at[waiting.pop(sock)].append(time.monotonic() - opened)
            selector.unregister(sock)
            sock.close()
        # a byte every quarter second: a slow client that never finishes its head
        if sent < len(line):
            for sock in trickle:
                if sock in waiting:
                    with contextlib.suppress(OSError):  # closed since the select
                        sock.send(line[sent:sent + 1])
            sent += 1
    assert not waiting, f"{len(waiting)} connections still open after {HEADER_TIMEOUT + 5} s"
    for kind, times in closed_at.items():
        assert min(times) >= HEADER_TIMEOUT - 1, (kind, min(times))  # the deadline, ...
        assert max(times) <= HEADER_TIMEOUT + 3, (kind, max(times))  # ... and kept
    assert health(address).startswith(b"HTTP/1.1 200 ")


def test_a_request_head_over_64_kib_is_431(
        serve: tuple[tuple[str, int], str, subprocess.Popen[str]]) -> None:
    address, _, _ = serve
    with socket.create_connection(address, timeout=10) as sock:
        # 66 headers of 1 KiB, and no end of the head: just over the limit, then wait
        sock.sendall(b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\n"
                     + (b"X-Pad: " + b"a" * 1024 + b"\r\n") * 66)
        answer = read_all(sock)
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]
    # a head just under the limit is answered
    with socket.create_connection(address, timeout=10) as sock:
        sock.sendall(b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                     + b"X-Pad: " + b"a" * 60_000 + b"\r\n\r\n")
        assert read_all(sock).startswith(b"HTTP/1.1 200 ")


def test_a_client_that_drops_its_upload_leaves_no_error_in_the_log(
        serve: tuple[tuple[str, int], str, subprocess.Popen[str]]) -> None:
    address, key, process = serve
    item = (b'{"device": "d", "channel": "c", "ts": "2025-01-01T00:00:00Z", "value": 1, '
            b'"unit": "W"},')
    for _ in range(3):  # a third of the body, then the client is gone
        with socket.create_connection(address, timeout=10) as sock:
            sock.sendall(b"POST /api/v1/readings HTTP/1.1\r\nHost: x\r\nX-API-Key: "
                         + key.encode() + b"\r\nContent-Type: application/json\r\n"
                         b"Content-Length: 2000000\r\n\r\n[" + item * 8000)
        time.sleep(0.3)
    assert health(address).startswith(b"HTTP/1.1 200 ")
    process.terminate()
    _, stderr = process.communicate(timeout=30)
    assert "Traceback" not in stderr, stderr
    assert "ERROR" not in stderr, stderr
    assert "unexpected" not in stderr, stderr


class Quick(GuardedHttpToolsProtocol):
    """meterhub's protocol with timeouts and a cap small enough to watch in a test."""

    header_timeout = 3.0
    body_idle_timeout = 1.0
    max_connections = 5


@pytest.fixture
def quick(tmp_path: Path) -> Iterator[tuple[tuple[str, int], str]]:
    """The API on a real uvicorn (in a thread) with `Quick`: its address and a write key."""
    with meterhub.open(f"duckdb:///{tmp_path / 'quick.duckdb'}") as hub:
        record, key = new_key("pusher", "write")
        hub.store.add_key(record)
        options = {**uvicorn_options(), "http": Quick, "log_config": None}
        base, server, thread = serve_in_thread(create_app(hub), **options)
        try:
            yield ("127.0.0.1", int(base.rsplit(":", 1)[1])), key
        finally:
            server.should_exit = True
            thread.join(timeout=10)


def push_head(key: str, length: int) -> bytes:
    return (b"POST /api/v1/readings HTTP/1.1\r\nHost: x\r\nX-API-Key: " + key.encode()
            + b"\r\nContent-Type: application/json\r\nConnection: close\r\n"
            + b"Content-Length: %d\r\n\r\n" % length)


def test_a_body_that_stalls_is_closed_and_a_slow_steady_one_is_not(
        quick: tuple[tuple[str, int], str]) -> None:
    address, key = quick
    body = (b'[{"device": "slow", "channel": "c", "ts": "2025-01-01T00:00:00Z", "value": 1, '
            b'"unit": "W"}]')
    with socket.create_connection(address, timeout=10) as stalled, \
            socket.create_connection(address, timeout=10) as steady:
        started = time.monotonic()
        stalled.sendall(push_head(key, len(body)) + body[:10])
        stalled.setblocking(False)
        steady.sendall(push_head(key, len(body)))
        stalled_closed = None
        for start in range(0, len(body), 8):  # 8 bytes every 0.4 s: 4 s in all
            steady.sendall(body[start:start + 8])
            time.sleep(0.4)
            if stalled_closed is None:
                with contextlib.suppress(BlockingIOError):
                    assert stalled.recv(4096) == b""  # closed without an answer
                    stalled_closed = time.monotonic() - started
        answer = read_all(steady)
        assert answer.startswith(b"HTTP/1.1 200 "), answer
        assert stalled_closed is not None
        assert Quick.body_idle_timeout <= stalled_closed < Quick.body_idle_timeout + 1.5


def test_connections_beyond_the_cap_are_closed_at_once(
        quick: tuple[tuple[str, int], str]) -> None:
    address, _ = quick
    held = [socket.create_connection(address, timeout=10) for _ in range(Quick.max_connections)]
    time.sleep(0.2)
    with socket.create_connection(address, timeout=10) as extra:
        started = time.monotonic()
        assert read_all(extra) == b""
        assert time.monotonic() - started < 1
    for sock in held:
        sock.close()
    time.sleep(0.2)
    assert health(address).startswith(b"HTTP/1.1 200 ")


def test_a_body_sent_after_an_early_answer_is_not_taken_for_a_head(
        serve: tuple[tuple[str, int], str, subprocess.Popen[str]]) -> None:
    """A request answered before its body arrived (here 401: no key) keeps its connection:
    the rest of the body is passed over and the next request is answered."""
    address, _, _ = serve
    body = b"[" + b" " * 199_998 + b"]"
    with socket.create_connection(address, timeout=10) as sock:
        sock.sendall(b"POST /api/v1/readings HTTP/1.1\r\nHost: x\r\nContent-Type: "
                     b"application/json\r\nContent-Length: %d\r\n\r\n" % len(body))
        first = sock.recv(65536)  # the answer has begun before the body was sent
        assert first.startswith(b"HTTP/1.1 401 "), first
        sock.sendall(body)
        sock.sendall(b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        answers = first + read_all(sock)
    assert answers.count(b"HTTP/1.1 ") == 2, answers
    assert b"\r\n\r\nHTTP/1.1 200 " in answers or b"}HTTP/1.1 200 " in answers, answers
    assert b"431" not in answers

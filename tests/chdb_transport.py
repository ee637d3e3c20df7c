"""Current ClickHouse (26.x, in-process through chdb) behind the HTTP client: an httpx
transport that runs each request's SQL in chdb and answers as a current server's HTTP
interface would. chdb has no HTTP server of its own; what only HTTP shows is checked on the
real 18.16 server."""

from __future__ import annotations

import atexit
import functools
import os
import re
import shutil
import tempfile
import threading
import uuid
from pathlib import Path
from typing import Any

import chdb
import httpx

from meterhub.store.clickhouse_http import UNKNOWN_DATABASE, UNKNOWN_TABLE

# URL parameters the HTTP interface reads itself; every other one is a setting
_NOT_SETTINGS = frozenset({"query", "database", "user", "password", "default_format",
                           "wait_end_of_query"})
_FORMAT = re.compile(r"\s+FORMAT\s+\w+\s*$", re.IGNORECASE)


def _with_settings(sql: str, settings: dict[str, str]) -> str:
    """``sql`` with a SETTINGS clause (before a trailing FORMAT, where the grammar has it)."""
    clause = " SETTINGS " + ", ".join(f"{name} = {value!r}" if not value.lstrip("-").isdigit()
                                      else f"{name} = {value}"
                                      for name, value in settings.items())
    if sql.lstrip().upper().startswith(("CREATE", "DROP", "ALTER", "OPTIMIZE", "USE")):
        return sql  # statements without a SETTINGS clause of their own
    found = _FORMAT.search(sql)
    return sql[:found.start()] + clause + sql[found.start():] if found else sql + clause


def memory_folder() -> str | None:
    """/dev/shm where the machine has it (every insert writes a part of some 30 files:
    30-40 ms each on a disk here, a few ms in memory), else the system's temporary folder."""
    shm = Path("/dev/shm")
    return str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else None


@functools.cache
def chdb_connection() -> Any:
    """chdb's one embedded server of this process: it refuses a second one at another path
    (and `chdb.query` would open one in memory), so every test here shares this one."""
    folder = tempfile.mkdtemp(prefix="meterhub-chdb-", dir=memory_folder())
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return chdb.connect(folder)


def chdb_native(sql: str) -> bytes:
    answer: bytes = chdb_connection().query(sql, "Native").bytes()
    return answer


class ChdbHTTP(httpx.BaseTransport):
    """Current ClickHouse behind the client's HTTP requests: the SQL (body or ``query=``)
    runs in chdb, a Native insert body is read through ``file()``, and a refusal comes back
    as a current server sends it (status, X-ClickHouse-Exception-Code, text)."""

    def __init__(self, path: Path) -> None:
        self.conn = chdb_connection()
        self.dir = path
        self.lock = threading.Lock()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/ping":
            return httpx.Response(200, content=b"Ok.\n")
        params = dict(request.url.params)
        body = request.read()
        sql = params["query"] if "query" in params else body.decode()
        # settings travel as URL parameters; chdb takes them per query after SETTINGS
        settings = {name: value for name, value in params.items() if name not in _NOT_SETTINGS}
        with self.lock:
            try:
                self.conn.query(f"USE {params.get('database', 'default')}")
                insert = re.fullmatch(r"INSERT INTO (\S+) \((.*)\) FORMAT Native", sql)
                if insert:
                    # chdb takes no input stream: the body becomes a file that file() reads
                    data = self.dir / f"insert-{uuid.uuid4().hex}.native"
                    data.write_bytes(body)
                    sql = (f"INSERT INTO {insert[1]} ({insert[2]}) SELECT * FROM "
                           f"file('{data}', Native)")
                if settings:
                    sql = _with_settings(sql, settings)
                try:
                    answer = self.conn.query(sql, "TabSeparated").bytes()
                finally:
                    if insert:
                        data.unlink(missing_ok=True)
            except RuntimeError as exc:  # chdb's errors
                text = str(exc).encode()
                match = re.match(rb"Code: (\d+)", text)
                code = match[1].decode() if match else "1000"
                status = 404 if int(code) in (UNKNOWN_TABLE, UNKNOWN_DATABASE) else 500
                return httpx.Response(status, headers={"X-ClickHouse-Exception-Code": code},
                                      content=text + b"\n")
        return httpx.Response(200, content=answer)



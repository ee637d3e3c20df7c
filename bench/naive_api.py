"""The naive reference for bench/api.py: FastAPI endpoints that run the same DuckDB queries
as meterhub and answer with stdlib ``json`` over fetched rows, as a first attempt would.

Run: ``python bench/naive_api.py --db FILE --port 0`` (prints its URL on the first line).
"""

from __future__ import annotations

import argparse
import json
import socket

import duckdb
import uvicorn
from fastapi import FastAPI
from starlette.responses import Response

COLUMNS = ["source", "device", "channel", "ts", "value", "unit", "quality", "seq",
           "error_code", "validated"]


def create(db: str) -> FastAPI:
    con = duckdb.connect(db, read_only=True)
    app = FastAPI()

    @app.get("/readings")
    def readings(device: str, limit: int = 1000) -> Response:
        rows = con.cursor().execute("""
            SELECT d.source, c.device, c.channel, r.ts, r.value, c.unit,
                   r.quality::VARCHAR, r.seq, r.error_code, r.validated
            FROM readings r JOIN channels c USING (series_id) JOIN devices d USING (device)
            WHERE c.device = ? ORDER BY c.device, c.channel, r.ts LIMIT ?""",
                                    [device, limit]).fetchall()
        data = [dict(zip(COLUMNS, row, strict=True)) for row in rows]
        for item in data:
            item["ts"] = item["ts"].isoformat() + "Z"
        return Response(json.dumps({"data": data}), media_type="application/json")

    @app.get("/aggregates")
    def aggregates(device: str, start: str, end: str) -> Response:
        rows = con.cursor().execute("""
            SELECT c.device, c.channel, time_bucket(INTERVAL 1 hour, r.ts) AS bucket,
                   avg(r.value), min(r.value), max(r.value), count(*)
            FROM readings r JOIN channels c USING (series_id)
            WHERE c.device = ? AND r.ts >= ?::TIMESTAMP AND r.ts < ?::TIMESTAMP
            GROUP BY ALL ORDER BY ALL""", [device, start.removesuffix("Z"),
                                           end.removesuffix("Z")]).fetchall()
        data = [{"device": d, "channel": c, "bucket": b.isoformat() + "Z", "mean": mean,
                 "min": lo, "max": hi, "count": n} for d, c, b, mean, lo, hi, n in rows]
        return Response(json.dumps({"data": data}), media_type="application/json")

    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", required=True)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", args.port))
    print(f"naive API on http://127.0.0.1:{sock.getsockname()[1]}", flush=True)
    server = uvicorn.Server(uvicorn.Config(create(args.db), loop="uvloop", http="httptools",
                                          log_level="warning", access_log=False))
    server.run(sockets=[sock])


if __name__ == "__main__":
    main()

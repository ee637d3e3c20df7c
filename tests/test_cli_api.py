"""`meterhub keys` and `meterhub serve` as a user runs them."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import duckdb
import httpx
from typer.testing import CliRunner

from meterhub.cli import app

runner = CliRunner()


def test_keys_create_list_revoke(tmp_path: Path) -> None:
    store = f"duckdb:///{tmp_path / 'k.duckdb'}"
    made = runner.invoke(app, ["keys", "create", "--name", "logger", "--scope", "write",
                               "--rate-limit", "30/minute", "--store", store])
    assert made.exit_code == 0, made.output
    key = made.stdout.strip().splitlines()[-1]
    assert key.startswith("mh_")
    listed = runner.invoke(app, ["keys", "list", "--store", store])
    assert "logger" in listed.stdout
    assert "write" in listed.stdout
    assert "30/minute" in listed.stdout
    assert key not in listed.stdout
    # only the hash is on disk
    with duckdb.connect(str(tmp_path / "k.duckdb")) as con:
        rows = con.execute("SELECT * FROM api_keys").fetchall()
    assert key not in str(rows)
    assert hashlib.sha256(key.encode()).hexdigest() in str(rows)
    again = runner.invoke(app, ["keys", "create", "--name", "logger", "--store", store])
    assert again.exit_code == 1
    assert "already named 'logger'" in again.output
    bad = runner.invoke(app, ["keys", "create", "--name", "x", "--scope", "root",
                              "--store", store])
    assert bad.exit_code == 1
    assert "read, write or admin" in bad.output
    revoked = runner.invoke(app, ["keys", "revoke", "logger", "--store", store])
    assert revoked.exit_code == 0
    assert "revoked key 'logger'" in revoked.stdout
    assert runner.invoke(app, ["keys", "revoke", "nothing", "--store", store]).exit_code == 1


def test_serve_answers_over_loopback_and_refuses_revoked_keys(tmp_path: Path) -> None:
    store = f"duckdb:///{tmp_path / 's.duckdb'}"
    assert runner.invoke(app, ["sample", "--store", store]).exit_code == 0
    key = runner.invoke(app, ["keys", "create", "--name", "me", "--scope", "admin",
                              "--store", store]).stdout.strip().splitlines()[-1]
    process = subprocess.Popen([sys.executable, "-m", "meterhub.cli", "serve", "--store", store,
                                "--port", "0"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert "meterhub API on http://127.0.0.1:" in line, line + process.stderr.read()
        base = line.split()[3].removesuffix("/api/v1")
        with httpx.Client(base_url=base, headers={"X-API-Key": key}, timeout=30) as client:
            health = client.get("/api/v1/health")
            assert health.json()["status"] == "ok"
            daily = client.get("/api/v1/aggregates", params={
                "device": "em-demo-1", "every": "1d", "tz": "Europe/Amsterdam",
                "start": "2024-10-27", "end": "2024-10-28"}).json()["data"]
            assert daily[0]["bucket"] == "2024-10-27T00:00:00+02:00"
            made = client.post("/api/v1/keys", json={"name": "reader"}).json()
            assert client.get("/api/v1/devices",
                              headers={"X-API-Key": made["key"]}).status_code == 200
            client.delete(f"/api/v1/keys/{made['key_id']}")
            assert client.get("/api/v1/devices",
                              headers={"X-API-Key": made["key"]}).status_code == 401
    finally:
        process.terminate()
        process.communicate(timeout=30)
    # while the server ran it owned the store; now the CLI can open it again
    listed = runner.invoke(app, ["keys", "list", "--store", store])
    assert "reader" in listed.stdout


def test_a_second_process_is_told_the_store_is_in_use(tmp_path: Path) -> None:
    store = f"duckdb:///{tmp_path / 'busy.duckdb'}"
    runner.invoke(app, ["keys", "create", "--name", "me", "--store", store])
    process = subprocess.Popen([sys.executable, "-m", "meterhub.cli", "serve", "--store", store,
                                "--port", "0"], stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, text=True)
    try:
        assert process.stdout is not None
        assert "meterhub API on" in process.stdout.readline()
        busy = subprocess.run([sys.executable, "-m", "meterhub.cli", "keys", "create", "--name",
                               "other", "--store", store], capture_output=True, text=True,
                              timeout=60, check=False)
        assert busy.returncode == 1
        assert "is in use by another process" in busy.stderr
    finally:
        process.terminate()
        process.communicate(timeout=30)

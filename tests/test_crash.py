"""Crash safety: a sync killed with SIGKILL at random moments, then run again, ends with a
store identical to an uninterrupted run (real processes, real emulators on loopback), on
every store backend: DuckDB commits a page in one transaction; ClickHouse, which has none,
stores a page's rows before its cursor, so a kill between them re-fetches and replaces."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pytest

import meterhub
from tests.clickhouse_fixtures import BACKENDS, NewURL
from tests.test_cli import VENDORS, demo_toml, emulators

KILLS = 10


def sync(config: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "meterhub.cli", "sync", "--config",
                             str(config)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env=env)


def snapshot(store: str) -> tuple[pa.Table, list[object], list[object]]:
    with meterhub.open(store) as hub:
        readings = hub.readings(as_="arrow").drop_columns(["source"])
        cursors = [(c.source, c.device, c.value) for c in hub.store.cursors()]
        channels = hub.channels(as_="arrow").select(["device", "channel", "kind", "unit",
                                                     "readings"]).to_pylist()
    return readings, cursors, channels


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.mark.early
def test_sigkill_at_random_points_then_resume_equals_an_uninterrupted_sync(
        tmp_path: Path, new_store_url: NewURL) -> None:
    rng = random.Random(20261121)
    env = {**os.environ, "ZENTRA_TOKEN": "emulator-token", "METERHUB_TRACE_COMMITS": "1"}
    # frozen data: every run sees the same history; no limits: restarted clients have no
    # memory of the calls their killed predecessors made
    with emulators(VENDORS, "--frozen", "--no-limits", "--devices", "2") as started:
        urls = {vendor: url for vendor, (url, _) in started.items()}
        reference, crashed = new_store_url(), new_store_url()
        (tmp_path / "ref.toml").write_text(demo_toml(urls, reference))
        (tmp_path / "crash.toml").write_text(demo_toml(urls, crashed))
        # the uninterrupted sync runs beside the killed ones: another store, the same
        # frozen emulators, and most of a sync is waiting on Climkit's 1 call a second
        whole = sync(tmp_path / "ref.toml", env)
        points: list[tuple[int, float]] = []
        partial: list[int] = []
        for _ in range(KILLS):
            # after one or two pages this run committed, and a random moment later: early
            # in each resumed run, so that kills keep landing mid-sync as the work left
            # shrinks (a point drawn over the whole sync mostly fell after a resumed run
            # had finished, and on a busy machine too few kills landed mid-sync)
            point = (rng.randrange(1, 3), round(rng.uniform(0, 0.05), 3))
            points.append(point)
            victim = sync(tmp_path / "crash.toml", env)
            assert victim.stderr is not None
            seen, ended = 0, False
            while seen < point[0]:
                line = victim.stderr.readline()
                if not line:
                    ended = True
                    break
                seen += line.startswith("committed ")
            if not ended:
                time.sleep(point[1])
                victim.send_signal(signal.SIGKILL)
            victim.communicate(timeout=30)
            with meterhub.open(crashed) as hub:
                partial.append(hub.count())
            if ended and victim.returncode == 0:
                # this run finished before its kill point: the sync is complete, and every
                # later run would find nothing left to do (and be killed after it exited)
                break
        last = sync(tmp_path / "crash.toml", env)
        _, errors = last.communicate(timeout=120)
        assert last.returncode == 0, errors
        _, trace = whole.communicate(timeout=120)
        assert whole.returncode == 0, trace
        assert trace.count("committed ") >= 5
    want, got = snapshot(reference), snapshot(crashed)
    # the kills landed in the middle of syncs, not only before or after them
    assert sum(0 < n < want[0].num_rows for n in partial) >= 3, (partial, points)
    assert got[0].num_rows == want[0].num_rows, points
    assert got[0].equals(want[0]), points
    assert got[1] == want[1], points
    assert got[2] == want[2], points

"""meterhub.answers: which writes drop which kept answers, reads in flight, the bounds."""

from __future__ import annotations

import datetime as dt
import gc
import time

import pyarrow as pa
import pytest

from meterhub.answers import AnswerCache, AnswerScope
from meterhub.model import TS_TYPE
from meterhub.store import Selection

END = dt.datetime(2024, 3, 2, tzinfo=dt.UTC)


def rows(*items: tuple[str, str, dt.datetime]) -> pa.Table:
    return pa.table({"device": [d for d, _, _ in items], "channel": [c for _, c, _ in items],
                     "ts": pa.array([t for _, _, t in items], TS_TYPE)})


def scope(devices: list[str] | None = None, channels: list[str] | None = None,
          end: dt.datetime | None = END) -> AnswerScope:
    return AnswerScope.of(Selection(devices=devices, channels=channels,
                                    start=END - dt.timedelta(days=1), end=end))


def kept(cache: AnswerCache, key: str, answer_scope: AnswerScope) -> AnswerCache:
    with cache.reading() as token:
        assert cache.put(key, key.encode(), answer_scope, token, 10)
    return cache


def put(cache: AnswerCache, key: str, answer_scope: AnswerScope, size: int = 1) -> bool:
    """An answer read and kept with no write meanwhile."""
    with cache.reading() as token:
        return cache.put(key, b"x", answer_scope, token, size)


@pytest.mark.parametrize(("written", "dropped"), [
    (("m1", "energy", END - dt.timedelta(days=30)), True),  # before the range: a base
    (("m1", "energy", END - dt.timedelta(hours=1)), True),
    (("m1", "energy", END), True),  # at the end: closes a counter's last bucket
    (("m1", "energy", END + dt.timedelta(microseconds=1)), False),
    (("m1", "power", END - dt.timedelta(hours=1)), False),  # another channel
    (("m2", "energy", END - dt.timedelta(hours=1)), False),  # another device
])
def test_a_write_drops_the_answers_whose_channels_and_range_it_touches(
        written: tuple[str, str, dt.datetime], dropped: bool) -> None:
    cache = kept(AnswerCache(), "a", scope(["m1"], ["energy"]))
    cache.changed(rows(written))
    assert (cache.get("a") is None) is dropped


def test_answers_without_filters_or_end_are_dropped_by_any_write_of_theirs() -> None:
    cache = AnswerCache()
    kept(cache, "all", scope(None, None, None))
    kept(cache, "m2", scope(["m2"], None, None))
    kept(cache, "power", scope(None, ["power"], END))
    cache.changed(rows(("m1", "energy", dt.datetime(2100, 1, 1, tzinfo=dt.UTC))))
    assert cache.get("all") is None
    assert cache.get("m2") == b"m2"
    assert cache.get("power") == b"power"
    cache.changed(rows(("m9", "power", END)))
    assert cache.get("power") is None
    assert cache.get("m2") == b"m2"


def test_one_write_of_many_channels_drops_only_what_it_touches() -> None:
    cache = AnswerCache()
    for device in ("m1", "m2", "m3"):
        kept(cache, device, scope([device], ["energy"]))
    cache.changed(rows(("m1", "power", END), ("m2", "energy", END + dt.timedelta(hours=1)),
                       ("m3", "energy", END + dt.timedelta(hours=1)),
                       ("m3", "energy", END - dt.timedelta(hours=5))))
    assert [cache.get(d) for d in ("m1", "m2", "m3")] == [b"m1", b"m2", None]


def test_a_delete_or_catalog_change_drops_everything() -> None:
    cache = kept(kept(AnswerCache(), "a", scope(["m1"])), "b", scope(["m2"]))
    cache.changed(None)
    assert len(cache) == 0
    assert cache.get("a") is None
    assert cache.get("b") is None


def test_an_answer_read_while_a_write_touching_it_committed_is_not_kept() -> None:
    cache = AnswerCache()
    with cache.reading() as token:  # the read begins
        cache.changed(rows(("m1", "energy", END - dt.timedelta(hours=1))))  # a write commits
        assert not cache.put("a", b"stale", scope(["m1"]), token, 5)
    assert cache.get("a") is None
    # a write elsewhere meanwhile does not spoil it
    with cache.reading() as token:
        cache.changed(rows(("m2", "energy", END - dt.timedelta(hours=1))))
        assert cache.put("a", b"fresh", scope(["m1"]), token, 5)
    assert cache.get("a") == b"fresh"
    # nor does one of its channels after its end
    with cache.reading() as token:
        cache.changed(rows(("m1", "energy", END + dt.timedelta(seconds=1))))
        assert cache.put("b", b"fresh", scope(["m1"]), token, 5)
    # a delete meanwhile does
    with cache.reading() as token:
        cache.changed(None)
        assert not cache.put("c", b"stale", scope(["m9"]), token, 5)
    # nor is an answer kept whose read overlapped a write with another read still going
    with cache.reading() as first:
        with cache.reading() as second:
            cache.changed(rows(("m1", "energy", END)))
        assert not cache.put("d", b"stale", scope(["m1"]), first, 5)
        assert not cache.put("d", b"stale", scope(["m1"]), second, 5)


def test_a_read_older_than_the_changes_remembered_is_not_kept() -> None:
    cache = AnswerCache()
    with cache.reading() as token:
        for _ in range(300):  # more than the log holds, none touching the answer
            cache.changed(rows(("m2", "energy", END)))
        assert not cache.put("a", b"x", scope(["m1"]), token, 1)
    assert put(cache, "a", scope(["m1"]))


def test_writes_are_not_held_on_to_once_no_read_needs_them() -> None:
    cache = AnswerCache()
    kept(cache, "a", scope(["m1"]))
    pool = pa.proxy_memory_pool(pa.default_memory_pool())  # counts only these writes

    def write() -> pa.Table:  # 3 MB of Arrow buffers of its own
        n = 200_000
        return pa.table({"device": pa.array(["m2"] * n, memory_pool=pool),
                         "channel": pa.array(["energy"] * n, memory_pool=pool),
                         "ts": pa.array(range(n), TS_TYPE, memory_pool=pool)})

    def released() -> bool:
        """Every write's buffers freed (Arrow's group-by threads may let go a moment late)."""
        deadline = time.monotonic() + 2
        while pool.bytes_allocated() and time.monotonic() < deadline:
            gc.collect()
            time.sleep(0.01)
        return pool.bytes_allocated() == 0

    for _ in range(20):  # no read in flight: nothing remembered
        cache.changed(write())
    assert released()
    with cache.reading() as token:  # a read in flight: each change kept only as its channels'
        for _ in range(20):  # first times
            cache.changed(write())
        assert released()
        assert cache.put("b", b"x", scope(["m1"]), token, 1)  # m2's changes do not touch it
    assert cache.get("a") == b"a"


def test_the_least_recently_used_answers_go_first_within_the_bounds() -> None:
    cache = AnswerCache(max_bytes=100, max_answers=3)
    for key in "abc":
        kept(cache, key, scope())
    assert cache.get("a") == b"a"  # now the most recently used
    kept(cache, "d", scope())
    assert cache.get("b") is None
    assert [cache.get(k) for k in "acd"] == [b"a", b"c", b"d"]
    assert put(cache, "big", scope(), 95)  # pushes out all but itself
    assert len(cache) == 1
    assert cache.get("big") == b"x"
    assert not put(cache, "huge", scope(), 101)
    assert cache.get("big") == b"x"

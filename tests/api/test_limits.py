"""Per-key rate limits: a sliding window that never lets more than the limit through in any
window of its period, wherever the window starts, and that gives an idle key its allowance
back (hypothesis over arbitrary request times, on an injected clock)."""

from __future__ import annotations

from fractions import Fraction

from hypothesis import given, settings
from hypothesis import strategies as st

from meterhub.api.security import KeyLimits
from meterhub.keys import RateLimit, new_key

# Request times are multiples of 1/1024 s: exact in binary floating point, so the checks
# below (in exact fractions) and the limiter (in floats) see the same instants.
TICK = Fraction(1, 1024)


def _run(limit: str, gaps: list[int]) -> tuple[RateLimit, list[tuple[Fraction, bool,
                                                                    dict[str, str]]]]:
    rate = RateLimit.parse(limit)
    now = [0.0]
    limits = KeyLimits(rate, clock=lambda: now[0])
    record, _ = new_key("k", "read", limit)
    answers = []
    at = Fraction(5_000_000)  # far from 0, like a real monotonic clock
    for gap in gaps:
        at += gap * TICK
        now[0] = float(at)
        allowed, headers = limits.hit(record)
        answers.append((at, allowed, headers))
    return rate, answers


limits_st = st.sampled_from(["1/s", "3/s", "5/minute", "10/minute", "4/5min", "7/hour"])


@settings(max_examples=300, deadline=None)
@given(limit=limits_st, data=st.data())
def test_no_window_of_the_period_admits_more_than_the_limit(limit: str,
                                                            data: st.DataObject) -> None:
    period_ticks = RateLimit.parse(limit).period * 1024
    # gaps from "at the same instant" to over a period, bursts and trickles mixed
    gaps = data.draw(st.lists(st.one_of(st.just(0), st.integers(0, period_ticks // 8),
                                        st.integers(0, 2 * period_ticks)),
                              min_size=1, max_size=120))
    rate, answers = _run(limit, gaps)
    admitted = [at for at, ok, _ in answers if ok]
    period = Fraction(rate.period)
    # the most admitted requests in any closed window [s, s + period] (one starting at an
    # admitted request is the fullest of those that hold it)
    for start in admitted:
        inside = sum(1 for at in admitted if start <= at <= start + period)
        assert inside <= rate.calls, (limit, start, inside)
    slot = period / KeyLimits.SLOTS
    for at, ok, headers in answers:
        assert headers["X-RateLimit-Limit"] == str(rate.calls)
        if not ok:
            recent = sum(1 for t in admitted if at - period - slot <= t <= at)
            # refused only when the limit is used within the period (and one slot)
            assert recent >= rate.calls, (limit, at)
            wait = int(headers["Retry-After"])
            assert 1 <= wait <= rate.period + 1 + int(slot)
        else:
            assert "Retry-After" not in headers
        remaining = int(headers["X-RateLimit-Remaining"])
        assert 0 <= remaining <= rate.calls - (1 if ok else 0)
        assert 0 <= int(headers["X-RateLimit-Reset"]) <= rate.period + 1 + int(slot)


@settings(max_examples=150, deadline=None)
@given(limit=limits_st, data=st.data())
def test_an_idle_key_gets_its_whole_allowance_back(limit: str, data: st.DataObject) -> None:
    rate = RateLimit.parse(limit)
    period_ticks = rate.period * 1024
    gaps = data.draw(st.lists(st.integers(0, period_ticks // 4), max_size=60))
    idle = period_ticks + period_ticks // KeyLimits.SLOTS + 1  # a period and a slot
    burst = [idle] + [0] * (rate.calls - 1)
    _, answers = _run(limit, [*gaps, *burst, 0])
    tail = answers[-rate.calls - 1:]
    assert [ok for _, ok, _ in tail] == [True] * rate.calls + [False]
    first = tail[0][2]
    assert first["X-RateLimit-Remaining"] == str(rate.calls - 1)


def test_ten_requests_in_under_a_second_across_a_minute_edge_get_five_through() -> None:
    """The issue's case: fixed windows let 10 of 10 through on a 5/minute key."""
    # from 0.35 s before a minute's edge (of the wall clock) every 75 ms: 0.7 s in all
    gaps = [int(39.65 * 1024)] + [77] * 9
    _, answers = _run("5/minute", gaps)
    assert [ok for _, ok, _ in answers] == [True] * 5 + [False] * 5
    refused = answers[5][2]
    # the first request leaves the window a minute (and at most a slot) after it came
    assert 59 <= int(refused["Retry-After"]) <= 61
    assert refused["X-RateLimit-Remaining"] == "0"


def test_retry_after_is_when_the_next_request_is_allowed() -> None:
    rate, answers = _run("2/minute", [0, 10 * 1024, 10 * 1024])
    assert [ok for _, ok, _ in answers] == [True, True, False]
    wait = int(answers[2][2]["Retry-After"])
    assert 40 <= wait <= 41  # the first request, 20 s ago, leaves after 60 s (+ a slot)
    # replay on a fresh limiter: just before the announced time still refused, then allowed
    record, _ = new_key("k", "read", "2/minute")
    now = [0.0]
    replay = KeyLimits(rate, clock=lambda: now[0])
    for at in (0, 10, 20):
        now[0] = 5_000_000.0 + at
        replay.hit(record)
    now[0] = 5_000_000.0 + 20 + wait - 0.5
    assert replay.hit(record)[0] is False
    now[0] = 5_000_000.0 + 20 + wait
    assert replay.hit(record)[0] is True

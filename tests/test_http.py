"""The shared HTTP layer: rolling limits on virtual time, and the virtual clock itself."""

from __future__ import annotations

import asyncio
import itertools
import socket
from typing import Any

import httpx
import pytest

from meterhub.clock import VirtualClock
from meterhub.errors import RateLimitedError, UnavailableError
from meterhub.http import Limit, RateLimiter, RetryPolicy, VendorClient, make_client

PER_MINUTE = Limit("device", 1, 60.0)
PER_ACCOUNT = Limit("account", 3, 60.0)


def test_rolling_limits_space_calls_exactly_and_scopes_combine() -> None:
    clock = VirtualClock(0.0)
    limiter = RateLimiter(clock)
    stamps: list[tuple[str, float]] = []

    async def caller(device: str, calls: int) -> None:
        for _ in range(calls):
            await limiter.acquire([(PER_ACCOUNT, "acct"), (PER_MINUTE, device)])
            stamps.append((device, clock.now()))

    async def main() -> None:
        await asyncio.gather(*(caller(d, 3) for d in ("a", "b", "c", "d")))

    asyncio.run(main())
    by_device: dict[str, list[float]] = {}
    for device, at in stamps:
        by_device.setdefault(device, []).append(at)
    for times in by_device.values():  # 1 per minute per device
        assert all(b - a >= 60 for a, b in itertools.pairwise(times))
    everything = sorted(at for _, at in stamps)
    for at in everything:  # never more than 3 in any 60 s
        assert sum(1 for other in everything if at <= other < at + 60) <= 3, everything
    # 12 calls at 3 per minute: the last starts at minute 3, no device left behind
    assert everything[-1] == pytest.approx(180.0)
    # callers waited side by side: the time anyone was held back is those 3 minutes, while
    # the sum over callers counts each waiting caller's minutes again
    assert limiter.blocked == pytest.approx(180.0)
    assert limiter.waited > 2 * limiter.blocked


def test_readings_budget_counts_units_not_calls() -> None:
    clock = VirtualClock(0.0)
    limiter = RateLimiter(clock)
    budget = Limit("readings", 160_000, 3600.0)

    async def main() -> list[float]:
        times = []
        for _ in range(3):
            await limiter.acquire([(budget, "logger")], cost=65_535)
            times.append(clock.now())
        return times

    assert asyncio.run(main()) == [0.0, 0.0, 3600.0]
    assert limiter.waited == pytest.approx(3600.0)


def test_virtual_sleep_orders_wakeups_and_costs_no_real_time() -> None:
    clock = VirtualClock(100.0)
    order: list[tuple[str, float]] = []

    async def sleeper(name: str, seconds: float) -> None:
        await clock.sleep(seconds)
        order.append((name, clock.now()))

    async def main() -> None:
        await asyncio.gather(sleeper("late", 86400 * 365), sleeper("soon", 5),
                             sleeper("mid", 3600))

    asyncio.run(main())
    assert order == [("soon", 105.0), ("mid", 3700.0), ("late", 100.0 + 86400 * 365)]


class FlakyTransport(httpx.AsyncBaseTransport):
    """Fails the first requests the way a network does, then passes them on."""

    def __init__(self, inner: httpx.AsyncBaseTransport, failures: list[Exception]) -> None:
        self.inner, self.failures = inner, list(failures)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self.failures:
            raise self.failures.pop(0)
        return await self.inner.handle_async_request(request)


def zentra_client(failures: list[Exception], clock: VirtualClock) -> tuple[Any, Any]:
    from meterhub.emulators.zentra import ZentraWorld, create_app
    from meterhub.sources.zentra import ZentraConfig, ZentraConnector

    world = ZentraWorld.create(clock, devices=1, days=2)
    world.faults.slow_seconds = 5.0
    inner = httpx.ASGITransport(app=create_app(world))
    config = ZentraConfig(name="z", base_url="https://zentracloud.com",
                          token="emulator-token", devices=["z6-10001"])
    return world, ZentraConnector(config, clock=clock,
                                  transport=FlakyTransport(inner, failures))


def test_timeouts_and_connection_errors_are_retried_with_backoff() -> None:
    clock = VirtualClock(0.0)
    failures: list[Exception] = [httpx.ReadTimeout("slow"), httpx.ConnectError("refused"),
                                 httpx.ReadTimeout("slow")]
    world, con = zentra_client(failures, clock)

    async def main() -> int:
        records = sum([p.records async for p in con.fetch("z6-10001", None)])
        await con.aclose()
        return records

    assert asyncio.run(main()) == len(world.records("z6-10001")[0])
    assert con.http.retries == 3
    assert clock.now() > 0  # backoff and the slow answers took (virtual) time


def test_retries_are_bounded_and_end_in_one_typed_error() -> None:
    clock = VirtualClock(0.0)
    world, con = zentra_client([httpx.ConnectError("refused")] * 10, clock)

    async def main() -> None:
        try:
            async for _ in con.fetch("z6-10001", None):
                pass
        finally:
            await con.aclose()

    with pytest.raises(UnavailableError, match="cannot reach") as info:
        asyncio.run(main())
    assert "emulator-token" not in str(info.value)
    assert con.http.calls == RetryPolicy().attempts
    assert world.calls == 0


def refused() -> httpx.ConnectError:
    """What httpx raises when nothing listens on the port: the OSError sits underneath."""
    exc = httpx.ConnectError("All connection attempts failed")
    exc.__cause__ = ConnectionRefusedError(111, "Connect call failed")
    return exc


def not_resolved() -> httpx.ConnectError:
    exc = httpx.ConnectError("[Errno -2] Name or service not known")
    exc.__cause__ = socket.gaierror(-2, "Name or service not known")
    return exc


def fetch_all(con: Any) -> None:
    async def main() -> None:
        try:
            async for _ in con.fetch("z6-10001", None):
                pass
        finally:
            await con.aclose()

    asyncio.run(main())


def test_a_refused_connection_names_the_server_and_what_to_check_and_gives_up_sooner(
) -> None:
    clock = VirtualClock(0.0)
    world, con = zentra_client([refused() for _ in range(10)], clock)
    with pytest.raises(UnavailableError) as info:
        fetch_all(con)
    message = str(info.value)
    assert "https://zentracloud.com:443 (connection refused)" in message
    assert "check that the host is up and that the source's base_url in meterhub.toml" \
        in message
    assert "emulator-token" not in message
    # three tries, not six (each try also waits for ZENTRA's one call a minute per device)
    assert con.http.calls == 3
    assert clock.now() == 120.0
    assert world.calls == 0


def test_an_unknown_host_name_is_said_in_words_and_gives_up_sooner() -> None:
    clock = VirtualClock(0.0)
    _, con = zentra_client([not_resolved() for _ in range(10)], clock)
    with pytest.raises(UnavailableError,
                       match=r"cannot reach https://zentracloud\.com:443 \(host name not "
                             r"resolved\)"):
        fetch_all(con)
    assert con.http.calls == 3


def test_a_refused_server_that_comes_back_is_still_reached() -> None:
    clock = VirtualClock(0.0)
    world, con = zentra_client([refused(), refused()], clock)
    fetch_all(con)
    assert world.calls > 0
    assert con.http.retries == 2


def test_read_timeouts_keep_the_full_retries_and_name_the_server() -> None:
    clock = VirtualClock(0.0)
    _, con = zentra_client([httpx.ReadTimeout("slow") for _ in range(10)], clock)
    with pytest.raises(UnavailableError, match=r"on https://zentracloud\.com:443 timed out"):
        fetch_all(con)
    assert con.http.calls == 6


def test_the_server_in_a_connection_error_carries_no_user_info_or_query() -> None:
    clock = VirtualClock(0.0)
    client = make_client("https://meter:hunter2@vendor.example:8443",
                         transport=FlakyTransport(httpx.MockTransport(lambda r: httpx.Response(
                             200)), [refused() for _ in range(10)]))
    vendor = VendorClient("Acme", client, RateLimiter(clock), clock)

    async def main() -> None:
        try:
            await vendor.call("GET", "/v1/data", lambda r: r, params={"token": "s3cret"})
        finally:
            await client.aclose()

    with pytest.raises(UnavailableError) as info:
        asyncio.run(main())
    message = str(info.value)
    assert "Acme: cannot reach https://vendor.example:8443 (connection refused) for /v1/data" \
        in message
    for secret in ("hunter2", "meter:", "s3cret", "token"):
        assert secret not in message



def answering(clock: VirtualClock, *answers: httpx.Response,
              retry: RetryPolicy | None = None) -> tuple[VendorClient, list[float]]:
    """A client whose server gives ``answers`` in turn (then 200s); the times asked."""
    asked: list[float] = []
    queue = list(answers)

    def handler(request: httpx.Request) -> httpx.Response:
        asked.append(clock.now())
        return queue.pop(0) if queue else httpx.Response(200, json={"ok": True})

    client = make_client("https://vendor.example", transport=httpx.MockTransport(handler))
    return VendorClient("Acme", client, RateLimiter(clock), clock,
                        retry=retry or RetryPolicy()), asked


def ask(vendor: VendorClient, limits: list[tuple[Limit, str]] | None = None) -> Any:
    async def main() -> Any:
        try:
            return await vendor.call("GET", "/v1/data", lambda r: r.json(),
                                     limits=limits or [])
        finally:
            await vendor.client.aclose()

    return asyncio.run(main())


def test_a_503_with_retry_after_is_retried_only_after_the_wait_it_asks_for() -> None:
    clock = VirtualClock(0.0)
    vendor, asked = answering(clock, httpx.Response(503, headers={"Retry-After": "120"}),
                              httpx.Response(503, headers={"Retry-After": "300"}))
    assert ask(vendor, [(PER_ACCOUNT, "acct")]) == {"ok": True}
    slack = RetryPolicy().slack
    assert asked == [0.0, 120.0 + slack, 420.0 + 2 * slack]  # not the seconds of backoff
    assert vendor.retries == 2


def test_a_503s_wait_holds_the_other_calls_through_the_same_limits() -> None:
    clock = VirtualClock(0.0)
    vendor, asked = answering(clock, httpx.Response(503, headers={"Retry-After": "120"}))
    limits = [(PER_ACCOUNT, "acct")]

    async def later() -> Any:
        await clock.sleep(1)
        return await vendor.call("GET", "/v1/other", lambda r: r.json(), limits=limits)

    async def main() -> None:
        try:
            await asyncio.gather(vendor.call("GET", "/v1/data", lambda r: r.json(),
                                             limits=limits), later())
        finally:
            await vendor.client.aclose()

    asyncio.run(main())
    assert asked == [0.0, 120.0, 120.0 + RetryPolicy().slack]  # not at 1 s, into the 503


def test_a_retry_after_date_counts_from_the_servers_date_and_else_from_our_clock() -> None:
    date = "Wed, 15 Nov 2023 10:00:00 GMT"  # 1,700,042,400
    clock = VirtualClock(1_700_042_400.0 + 86400)  # our clock a day ahead of the server's
    vendor, asked = answering(
        clock, httpx.Response(503, headers={"Date": date,
                                            "Retry-After": "Wed, 15 Nov 2023 10:05:00 GMT"}))
    ask(vendor)
    assert asked[1] - asked[0] == 300 + RetryPolicy().slack
    clock = VirtualClock(1_700_042_400.0)
    vendor, asked = answering(  # no Date: from our clock
        clock, httpx.Response(429, headers={"Retry-After": "Wed, 15 Nov 2023 10:01:30 GMT"}))
    ask(vendor)
    assert asked[1] - asked[0] == 90 + RetryPolicy().slack


@pytest.mark.parametrize("status", [429, 503])
def test_a_wait_beyond_what_a_sync_waits_ends_the_call_at_once_and_says_so(status: int
                                                                             ) -> None:
    clock = VirtualClock(0.0)
    error = RateLimitedError if status == 429 else UnavailableError
    for header in ("86400", "Thu, 16 Nov 2023 00:00:00 GMT"):
        vendor, asked = answering(clock, httpx.Response(status, headers={
            "Retry-After": header, "Date": "Wed, 15 Nov 2023 00:00:00 GMT"}))
        with pytest.raises(error, match=rf"{'rate limited' if status == 429 else status}.*"
                                        r"asks to wait 86400 s, beyond the 3600 s a sync "
                                        r"waits for a server: the next sync tries again"
                           ) as info:
            ask(vendor)
        assert len(asked) == 1
        assert clock.now() == 0.0  # no day-long stall
        if status == 429:
            assert isinstance(info.value, RateLimitedError)
            assert info.value.retry_after == 86400
    # up to the policy's longest wait, the server is taken at its word
    vendor, asked = answering(clock, httpx.Response(status, headers={"Retry-After": "3600"}))
    assert ask(vendor) == {"ok": True}
    assert asked == [0.0, 3600.0 + RetryPolicy().slack]
    vendor, asked = answering(clock, httpx.Response(status, headers={"Retry-After": "300"}),
                              retry=RetryPolicy(longest_wait=60.0))
    with pytest.raises(error, match="asks to wait 300 s, beyond the 60 s"):
        ask(vendor)


def test_a_retry_after_that_is_no_number_or_date_is_ignored() -> None:
    clock = VirtualClock(0.0)
    vendor, asked = answering(clock, *[httpx.Response(503, headers={"Retry-After": value})
                                       for value in ("inf", "nan", "soon", "-5")])
    assert ask(vendor) == {"ok": True}
    assert len(asked) == 5
    assert clock.now() < 2 * RetryPolicy().base * 2 ** 4  # the backoff alone


def test_the_quota_is_what_the_vendors_last_answer_told() -> None:
    clock = VirtualClock(1_700_000_000.0)
    limit = {"X-RateLimit-Limit": "60", "X-RateLimit-Reset": "60"}
    vendor, _ = answering(clock, httpx.Response(200, json={"ok": 1},
                                                headers={**limit, "X-RateLimit-Remaining": "57"}))
    assert vendor.quota is None  # nothing said yet
    assert ask(vendor) == {"ok": 1}
    assert vendor.quota is not None
    assert vendor.quota.as_json() == {"as_of": "2023-11-14T22:13:20Z", "calls_left": 57,
                                      "calls_limit": 60, "window_seconds": 60.0,
                                      "wait_until": None}
    # a 429 without the headers: no calls left until the wait it asks for is over
    vendor, asked = answering(clock, httpx.Response(429, headers={"Retry-After": "90"}))
    seen: list[Any] = []

    async def main() -> Any:
        try:
            return await vendor.call("GET", "/v1/data", lambda r: seen.append(vendor.quota))
        finally:
            await vendor.client.aclose()

    asyncio.run(main())
    assert seen[0].calls_left == 0
    assert seen[0].wait_until == asked[0] + 90
    # the 200 after it says nothing of limits: the 429's word stands as the last told
    assert vendor.quota == seen[0]
    # an answer with no such header and no 429 tells nothing
    vendor, _ = answering(clock, httpx.Response(200, json={}))
    ask(vendor)
    assert vendor.quota is None

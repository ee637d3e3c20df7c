"""The login and the Overview page in a real chromium against a real `meterhub serve` on
loopback: what the page shows is what the API answers for the same question."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from meterhub.errors import AuthError, RateLimitedError
from meterhub.hub import Hub
from meterhub.mqtt import health
from meterhub.sync import quota_state
from tests.api.conftest import sample_frame
from tests.dashboard import site as served
from tests.dashboard.browser import Watched, screenshot

#: the configured source: T&D, whose last sync failed (nothing listens on port 9)
CONFIG = """[[source]]
name = "lab"
type = "tandd"
api_key = "k"
login_id = "l"
login_pass = "p"
base_url = "http://127.0.0.1:9"
"""
#: what T&D's last answer told of its limits, as a sync keeps it
QUOTA = {"as_of": "2024-10-29T00:00:05Z", "calls_left": 17, "calls_limit": 20,
         "window_seconds": 60.0, "wait_until": None}


@dataclass(frozen=True)
class Site(served.Site):
    now: dt.datetime  #: when the fresh source's readings were written


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """A store with the API fixture's old lab data (stale), a meter pushed a reading a
    minute up to a minute ago (fresh), and a configured source whose last sync failed."""
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)

    def fill(hub: Hub) -> None:
        hub.write(sample_frame(), source="lab")
        # one reading every ten minutes, the newest a minute old: fresh for 29 minutes
        hub.write([{"device": "p1", "channel": "power", "unit": "kW", "kind": "instant",
                    "ts": now - dt.timedelta(minutes=m), "value": 0.5} for m in (21, 11, 1)],
                  source="home")
        hub.store.record_sync("lab", "ws1", calls=2, readings=10)
        hub.store.record_sync("lab", "m1", error=AuthError("login refused"))
        hub.write(None, state={quota_state("lab"): json.dumps(QUOTA)})
        # a source locked out by its vendor's 429 until long after this test
        hub.store.record_sync("zen", "*", error=RateLimitedError("rate limited"))
        hub.write(None, state={quota_state("zen"): json.dumps(
            {**QUOTA, "calls_left": 0, "calls_limit": None, "window_seconds": None,
             "wait_until": "2099-01-01T00:00:00Z"})})
        # the MQTT links' health, as links keep it: one up, one whose process went quiet
        hub.write(None, state=health.report(
            client_id="meterhub", broker="broker.local:1883", connected=True,
            since=now - dt.timedelta(minutes=5), last_error="broker restarted", published=12,
            taken=7, rejected=1, now=now))
        hub.write(None, state=health.report(
            client_id="attic", broker="broker.local:1883", connected=False,
            since=dt.datetime(2024, 10, 1, tzinfo=dt.UTC), last_error="connection refused",
            published=0, taken=0, rejected=0, now=dt.datetime(2024, 10, 1, tzinfo=dt.UTC)))

    with served.serve(tmp_path_factory.mktemp("overview"), fill, CONFIG) as running:
        yield Site(running.base, running.key, running.store, now)


def log_in(page: Watched, site: Site, key: str) -> None:
    page.page.goto(f"{site.base}/")
    assert page.page.url == f"{site.base}/login?next=%2F"  # no session: the login first
    page.page.get_by_label("API key").fill(key)
    page.page.get_by_role("button", name="Log in").click()


def api(site: Site, path: str) -> Any:
    with site.client() as client:
        return client.get(path).raise_for_status().json()["data"]


def cells(page: Watched, row: str) -> dict[str, str]:
    return page.page.eval_on_selector(row, """row => Object.fromEntries(
        [...row.querySelectorAll('[data-field]')].map(c => [c.dataset.field, c.dataset.value]))""")


def test_the_overview_shows_what_the_api_answers(page: Watched, site: Site) -> None:
    log_in(page, site, site.key)
    page.page.wait_for_selector("body[data-ready=true]")
    assert page.page.url == f"{site.base}/"
    sources = {s["name"]: s for s in api(site, "/api/v1/sources")}
    assert set(sources) == {"lab", "home", "zen"}
    for name, answer in sources.items():
        shown = cells(page, f"tr[data-source={name}]")
        assert shown["stale"] == str(answer["stale"]).lower()
        assert shown["health"] == answer["health"]
        assert shown["newest_reading"] == (answer["newest_reading"] or "")
        assert shown["interval_seconds"] == ("" if answer["interval_seconds"] is None else str(
            answer["interval_seconds"]).removesuffix(".0"))
        if answer["lag_seconds"] is None:  # no readings, no lag
            assert shown["lag_seconds"] == ""
        else:
            assert abs(int(shown["lag_seconds"]) - answer["lag_seconds"]) <= 5
        assert shown["last_error"] == (answer["last_error"] or "")
        assert shown["calls_left"] == str((answer["quota"] or {}).get("calls_left", ""))
    # by hand: lab failed its last sync and its newest reading is from 2024: stale;
    # home's newest reading is a minute old, one every ten minutes: fresh
    assert cells(page, "tr[data-source=lab]")["stale"] == "true"
    assert cells(page, "tr[data-source=lab]")["last_error"] == "AuthError: login refused"
    assert cells(page, "tr[data-source=home]")["stale"] == "false"
    assert page.page.locator("tr[data-source=lab] .badge").inner_text() == "STALE"
    assert page.page.locator("tr[data-source=home] .badge").inner_text() == "fresh"
    # the calls T&D said were left, in words
    assert sources["lab"]["quota"] == QUOTA
    told = page.page.locator("tr[data-source=lab] [data-field=calls_left]")
    assert told.inner_text() == "17 of 20 per 60 s"
    assert told.get_attribute("title") == "as the vendor said at " + page.page.evaluate(
        "new Date('2024-10-29T00:00:05Z').toLocaleString()")
    assert page.page.locator("tr[data-source=zen] [data-field=calls_left]").inner_text() == \
        "none until " + page.page.evaluate("new Date('2099-01-01T00:00:00Z').toLocaleString()")
    # devices: their channels and newest reading, as /api/v1/channels has them
    devices = {d: cells(page, f"tr[data-device={d}]") for d in ("ws1", "m1", "p1")}
    assert devices["ws1"] == {"source": "lab", "channels": "1", "readings": "432",
                              "newest": "2024-10-28T23:50:00Z"}
    assert devices["m1"]["newest"] == "2024-10-28T23:45:00Z"
    newest = (site.now - dt.timedelta(minutes=1)).isoformat().replace("+00:00", "Z")
    assert devices["p1"] == {"source": "home", "channels": "1", "readings": "3",
                             "newest": newest}
    # the MQTT links, as /api/v1/mqtt answers: the quiet one's old word is no health
    links = {link["client_id"]: link for link in api(site, "/api/v1/mqtt")}
    assert [links["meterhub"]["silent"], links["attic"]["silent"]] == [False, True]
    for name, link in links.items():
        shown = cells(page, f"tr[data-link={name}]")
        assert shown == {"broker": "broker.local:1883",
                         "connected": str(link["connected"]).lower(),
                         "since": link["since"], "published": str(link["published"]),
                         "taken": str(link["taken"]), "rejected": str(link["rejected"]),
                         "last_error": link["last_error"]}
    assert page.page.locator("tr[data-link=meterhub] [data-field=connected]").inner_text() \
        == "connected"
    assert page.page.locator("tr[data-link=meterhub] [data-field=last_error]").inner_text() \
        == "", "an error of an earlier link, not shown while it is up"
    assert page.page.locator("tr[data-link=attic] [data-field=connected]").inner_text() == \
        "no word since " + page.page.evaluate("new Date('2024-10-01T00:00:00Z').toLocaleString()")
    assert page.page.locator("tr[data-link=attic] [data-field=last_error]").inner_text() == \
        "connection refused"
    totals = page.page.eval_on_selector_all(
        "[data-total]", "els => Object.fromEntries(els.map(e => [e.dataset.total, "
                        "e.querySelector('b').textContent]))")
    assert totals == {"sources": "3", "stale": "2", "devices": "3", "channels": "3",
                      "readings": f"{432 + 288 + 3:,}"}
    # the page read the API with its cookie alone: the key in no request it made
    assert all(site.key not in url for url in page.responses)
    assert all(site.key not in (r.request.headers.get("x-api-key") or "")
               + (r.request.headers.get("authorization") or "")
               for r in page.responses.values())
    assert page.problems() == []
    screenshot(page.page, "overview-1440")
    page.page.set_viewport_size({"width": 375, "height": 800})
    # at phone width nothing but the tables' own scrolling areas is wider than the screen
    assert page.page.evaluate("document.documentElement.scrollWidth") <= 375
    screenshot(page.page, "overview-375")


def test_the_session_cookie_is_out_of_the_pages_reach(page: Watched, site: Site) -> None:
    log_in(page, site, site.key)
    page.page.wait_for_selector("body[data-ready=true]")
    cookies = page.page.context.cookies()
    assert [(c["name"], c["httpOnly"], c["sameSite"]) for c in cookies] == [
        ("meterhub_session", True, "Strict")]
    assert "meterhub_session" not in page.page.evaluate("document.cookie")
    assert site.key not in page.page.content()
    # logging out ends it: the overview asks for the login again
    page.page.get_by_role("button", name="Log out").click()
    page.page.wait_for_url(f"{site.base}/login")
    page.page.goto(f"{site.base}/")
    assert page.page.url == f"{site.base}/login?next=%2F"


def test_a_bad_key_is_refused_on_the_login_page(page: Watched, site: Site) -> None:
    log_in(page, site, "mh_wrong_key")
    alert = page.page.get_by_role("alert")
    assert alert.inner_text() == "That key is unknown or revoked."
    assert page.page.url == f"{site.base}/login"
    assert page.page.context.cookies() == []
    assert page.failed == [f"401 POST {site.base}/login"]  # the refusal, nothing else
    screenshot(page.page, "login-refused")


def test_the_controls_are_reachable_by_keyboard(page: Watched, site: Site) -> None:
    page.page.goto(f"{site.base}/login")
    # focused at once (chromium applies autofocus in a task after the load event)
    page.page.wait_for_selector("#key:focus", timeout=5_000)
    page.page.keyboard.type(site.key)
    page.page.keyboard.press("Enter")
    page.page.wait_for_selector("body[data-ready=true]")
    names = []
    for _ in range(5):
        page.page.keyboard.press("Tab")
        names.append(page.page.evaluate("document.activeElement.textContent.trim()"))
    # the navigation, then the logout
    assert names == ["Overview", "Explore", "Energy", "Gaps", "Log out"]

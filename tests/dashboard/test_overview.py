"""The login and the Overview page in a real chromium against a real uvicorn on loopback:
what the page shows is what the API answers for the same question."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

import meterhub
from meterhub.api import create_app
from meterhub.config import parse
from meterhub.errors import AuthError
from meterhub.keys import new_key
from tests.api.conftest import sample_frame
from tests.api.live import served
from tests.dashboard.browser import Watched, screenshot


@dataclass
class Site:
    base: str
    key: str  #: read scope
    now: dt.datetime  #: when the fresh source's readings were written


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """A store with the API fixture's old lab data (stale), a meter pushed a reading a
    minute up to a minute ago (fresh), and a configured source whose last sync failed."""
    path: Path = tmp_path_factory.mktemp("overview") / "hub.duckdb"
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    with meterhub.open(f"duckdb:///{path}") as hub:
        hub.write(sample_frame(), source="lab")
        # one reading every ten minutes, the newest a minute old: fresh for 29 minutes
        hub.write([{"device": "p1", "channel": "power", "unit": "kW", "kind": "instant",
                    "ts": now - dt.timedelta(minutes=m), "value": 0.5} for m in (21, 11, 1)],
                  source="home")
        hub.store.record_sync("lab", "ws1", calls=2, readings=10)
        hub.store.record_sync("lab", "m1", error=AuthError("login refused"))
        record, key = new_key("viewer", "read")
        hub.store.add_key(record)
        settings = parse({"source": [
            {"name": "lab", "type": "tandd", "api_key": "k", "login_id": "l",
             "login_pass": "p", "base_url": "http://127.0.0.1:9"}]}, environ={})
        with served(create_app(hub, settings=settings, rate_limit="100000/minute")) as base:
            yield Site(base, key, now)


def log_in(page: Watched, site: Site, key: str) -> None:
    page.page.goto(f"{site.base}/")
    assert page.page.url == f"{site.base}/login?next=%2F"  # no session: the login first
    page.page.get_by_label("API key").fill(key)
    page.page.get_by_role("button", name="Log in").click()


def api(site: Site, path: str) -> Any:
    with httpx.Client(base_url=site.base, headers={"X-API-Key": site.key}) as client:
        return client.get(path).raise_for_status().json()["data"]


def cells(page: Watched, row: str) -> dict[str, str]:
    return page.page.eval_on_selector(row, """row => Object.fromEntries(
        [...row.querySelectorAll('[data-field]')].map(c => [c.dataset.field, c.dataset.value]))""")


def test_the_overview_shows_what_the_api_answers(page: Watched, site: Site) -> None:
    log_in(page, site, site.key)
    page.page.wait_for_selector("body[data-ready=true]")
    assert page.page.url == f"{site.base}/"
    sources = {s["name"]: s for s in api(site, "/api/v1/sources")}
    assert set(sources) == {"lab", "home"}
    for name, answer in sources.items():
        shown = cells(page, f"tr[data-source={name}]")
        assert shown["stale"] == str(answer["stale"]).lower()
        assert shown["health"] == answer["health"]
        assert shown["newest_reading"] == answer["newest_reading"]
        assert shown["interval_seconds"] == str(answer["interval_seconds"]).removesuffix(".0")
        assert abs(int(shown["lag_seconds"]) - answer["lag_seconds"]) <= 5
        assert shown["last_error"] == (answer["last_error"] or "")
    # by hand: lab failed its last sync and its newest reading is from 2024: stale;
    # home's newest reading is a minute old, one every ten minutes: fresh
    assert cells(page, "tr[data-source=lab]")["stale"] == "true"
    assert cells(page, "tr[data-source=lab]")["last_error"] == "AuthError: login refused"
    assert cells(page, "tr[data-source=home]")["stale"] == "false"
    assert page.page.locator("tr[data-source=lab] .badge").inner_text() == "STALE"
    assert page.page.locator("tr[data-source=home] .badge").inner_text() == "fresh"
    # devices: their channels and newest reading, as /api/v1/channels has them
    devices = {d: cells(page, f"tr[data-device={d}]") for d in ("ws1", "m1", "p1")}
    assert devices["ws1"] == {"source": "lab", "channels": "1", "readings": "432",
                              "newest": "2024-10-28T23:50:00Z"}
    assert devices["m1"]["newest"] == "2024-10-28T23:45:00Z"
    newest = (site.now - dt.timedelta(minutes=1)).isoformat().replace("+00:00", "Z")
    assert devices["p1"] == {"source": "home", "channels": "1", "readings": "3",
                             "newest": newest}
    totals = page.page.eval_on_selector_all(
        "[data-total]", "els => Object.fromEntries(els.map(e => [e.dataset.total, "
                        "e.querySelector('b').textContent]))")
    assert totals == {"sources": "2", "stale": "1", "devices": "3", "channels": "3",
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
    assert page.page.evaluate("document.activeElement.id") == "key"  # focused at once
    page.page.keyboard.type(site.key)
    page.page.keyboard.press("Enter")
    page.page.wait_for_selector("body[data-ready=true]")
    names = []
    for _ in range(3):
        page.page.keyboard.press("Tab")
        names.append(page.page.evaluate("document.activeElement.textContent.trim()"))
    assert names == ["Overview", "Gaps", "Log out"]  # the navigation, then the logout

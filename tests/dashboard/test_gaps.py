"""The Gaps page in a real chromium against a real `meterhub serve`: per channel, the missing
intervals and seq jumps the API answers for the range in the URL, drawn on a timeline;
bad input in a shared URL is a message on the page."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest

from meterhub.hub import Hub
from tests.dashboard.browser import Watched, log_in, screenshot
from tests.dashboard.site import Site, serve

DAY = dt.datetime(2024, 10, 26, tzinfo=dt.UTC)


def readings() -> list[dict[str, Any]]:
    """gw1/t every 10 minutes on 26 October 2024 (UTC), but for 02:00 and 02:10 (two
    missing) and 12:00 (one); its seq counts each reading sent, so those three are seq
    jumps too, and it jumps by four at 18:00 (three sent and lost, the times kept);
    ws1/t the same with nothing missing."""
    rows, seq = [], 0
    for step in range(144):
        at = DAY + dt.timedelta(minutes=10 * step)
        seq += 4 if at.hour == 18 and at.minute == 0 else 1
        for device in ("gw1", "ws1"):
            if device == "gw1" and (at.hour, at.minute) in ((2, 0), (2, 10), (12, 0)):
                continue
            rows.append({"device": device, "channel": "t", "ts": at, "value": 20.0,
                         "unit": "degC", "kind": "instant",
                         "seq": seq if device == "gw1" else step + 1})
    return rows


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    def fill(hub: Hub) -> None:
        hub.write(readings(), source="lab")

    with serve(tmp_path_factory.mktemp("gaps"), fill) as running:
        yield running


def api_gaps(site: Site, query: str) -> list[dict[str, Any]]:
    with site.client() as client:
        data: list[dict[str, Any]] = client.get(f"/api/v1/gaps?{query}").raise_for_status(
        ).json()["data"]
        return data


def shown(page: Watched, channel: str) -> dict[str, int]:
    values = page.page.eval_on_selector(f"tr[data-channel='{channel}']", """row =>
        Object.fromEntries([...row.querySelectorAll('[data-field]')].map(
            c => [c.dataset.field, c.dataset.value]))""")
    return {name: int(value) for name, value in values.items()}


def counted(gaps: list[dict[str, Any]], device: str) -> dict[str, int]:
    mine = [g for g in gaps if g["device"] == device]
    return {"intervals": sum(g["kind"] == "interval" for g in mine),
            "seq": sum(g["kind"] == "seq" for g in mine),
            "missing": sum(g["missing"] for g in mine)}


def test_the_gaps_of_every_channel_as_the_api_has_them(page: Watched, site: Site) -> None:
    log_in(page.page, site.base, site.key, "/gaps")
    page.page.wait_for_selector("body[data-ready=true]")
    # by hand: intervals 02:00-02:20 (2 missing) and 12:00-12:10 (1); seq jumps at 02:20
    # (2 lost), 12:10 (1) and 18:00 (3)
    assert shown(page, "gw1/t") == {"intervals": 2, "seq": 3, "missing": 9}
    assert shown(page, "ws1/t") == {"intervals": 0, "seq": 0, "missing": 0}
    everything = api_gaps(site, "")
    assert shown(page, "gw1/t") == counted(everything, "gw1")
    # drawn: the day as a bar, and a mark for each gap
    marks = page.page.locator("tr[data-channel='gw1/t'] svg rect")
    assert [marks.nth(i).get_attribute("class") for i in range(marks.count())] == [
        "span", "seq", "interval", "seq", "interval", "seq"]  # by start: a jump's is the
    # reading before it, an interval's the first time missing
    assert page.page.locator("[data-total=gaps]").inner_text() == "5 gaps, 9 readings missing"
    # the timeline's ends: the channel's first and last reading, in the browser's zone
    ends = page.page.locator("tr[data-channel='gw1/t'] .ends span").all_inner_texts()
    assert ends == page.page.evaluate(
        "['2024-10-26T00:00:00Z', '2024-10-26T23:50:00Z'].map(t => new Date(t)"
        ".toLocaleString())")
    assert page.problems() == []
    screenshot(page.page, "gaps-1440")
    page.page.set_viewport_size({"width": 375, "height": 800})
    assert page.page.evaluate("document.documentElement.scrollWidth") <= 375
    screenshot(page.page, "gaps-375")


def test_the_url_holds_the_choice(page: Watched, site: Site) -> None:
    log_in(page.page, site.base, site.key, "/gaps")
    page.page.wait_for_selector("body[data-ready=true]")
    page.page.get_by_label("Device").select_option("gw1")
    page.page.get_by_label("From").fill("2024-10-26T10:00:00Z")
    page.page.get_by_role("button", name="Show").click()
    page.page.wait_for_url("**/gaps?device=gw1&start=2024-10-26T10%3A00%3A00Z&end=")
    page.page.wait_for_selector("body[data-ready=true]")
    # from 10:00: the 12:00 gap (1) and the seq jumps at 12:10 (1) and 18:00 (3) only;
    # ws1 is not chosen
    assert shown(page, "gw1/t") == {"intervals": 1, "seq": 2, "missing": 5}
    assert shown(page, "gw1/t") == counted(
        api_gaps(site, "device=gw1&start=2024-10-26T10:00:00Z"), "gw1")
    assert page.page.locator("tr[data-channel='ws1/t']").count() == 0
    page.page.go_back()  # the whole state was the URL: back is the full view again
    page.page.wait_for_selector("tr[data-channel='ws1/t']")
    assert shown(page, "gw1/t")["missing"] == 9


@pytest.mark.parametrize(("query", "words"), [
    ("device=nope", "nope"), ("start=yesterday-ish", "yesterday-ish"),
    ("start=2024-10-27&end=2024-10-26", "end"),
])
def test_a_bad_shared_url_is_a_message_on_the_page(page: Watched, site: Site, query: str,
                                                   words: str) -> None:
    log_in(page.page, site.base, site.key, f"/gaps?{query}")
    page.page.wait_for_selector("body[data-ready=error]")
    alert = page.page.get_by_role("alert").inner_text()
    assert alert.startswith("Could not show these gaps: ")
    assert words in alert
    assert page.page.get_by_label("Device").count() == 1  # the controls stay, to fix it
    screenshot(page.page, f"gaps-bad-{query}")

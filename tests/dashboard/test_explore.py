"""The Explore page in a real chromium against a real `meterhub serve`: what it draws equals
what the API answers for the same question (points, first and last values, sensor errors,
gaps), for presets, a zoom, a unit and a time zone; the URL holds the state; exports load in
pandas; sensor errors and gaps are breaks in the line, never zeros; a bad shared URL is a
message on the page."""

from __future__ import annotations

import io
import itertools
import math
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from meterhub.hub import Hub
from tests.dashboard.browser import Watched, log_in, screenshot
from tests.dashboard.site import Site, serve

START = pd.Timestamp("2024-01-01", tz="UTC")
DAYS = 90  #: ws1/temp every 10 minutes from START: its newest reading is 2024-03-30 23:50
NEWEST = pd.Timestamp("2024-03-30T23:50:00Z")
#: removed from ws1/temp: three whole hours (a gap at any bucket size up to 1h) ...
HOLE = (pd.Timestamp("2024-03-20T06:00Z"), pd.Timestamp("2024-03-20T09:00Z"))
#: ... and four readings of its last day (a gap among raw readings)
SHORT_HOLE = (pd.Timestamp("2024-03-30T18:00Z"), pd.Timestamp("2024-03-30T18:40Z"))
#: sensor errors: a whole hour of them, and two beside good readings in the last day
ERROR_HOUR = pd.Timestamp("2024-03-29T12:00Z")
LAST_DAY_ERRORS = [pd.Timestamp("2024-03-30T12:00Z"), pd.Timestamp("2024-03-30T12:10Z")]
TEMP = "lab/ws1/temp"
ENERGY = "lab/m1/energy"
ROOF = "roof/ws2/temp"


def fill(hub: Hub) -> None:
    ts = pd.date_range(START, periods=DAYS * 144, freq="10min")
    temp = pd.DataFrame({"device": "ws1", "channel": "temp", "ts": ts,
                         "value": 10 + 5 * np.sin(np.arange(len(ts)) / 144 * 2 * np.pi),
                         "unit": "degC", "kind": "instant", "quality": "ok"})
    temp = temp[~((temp.ts >= HOLE[0]) & (temp.ts < HOLE[1]))
                & ~((temp.ts >= SHORT_HOLE[0]) & (temp.ts < SHORT_HOLE[1]))]
    errors = ((temp.ts >= ERROR_HOUR) & (temp.ts < ERROR_HOUR + pd.Timedelta("1h"))
              ) | temp.ts.isin(LAST_DAY_ERRORS)
    temp.loc[errors, "quality"] = "sensor_error"
    temp.loc[errors, "value"] = None
    hub.write(temp, source="lab")
    hours = pd.date_range(START, periods=DAYS * 24, freq="1h")
    hub.write(pd.DataFrame({"device": "ws1", "channel": "rh", "ts": hours,
                            "value": 50 + 10 * np.cos(np.arange(len(hours)) / 24),
                            "unit": "%", "kind": "instant"}), source="lab")
    quarters = pd.date_range(START, periods=DAYS * 96, freq="15min")
    steps = np.where(np.arange(len(quarters)) % 96 < 32, 0.05, 0.3)  # nights use less
    hub.write(pd.DataFrame({"device": "m1", "channel": "energy", "ts": quarters,
                            "value": 1000 + np.cumsum(steps), "unit": "kWh",
                            "kind": "counter"}), source="lab")
    hub.write(pd.DataFrame({"device": "ws2", "channel": "temp", "ts": hours,
                            "value": 5 + np.arange(len(hours)) % 7, "unit": "degC",
                            "kind": "instant"}), source="roof")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    folder: Path = tmp_path_factory.mktemp("explore")
    with serve(folder, fill) as running:
        yield running


def iso(stamp: pd.Timestamp) -> str:
    return stamp.strftime("%Y-%m-%dT%H:%M:%S") + (
        f".{stamp.microsecond // 1000:03d}" if stamp.microsecond else "") + "Z"


def open_explore(page: Watched, site: Site, query: str) -> None:
    log_in(page.page, site.base, site.key, f"/explore?{query}")
    page.page.wait_for_selector("body[data-ready=true]")


def drawn(page: Watched) -> dict[str, dict[str, str]]:
    """Per series (source/device/channel): the table's numbers as data, as the page has
    them."""
    result: dict[str, dict[str, str]] = page.page.eval_on_selector_all(
        "#series tbody tr", """rows => Object.fromEntries(rows.map(row => [
            decodeURIComponent(row.dataset.series),
            Object.fromEntries([...row.querySelectorAll('[data-field]')].map(
                c => [c.dataset.field, c.dataset.value]))]))""")
    return result


def chart(page: Watched) -> dict[str, str]:
    attrs: dict[str, str] = page.page.eval_on_selector(
        "#chart", "c => ({bucket: c.dataset.bucket, start: c.dataset.start, "
                  "end: c.dataset.end, tz: c.dataset.tz})")
    return attrs


def parts(key: str) -> dict[str, str]:
    source, device, channel = key.split("/")
    return {"source": source, "device": device, "channel": channel}


def api_buckets(site: Site, key: str, question: dict[str, str], fn: str,
                **extra: str) -> dict[str, Any]:
    """What the page should show for one series, from /api/v1/aggregates: its points (the
    buckets with a value), first and last value, sensor errors, and gaps (buckets that are
    not there between two that are)."""
    fns = ["mean", "min", "max"] if fn == "mean" else [fn]  # the band's too
    params: dict[str, Any] = {**parts(key), "every": question["bucket"],
                              "tz": question["tz"], "fn": [*fns, "errors"], **extra}
    params.update({k: question[k] for k in ("start", "end") if question[k]})
    with site.client() as client:
        rows = client.get("/api/v1/aggregates", params=params).raise_for_status().json()["data"]
    values = [r[fn] for r in rows if r[fn] is not None]
    gaps = sum(pd.Timestamp(a["bucket_end"]) < pd.Timestamp(b["bucket"])
               for a, b in itertools.pairwise(rows))
    return {"points": len(values), "first": values[0], "last": values[-1],
            "errors": sum(r["errors"] for r in rows), "gaps": gaps,
            "unit": rows[0]["unit"], "rows": rows}


def api_readings(site: Site, key: str, question: dict[str, str],
                 **extra: str) -> dict[str, Any]:
    """What the page should show for a series drawn raw: /api/v1/readings and the interval
    gaps /api/v1/gaps finds."""
    params = {**parts(key), "tz": question["tz"], "start": question["start"],
              "end": question["end"], "limit": "100000", **extra}
    with site.client() as client:
        rows = client.get("/api/v1/readings", params=params).raise_for_status().json()["data"]
        gaps = client.get("/api/v1/gaps", params={k: v for k, v in params.items()
                                                  if k not in ("limit", "unit")}
                          ).raise_for_status().json()["data"]
    values = [r["value"] for r in rows if r["value"] is not None]
    return {"points": len(values), "first": values[0], "last": values[-1],
            "errors": sum(r["quality"] == "sensor_error" for r in rows),
            "gaps": sum(g["kind"] == "interval" for g in gaps), "unit": rows[0]["unit"],
            "rows": rows}


def same(shown: dict[str, str], expected: dict[str, Any]) -> None:
    assert int(shown["points"]) == expected["points"]
    assert float(shown["first"]) == expected["first"]
    assert float(shown["last"]) == expected["last"]
    assert int(shown["errors"]) == expected["errors"]
    assert int(shown["gaps"]) == expected["gaps"]
    assert shown["unit"] == expected["unit"]


def plotted(page: Watched) -> list[list[float | str | None]]:
    """The arrays uPlot draws (x in unix seconds, then each drawn series; "skip" where a
    series has no point at that x, null where its line breaks)."""
    data: list[list[float | str | None]] = page.page.evaluate(
        "document.getElementById('chart').uplot.data.map(a => Array.from(a, "
        "v => v === undefined ? 'skip' : v))")
    return data


def at(data: list[list[Any]], series: int, stamp: pd.Timestamp) -> Any:
    return data[series][data[0].index(stamp.timestamp())]


def numbers(data: list[list[Any]], series: int) -> list[float]:
    """A drawn series' values: neither skipped nor a break."""
    return [v for v in data[series] if isinstance(v, float | int)]


def test_30_days_of_an_instant_channel_are_hourly_means_with_a_band(
        page: Watched, site: Site) -> None:
    open_explore(page, site, f"ch={TEMP}&range=30d&tz=UTC")
    question = chart(page)
    # 30 days in 15 min buckets would be 2,880 points: hours then (720); the range ends at
    # the newest reading (kept: the end is exclusive) and starts 30 days before
    assert question["bucket"] == "1h"
    assert question["end"] == iso(NEWEST + pd.Timedelta("1ms"))
    assert question["start"] == iso(NEWEST + pd.Timedelta("1ms") - pd.Timedelta("30D"))
    shown = drawn(page)[TEMP]
    expected = api_buckets(site, TEMP, question, "mean")
    same(shown, expected)
    # by hand: the hole of three hours is one gap; the hour of errors and the two beside
    # good readings are 8 sensor errors; 720 hours less the 3 missing less the error hour
    assert (int(shown["gaps"]), int(shown["errors"])) == (1, 8)
    assert int(shown["points"]) == 720 - 3 - 1
    # drawn as uPlot has it: mean, min, max; a break (null), never 0, at the gap and at
    # the hour of errors only; the band's edges are the API's min and max
    data = plotted(page)
    assert len(data) == 4
    drawn_means = numbers(data, 1)
    assert (len(drawn_means), drawn_means[0], drawn_means[-1]) == (
        expected["points"], expected["first"], expected["last"])
    means = [v for v in data[1] if v != "skip"]
    assert means.count(None) == 2
    assert at(data, 1, HOLE[0]) is None
    assert at(data, 1, ERROR_HOUR) is None
    assert 0 not in means
    bucketed = {pd.Timestamp(r["bucket"]).timestamp(): r for r in expected["rows"]}
    assert [(x, data[2][i], data[3][i]) for i, x in enumerate(data[0]) if x in bucketed] == [
        (x, r["min"], r["max"]) for x, r in sorted(bucketed.items())]
    assert page.page.locator("#chart canvas").count() == 1
    assert page.problems() == []
    screenshot(page.page, "explore-1440")
    page.page.set_viewport_size({"width": 375, "height": 800})
    page.page.wait_for_timeout(250)  # the chart follows the width
    assert page.page.evaluate("document.documentElement.scrollWidth") <= 375
    assert page.page.eval_on_selector("#chart canvas", "c => c.getBoundingClientRect().right"
                                      ) <= 375
    screenshot(page.page, "explore-375")


def test_24_hours_are_raw_readings_with_errors_and_gaps_as_breaks(
        page: Watched, site: Site) -> None:
    open_explore(page, site, f"ch={TEMP}&range=24h&tz=UTC")
    question = chart(page)
    assert question["bucket"] == "raw"  # 144 readings at most: fewer than 2,000
    shown = drawn(page)[TEMP]
    same(shown, api_readings(site, TEMP, question))
    # by hand: 144 ten-minute slots, 4 missing (one gap), 2 of them sensor errors
    assert (int(shown["points"]), int(shown["errors"]), int(shown["gaps"])) == (138, 2, 1)
    data = plotted(page)
    assert len(data) == 2
    values = numbers(data, 1)
    assert (len(values), values[0], values[-1]) == (
        int(shown["points"]), float(shown["first"]), float(shown["last"]))
    assert [at(data, 1, t) for t in LAST_DAY_ERRORS] == [None, None]
    assert at(data, 1, SHORT_HOLE[0]) is None  # the gap's first missing time breaks it
    assert [v for v in data[1] if v != "skip"].count(None) == 3
    assert "The last 24 hours of data" in page.page.locator("#anchor").inner_text()
    assert page.problems() == []
    screenshot(page.page, "explore-24h-raw-1440")


def test_a_preset_change_and_a_time_zone_are_in_the_url_and_back_works(
        page: Watched, site: Site) -> None:
    open_explore(page, site, f"ch={TEMP}&range=24h&tz=UTC")
    page.page.get_by_label("Range").select_option("1y")
    page.page.wait_for_url("**range=1y**")
    page.page.wait_for_selector("body[data-ready=true]")
    question = chart(page)
    assert question["bucket"] == "1d"  # a year of hours is 8,760: days then
    same(drawn(page)[TEMP], api_buckets(site, TEMP, question, "mean"))
    page.page.get_by_label("Time zone").select_option("Europe/Amsterdam")
    page.page.wait_for_url("**tz=Europe%2FAmsterdam**")
    page.page.wait_for_selector("body[data-ready=true]")
    question = chart(page)
    assert question["tz"] == "Europe/Amsterdam"
    expected = api_buckets(site, TEMP, question, "mean")
    # days from Amsterdam's midnight: other means than UTC's
    assert expected["rows"][0]["bucket"].endswith("+01:00")
    same(drawn(page)[TEMP], expected)
    page.page.go_back()
    page.page.wait_for_selector("body[data-ready=true]")
    assert chart(page)["tz"] == "UTC"
    assert page.page.get_by_label("Time zone").input_value() == "UTC"
    page.page.go_back()
    page.page.wait_for_selector("body[data-ready=true]")
    assert chart(page)["bucket"] == "raw"
    assert page.page.get_by_label("Range").input_value() == "24h"
    # all: no bounds asked; 90 days of data in hours would be 2,160 points: days
    page.page.get_by_label("Range").select_option("all")
    page.page.wait_for_url("**range=all**")
    page.page.wait_for_selector("body[data-ready=true]")
    question = chart(page)
    assert (question["bucket"], question["start"], question["end"]) == ("1d", "", "")
    same(drawn(page)[TEMP], api_buckets(site, TEMP, question, "mean"))
    assert int(drawn(page)[TEMP]["points"]) == DAYS
    assert page.problems() == []


def test_channels_of_two_quantities_get_two_axes_units_and_consumption_bars(
        page: Watched, site: Site) -> None:
    open_explore(page, site, f"ch={TEMP}&ch={ENERGY}&range=7d&tz=UTC&unit.temperature=degF")
    question = chart(page)
    # a counter is drawn as consumption per bucket, so no raw readings: 672 quarter-hours
    assert question["bucket"] == "15min"
    shown = drawn(page)
    same(shown[TEMP], api_buckets(site, TEMP, question, "mean", unit="degF"))
    energy = api_buckets(site, ENERGY, question, "consumption")
    same(shown[ENERGY], energy)
    assert shown[TEMP]["unit"] == "°F"
    # by hand: a quarter-hour uses 0.05 or 0.3 kWh
    assert {round(r["consumption"], 6) for r in energy["rows"]} <= {0.05, 0.3}
    assert page.page.locator(".u-axis").count() == 3  # time, °F, kWh
    # uPlot draws the axes' labels on its canvas: read them from the chart
    labels = page.page.evaluate(
        "document.getElementById('chart').uplot.axes.slice(1).map(a => [a.scale, a.label])")
    assert labels == [["temperature", "temperature (°F)"], ["energy", "energy (kWh)"]]
    assert page.page.get_by_label("Unit for temperature").input_value() == "degF"
    # another unit through the field: in the URL, and the API's conversion shown
    page.page.get_by_label("Unit for temperature").fill("K")
    page.page.get_by_label("Unit for temperature").press("Enter")
    page.page.wait_for_url("**unit.temperature=K**")
    page.page.wait_for_selector("body[data-ready=true]")
    same(drawn(page)[TEMP], api_buckets(site, TEMP, chart(page), "mean", unit="K"))
    assert page.problems() == []
    screenshot(page.page, "explore-two-axes-1440")


def test_dragging_over_the_chart_zooms_into_finer_buckets(page: Watched, site: Site) -> None:
    open_explore(page, site, f"ch={TEMP}&ch={ENERGY}&range=30d&tz=UTC")
    assert chart(page)["bucket"] == "1h"
    over = page.page.locator("#chart .u-over").bounding_box()
    assert over is not None
    y = over["y"] + over["height"] / 2
    page.page.mouse.move(over["x"] + over["width"] * 0.4, y)
    page.page.mouse.down()
    page.page.mouse.move(over["x"] + over["width"] * 0.6, y, steps=8)
    page.page.mouse.up()
    page.page.wait_for_url("**range=custom**")
    page.page.wait_for_selector("body[data-ready=true]")
    question = chart(page)
    query = urllib.parse.parse_qs(urllib.parse.urlparse(page.page.url).query)
    assert (query["start"], query["end"]) == ([question["start"]], [question["end"]])
    length = pd.Timestamp(question["end"]) - pd.Timestamp(question["start"])
    assert pd.Timedelta("5D") < length < pd.Timedelta("7D")  # a fifth of 30 days
    assert question["bucket"] == "15min"
    shown = drawn(page)
    same(shown[TEMP], api_buckets(site, TEMP, question, "mean"))
    same(shown[ENERGY], api_buckets(site, ENERGY, question, "consumption"))
    assert page.page.get_by_label("Range").input_value() == "custom"
    page.page.go_back()  # the zoom was a step in the history
    page.page.wait_for_selector("body[data-ready=true]")
    assert chart(page)["bucket"] == "1h"
    assert page.problems() == []


def test_a_custom_range_from_the_fields(page: Watched, site: Site) -> None:
    open_explore(page, site, f"ch={TEMP}&range=7d&tz=UTC")
    page.page.get_by_label("Range").select_option("custom")
    page.page.get_by_label("From").fill("2024-03-20T00:00")
    page.page.get_by_label("To").fill("2024-03-21T00:00")
    page.page.get_by_role("button", name="Apply range").click()
    page.page.wait_for_url("**range=custom**")
    page.page.wait_for_selector("body[data-ready=true]")
    question = chart(page)
    assert (question["start"], question["end"]) == ("2024-03-20T00:00", "2024-03-21T00:00")
    assert question["bucket"] == "raw"
    shown = drawn(page)[TEMP]
    same(shown, api_readings(site, TEMP, question))
    assert (int(shown["points"]), int(shown["gaps"])) == (144 - 18, 1)  # by hand


def test_exports_download_the_selection_as_csv_and_parquet(page: Watched,
                                                           site: Site) -> None:
    open_explore(page, site, f"ch={TEMP}&range=24h&tz=UTC&unit.temperature=degF")
    question = chart(page)
    expected = pd.DataFrame(api_readings(site, TEMP, question, unit="degF")["rows"])
    for name in ("CSV", "Parquet"):
        with page.page.expect_download() as info:
            page.page.locator(".exports").get_by_role("link", name=name).click()
        path = info.value.path()
        got = pd.read_csv(path) if name == "CSV" else pd.read_parquet(path)
        assert len(got) == len(expected) == 140  # with the two sensor errors
        assert list(pd.to_datetime(got["ts"], utc=True)) == list(
            pd.to_datetime(expected["ts"], utc=True))
        assert got["value"].tolist() == pytest.approx(expected["value"].tolist(),
                                                      nan_ok=True)
        assert (got["quality"] == "sensor_error").sum() == 2
        assert set(got["unit"]) == {"°F"}
        assert math.isnan(got["value"][got["quality"] == "sensor_error"].iloc[0])
    # each channel's own export too, from the table
    with page.page.expect_download() as info:
        page.page.locator(f"tr[data-series='{TEMP}']").get_by_role("link", name="CSV").click()
    assert len(pd.read_csv(io.BytesIO(Path(info.value.path()).read_bytes()))) == 140


def test_the_list_is_searchable_grouped_labelled_and_keyboard_reachable(
        page: Watched, site: Site) -> None:
    open_explore(page, site, f"ch={TEMP}&range=30d&tz=UTC")
    groups = page.page.locator(".channels [role=group].device")
    assert groups.evaluate_all("gs => gs.map(g => g.getAttribute('aria-label'))") == [
        "lab / m1", "lab / ws1", "roof / ws2"]
    page.page.get_by_label("Search channels").fill("roof")
    visible = page.page.locator(".channel:visible input")
    assert visible.evaluate_all("xs => xs.map(x => decodeURIComponent(x.value))") == [ROOF]
    # from the search field, the keyboard reaches the channel and picks it
    page.page.get_by_label("Search channels").press("Tab")
    assert page.page.evaluate("decodeURIComponent(document.activeElement.value)") == ROOF
    page.page.keyboard.press("Space")
    page.page.wait_for_url(f"**ch={urllib.parse.quote(ROOF, safe='')}**")
    page.page.wait_for_selector("body[data-ready=true]")
    assert set(drawn(page)) == {TEMP, ROOF}
    # every control has a label and Tab reaches it
    for name in ("Range", "From", "To", "Time zone", "Unit for temperature"):
        assert page.page.get_by_label(name, exact=True).count() == 1
    reached = set()
    page.page.get_by_label("Search channels").focus()
    for _ in range(30):
        page.page.keyboard.press("Tab")
        reached.add(page.page.evaluate("document.activeElement.id"))
    assert {"range", "start", "end", "tz", "unit-temperature"} <= reached
    page.page.set_viewport_size({"width": 375, "height": 800})
    page.page.wait_for_timeout(250)
    assert page.page.evaluate("document.documentElement.scrollWidth") <= 375
    assert page.problems() == []


BAD_URLS = [
    ("ch=lab/nope/temp", "no such channel: lab/nope/temp"),
    ("ch=lab/%25/t%", "no such channel: lab/%/t%"),  # "t%" is no valid escape: as sent
    (f"ch={TEMP}&range=fortnight", 'unknown range "fortnight"'),
    (f"ch={TEMP}&range=custom&start=yesterday-ish&end=2024-03-02", "cannot read start"),
    (f"ch={TEMP}&range=custom&start=2024-03-02&end=2024-03-01", "is not after start"),
    (f"ch={TEMP}&range=custom&start=2024-03-02", "needs both From and To"),
    (f"ch={TEMP}&unit.temperature=parsec", "cannot convert"),
    (f"ch={TEMP}&tz=Mars/Olympus", "unknown time zone"),
]


def test_a_bad_shared_url_is_a_message_on_the_page(page: Watched, site: Site) -> None:
    log_in(page.page, site.base, site.key, f"/explore?ch={TEMP}")  # one login for all
    page.page.wait_for_selector("body[data-ready=true]")
    for query, words in BAD_URLS:
        page.page.goto(f"{site.base}/explore?{query}")
        page.page.wait_for_selector("body[data-ready=error]")
        alert = page.page.get_by_role("alert").inner_text()
        assert alert.startswith("Could not show this: "), query
        assert words in alert, query
        # the controls stay, to fix it
        assert page.page.get_by_label("Range").count() == 1, query
        assert page.page.get_by_label("Search channels").count() == 1, query
        screenshot(page.page, f"explore-bad-{query}")
    # the API's refusals are answers (400), never a script's error
    assert not [p for p in page.problems()
                if "uncaught" in p or ("console" in p and "400" not in p)]


def test_without_a_choice_the_first_channel_is_drawn(page: Watched, site: Site) -> None:
    open_explore(page, site, "")
    query = urllib.parse.parse_qs(urllib.parse.urlparse(page.page.url).query)
    assert query["ch"] == [ENERGY]  # the catalog's first, named in the URL
    assert query["range"] == ["7d"]
    assert list(drawn(page)) == [ENERGY]
    page.page.locator(f"input[data-ch='{ENERGY}']").uncheck()
    page.page.wait_for_selector("body[data-ready=true]")
    assert "Pick one or more channels" in page.page.locator("#result").inner_text()
    page.page.reload()  # "none chosen" is a state of its own, kept in the URL
    page.page.wait_for_selector("body[data-ready=true]")
    assert page.page.locator("#series").count() == 0

"""The Energy page in a real chromium against a real `meterhub serve` over a store with a
DSMR meter with contracts and two other meters: what the page shows equals what the API
answers for the same question (v2 statistics, /api/v1/energy, /api/v1/aggregates), and a
few numbers worked out by hand; the live power follows a pushed telegram without a
reload; a bad shared URL is a message on the page.

The meter's registers rise by the same step every 15 minutes (readings at :00, :15, :30,
:45 UTC), so by DSMR-reader's rules (a reading at 10:00:00 makes the minute row of 10:01):
an hour holds 4 rows, its rise 3 steps; a day of 25 hours 100 rows, its rise 99 steps.
"""

from __future__ import annotations

import datetime as dt
import gzip
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pyarrow as pa
import pytest

from meterhub.dsmr.fields import FIELD_OF
from meterhub.hub import Hub
from meterhub.keys import new_key
from tests.dashboard.browser import Watched, log_in, screenshot
from tests.dashboard.site import Site, serve
from tests.dsmr.telegrams import p1_stamp, v5

TZ = "Europe/Amsterdam"
T0 = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
STEP = dt.timedelta(minutes=15)
#: per 15 minutes: kWh of each register, m³ of gas
RISES = {"electricity_delivered_1": 0.010, "electricity_delivered_2": 0.020,
         "electricity_returned_1": 0.001, "electricity_returned_2": 0.004,
         "extra_device_delivered": 0.005}
BASES = {"electricity_delivered_1": 1000.0, "electricity_delivered_2": 2000.0,
         "electricity_returned_1": 100.0, "electricity_returned_2": 200.0,
         "extra_device_delivered": 500.0}
CONFIG = f"""[dsmr]
device = "p1"
timezone = "{TZ}"

[[dsmr.prices]]
start = 2024-10-01
end = 2024-10-31
description = "October 2024"
electricity_delivered_1_price = "0.20"
electricity_delivered_2_price = "0.25"
electricity_returned_1_price = "0.10"
electricity_returned_2_price = "0.12"
gas_price = "1.20"
fixed_daily_cost = "0.50"

[[dsmr.prices]]
start = 2024-11-01
end = 2099-12-31
description = "since"
electricity_delivered_1_price = "0.30"
electricity_delivered_2_price = "0.30"
electricity_returned_1_price = "0.05"
electricity_returned_2_price = "0.05"
gas_price = "1.50"
fixed_daily_cost = "0.60"
"""
WRITE: dict[str, str] = {}


def value(channel: str, at: dt.datetime) -> float:
    return round(BASES[channel] + RISES[channel] * ((at - T0) // STEP), 3)


def stamps(start: dt.datetime, end: dt.datetime) -> list[dt.datetime]:
    return [start + STEP * i for i in range((end - start) // STEP + 1)]


def table(device: str, source: str, channel: str, unit: str, quantity: str, kind: str,
          times: list[dt.datetime], values: list[float]) -> pa.Table:
    n = len(times)
    return pa.table({"source": [source] * n, "device": [device] * n, "channel": [channel] * n,
                     "ts": pa.array(times, pa.timestamp("us", "UTC")), "value": values,
                     "unit": [unit] * n, "quantity": [quantity] * n, "kind": [kind] * n})


def fill(hub: Hub) -> None:
    """The meter every 15 minutes over three spans: the 23-hour day (local 30 March to 1
    April 2024), 29 September to 3 November 2024 (the 25-hour day, and days without a
    contract), and yesterday to now; a heat pump's energy counter and a water meter's
    deltas over the same times."""
    now = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0)
    yesterday = now.astimezone(ZoneInfo(TZ)).date() - dt.timedelta(days=1)
    midnight = dt.datetime.combine(yesterday, dt.time(), ZoneInfo(TZ)).astimezone(dt.UTC)
    times = (stamps(dt.datetime(2024, 3, 29, 23, tzinfo=dt.UTC),
                    dt.datetime(2024, 4, 1, 22, tzinfo=dt.UTC))
             + stamps(dt.datetime(2024, 9, 28, 22, tzinfo=dt.UTC),
                      dt.datetime(2024, 11, 3, 23, tzinfo=dt.UTC))
             + stamps(midnight, now - (now - midnight) % STEP - STEP))
    tables = [table("p1", "dsmr", channel, FIELD_OF[channel].unit, FIELD_OF[channel].quantity,
                    "counter", times, [value(channel, t) for t in times])
              for channel in RISES]
    for channel, kw in (("electricity_currently_delivered", 0.4),
                        ("electricity_currently_returned", 0.0)):
        tables.append(table("p1", "dsmr", channel, "kW", "power", "instant", times,
                            [kw] * len(times)))
    tables.append(table("heatpump", "lab", "energy", "kWh", "energy", "counter", times,
                        list(np.round(300 + 0.05 * np.arange(len(times)), 3))))
    tables.append(table("watermeter", "lab", "water", "m³", "volume", "delta", times,
                        [0.002] * len(times)))
    for part in tables:
        hub.write(part, origin="dsmr" if part.column("source")[0].as_py() == "dsmr" else "api")
    record, key = new_key("datalogger", "write")
    hub.store.add_key(record)
    WRITE["key"] = key


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    folder: Path = tmp_path_factory.mktemp("energy")
    with serve(folder, fill, CONFIG) as running:
        yield running


def ask(site: Site, path: str) -> Any:
    with site.client() as client:
        return client.get(path).raise_for_status().json()


def v2(site: Site, path: str) -> Any:
    with site.client() as client:
        response = client.get(path, headers={"X-AUTHKEY": site.key})
        return response.raise_for_status().json()


def open_energy(page: Watched, site: Site, query: str = "") -> None:
    log_in(page.page, site.base, site.key, f"/energy{query}")
    page.page.wait_for_selector("body[data-ready]", timeout=30_000)
    assert page.page.evaluate("document.body.dataset.ready") == "true", \
        page.page.locator("main").inner_text()


def bars(page: Watched, selector: str) -> list[dict[str, str]]:
    rows: list[dict[str, str]] = page.page.eval_on_selector_all(
        f"{selector} tr[data-bar]", """rows => rows.map(row => Object.assign(
            {label: row.querySelector('th').textContent},
            Object.fromEntries([...row.querySelectorAll('[data-field]')].map(
                c => [c.dataset.field, c.dataset.value]))))""")
    return rows


def total(page: Watched, name: str) -> str:
    return page.page.get_attribute(f"[data-total={name}]", "data-value") or ""


def kwh(*values: str) -> str:
    return f"{sum((Decimal(v) for v in values), Decimal(0)):.3f}"


def expected(row: dict[str, Any], label: str, priced: bool) -> dict[str, str]:
    """A bar as the page must show a statistics row of the API."""
    return {"label": label, "delivered": kwh(row["electricity1"], row["electricity2"]),
            "returned": kwh(row["electricity1_returned"], row["electricity2_returned"]),
            "gas": row["gas"], "total_cost": row["total_cost"] if priced else ""}


def test_27_october_2024_has_25_hours_as_the_api_has_them(page: Watched, site: Site) -> None:
    open_energy(page, site, "?day=2024-10-27")
    hours = bars(page, "section[data-view=day]")
    assert page.page.get_attribute("section[data-view=day]", "data-bars") == "25"
    # DSMR-reader's own hours of that day, in the meter's zone (both 02:00 hours)
    stats = v2(site, "/api/v2/statistics/hour?hour_start__gte=2024-10-27T00:00:00%2B02:00"
                     "&hour_start__lte=2024-10-27T23:00:00%2B01:00&limit=100")["results"]
    assert len(stats) == 25
    priced = ask(site, "/api/v1/energy/day?day=2024-10-27")["data"]["hours"]
    assert [h["id"] for h in priced] == [h["id"] for h in stats]
    assert hours == [expected({**s, "total_cost": p["total_cost"]}, s["hour_start"][11:16],
                              True) for s, p in zip(stats, priced, strict=True)]
    assert [h["label"] for h in hours][:4] == ["00:00", "01:00", "02:00", "02:00"]
    # by hand: 3 steps an hour: 0.030 + 0.060 kWh delivered, 0.003 + 0.012 returned,
    # gas 0.015 m³; costs 0.0057 -> 0.01, 0.01356 -> 0.01, gas 0.018 -> 0.02
    assert {(h["delivered"], h["returned"], h["gas"], h["total_cost"]) for h in hours} == {
        ("0.090", "0.015", "0.015", "0.04")}
    # the day: as DSMR-reader's day statistics, and by hand 99 steps: 0.990 + 1.980 kWh,
    # 0.099 + 0.396 returned, gas the hours' 25 x 0.015; costs 0.1881 -> 0.19,
    # 0.44748 -> 0.45, gas 99 x 0.005 x 1.20 = 0.594 -> 0.59, fixed 0.50: 1.73
    (day,) = v2(site, "/api/v2/statistics/day?day=2024-10-27")["results"]
    assert total(page, "delivered") == kwh(day["electricity1"], day["electricity2"]) == "2.970"
    assert total(page, "returned") == kwh(day["electricity1_returned"],
                                          day["electricity2_returned"]) == "0.495"
    assert total(page, "gas") == day["gas"] == "0.375"
    assert total(page, "total_cost") == day["total_cost"] == "1.73"
    assert total(page, "gas_cost") == day["gas_cost"] == "0.59"
    assert total(page, "fixed_cost") == day["fixed_cost"] == "0.50"
    assert total(page, "electricity_cost") == "0.64"  # 0.19 + 0.45
    # the day before: 24 hours
    assert len(bars(page, "section[data-view=yesterday]")) == 24
    # the month: DSMR-reader's days of October
    month = v2(site, "/api/v2/statistics/day?day__gte=2024-10-01&day__lte=2024-10-31"
                     "&limit=100")["results"]
    assert len(month) == 31
    assert bars(page, "section[data-view=month]") == [
        expected(d, d["day"][8:], True) for d in month]
    # the year: per month the sum of DSMR-reader's days (no contract before October)
    days = v2(site, "/api/v2/statistics/day?day__gte=2024-01-01&day__lte=2024-12-31"
                    "&limit=400")["results"]
    names = {"03": "Mar", "04": "Apr", "09": "Sep", "10": "Oct", "11": "Nov"}
    sums = []
    for number, name in names.items():
        mine = [d for d in days if d["day"][5:7] == number]
        fields = ("electricity1", "electricity2", "electricity1_returned",
                  "electricity2_returned", "gas", "total_cost")
        summed = {f: kwh(*(d[f] for d in mine)) for f in fields}
        summed["total_cost"] = f"{Decimal(summed['total_cost']):.2f}"
        sums.append(expected(summed, name, number in ("10", "11")))
    assert bars(page, "section[data-view=year]") == sums
    # the heat pump and the water meter: their consumption as /api/v1/aggregates has it
    for key, field in (("heatpump/energy", "consumption"), ("watermeter/water", "sum")):
        device, channel = key.split("/")
        for view, every, start, end, count in (
                ("hours", "1h", "2024-10-26", "2024-10-28", 49),
                ("days", "1d", "2024-10-01", "2024-11-01", 31),
                ("months", "1mo", "2024-01-01", "2025-01-01", 5)):
            rows = ask(site, f"/api/v1/aggregates?device={device}&channel={channel}"
                             f"&every={every}&tz={TZ}&start={start}&end={end}")["data"]
            shown = bars(page, f"section[data-channel='{key}'] section[data-view$='-{view}']")
            assert len(shown) == len(rows) == count
            assert [float(b["value"]) for b in shown] == [r[field] for r in rows]
    assert page.problems() == []
    screenshot(page.page, "energy-1440")
    page.page.set_viewport_size({"width": 375, "height": 800})
    page.page.wait_for_timeout(200)  # the charts follow their boxes' new width
    assert page.page.evaluate("document.documentElement.scrollWidth") <= 375
    screenshot(page.page, "energy-375")


def test_31_march_2024_has_23_hours_and_no_contract(page: Watched, site: Site) -> None:
    open_energy(page, site, "?day=2024-03-31")
    hours = bars(page, "section[data-view=day]")
    assert len(hours) == 23
    assert "02:00" not in [h["label"] for h in hours]
    (day,) = v2(site, "/api/v2/statistics/day?day=2024-03-31")["results"]
    # 23 hours: 91 steps of 0.010 + 0.020 kWh
    assert total(page, "delivered") == kwh(day["electricity1"], day["electricity2"]) == "2.730"
    assert total(page, "total_cost") == ""
    assert page.page.locator("[data-total=total_cost] b").inner_text() == "no contract"
    assert {h["total_cost"] for h in hours} == {""}


def test_today_so_far_and_the_live_power(page: Watched, site: Site) -> None:
    for _ in range(2):  # local midnight may pass between the page's answer and ours
        open_energy(page, site, "?refresh=1")
        today = v2(site, "/api/v2/consumption/today")
        shown = page.page.evaluate("document.body.dataset.day")
        if shown == dt.datetime.now(ZoneInfo(TZ)).date().isoformat():
            break
    if isinstance(today, str):  # just after midnight: no minute row yet
        assert page.page.locator("[data-total=none]").count() == 1
    else:
        for name, field in (("delivered", "electricity_merged"),
                            ("returned", "electricity_returned_merged"), ("gas", "gas"),
                            ("total_cost", "total_cost"), ("gas_cost", "gas_cost"),
                            ("fixed_cost", "fixed_cost")):
            assert float(total(page, name)) == today[field], name
    live = v2(site, "/api/v2/consumption/electricity-live")
    page.page.wait_for_selector("[data-live=ok]")
    assert total(page, "live_delivered") == str(live["currently_delivered"]) == "400"
    page.page.evaluate("window.notReloaded = true")
    # a datalogger pushes a telegram: the page shows its power within a refresh or two
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    telegram = v5(stamp=p1_stamp(now), delivered="03.210",
                  **{name: f"{value(channel, now):010.3f}" for name, channel in (
                      ("t1", "electricity_delivered_1"), ("t2", "electricity_delivered_2"),
                      ("r1", "electricity_returned_1"), ("r2", "electricity_returned_2"))},
                  gas_stamp=p1_stamp(now), gas=f"{value('extra_device_delivered', now):09.3f}")
    with site.client() as client:
        client.post("/api/v1/datalogger/dsmrreading", data={"telegram": telegram},
                    headers={"X-AUTHKEY": WRITE["key"]}).raise_for_status()
    page.page.wait_for_selector("[data-total=live_delivered][data-value='3210']",
                                timeout=10_000)
    assert page.page.evaluate("window.notReloaded") is True
    assert v2(site, "/api/v2/consumption/electricity-live")["currently_delivered"] == 3210
    assert page.problems() == []


def test_the_controls_are_labelled_and_reachable_by_keyboard(page: Watched,
                                                              site: Site) -> None:
    open_energy(page, site, "?day=2024-10-27")
    reached = []
    for _ in range(40):
        page.page.keyboard.press("Tab")
        reached.append(page.page.evaluate(
            "document.activeElement.id || document.activeElement.textContent"))
        if reached[-1] == "day":
            break
    assert reached[-1] == "day"
    day = page.page.get_by_label("Day", exact=True)
    day.fill("2024-10-26")
    day.press("Enter")
    page.page.wait_for_url("**/energy?day=2024-10-26")
    page.page.wait_for_selector("body[data-ready=true]", timeout=30_000)
    assert len(bars(page, "section[data-view=day]")) == 24
    assert page.page.get_by_role("link", name="Previous day").get_attribute(
        "href") == "/energy?day=2024-10-25"
    # every part of the page's numbers opens from the keyboard
    page.page.locator("section[data-view=day] summary").focus()
    page.page.keyboard.press("Enter")
    assert page.page.locator("section[data-view=day] details").get_attribute("open") == ""
    # the page's own code and style, compressed, within 150 KB
    sizes = [len(gzip.compress(response.body())) for url, response in page.responses.items()
             if url.endswith((".js", ".css"))]
    assert len(sizes) >= 5
    assert sum(sizes) <= 150_000


@pytest.mark.parametrize(("query", "words"), [
    ("?day=yesterday", "day must be a date like 2024-10-27"),
    ("?day=2024-02-30", "2024-02-30"),
    ("?refresh=0", "refresh must be a number of seconds from 1 to 3600"),
])
def test_a_bad_shared_url_is_a_message_on_the_page(page: Watched, site: Site, query: str,
                                                   words: str) -> None:
    log_in(page.page, site.base, site.key, f"/energy{query}")
    page.page.wait_for_selector("body[data-ready=error]")
    alert = page.page.get_by_role("alert").inner_text()
    assert alert.startswith("Could not show this energy view: ")
    assert words in alert
    assert page.page.get_by_label("Day", exact=True).count() == 1  # the controls stay, to fix it
    screenshot(page.page, f"energy-bad-{query}")

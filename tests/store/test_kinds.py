"""A channel's kind: chosen from the unit when a write creates the channel without a kind
hint (a register only when the data proves it), never changed by a write, changed on
purpose by `Hub.set_kind`."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import pytest

import meterhub
from meterhub.errors import InputError, NotFoundError
from meterhub.hub import Hub
from meterhub.model import ChannelKind
from tests.store.conftest import GENERAL, SHORT, take_path

HOURS = pd.date_range("2024-01-01", periods=4, freq="h", tz="UTC")


@pytest.fixture(params=[SHORT, GENERAL])
def path(request: pytest.FixtureRequest, backend: str, monkeypatch: pytest.MonkeyPatch) -> str:
    take_path(request.param, backend, monkeypatch)
    return str(request.param)


def frame(values: Sequence[float | None], unit: str, kind: str | None = None,
          channel: str = "e", ts: pd.DatetimeIndex | None = None) -> pd.DataFrame:
    data = pd.DataFrame({"source": "s", "device": "d", "channel": channel,
                         "ts": HOURS[:len(values)] if ts is None else ts,
                         "value": values, "unit": unit})
    if kind is not None:
        data["kind"] = kind
    return data


def kinds(hub: Hub) -> dict[str, str]:
    channels = hub.channels()
    return dict(zip(channels["channel"], channels["kind"], strict=True))


@pytest.mark.parametrize(("values", "unit"), [
    ([1000.0, 1000.5, 1001.25, 1002.0], "kWh"),  # rises 2.0 from 1000: 1000 >= 10 * 2
    ([4321.0, 4321.0, 4321.5, 4322.0], "m³"),  # flat steps are fine, the total rises
    ([20.0, 20.5, 21.0, 22.0], "MWh"),  # 20 >= 10 * 2: the boundary is accepted
])
def test_a_new_energy_or_volume_register_is_taken_for_a_counter(
        hub: Hub, values: list[float], unit: str) -> None:
    hub.write(frame(values, unit))
    assert kinds(hub) == {"e": "counter"}


@pytest.mark.parametrize(("values", "why"), [
    ([0.5, 0.25, 0.75, 0.5], "it goes down"),
    ([0.1, 0.2, 0.3, 0.4], "it starts below 10 times its rise of 0.3"),
    ([19.9, 20.5, 21.0, 21.9], "19.9 is below 10 times its rise of 2.0"),
    ([5.0, 5.0, 5.0, 5.0], "it never rises"),
    ([1000.0, 1000.5, 1001.0], "three readings are too few"),
    ([1000.0, 1000.5, None, 1001.0], "a sensor error is no reading"),
    ([None, None, None, None], "only sensor errors"),
])
def test_a_new_energy_channel_without_a_kind_that_data_does_not_prove_is_refused(
        hub: Hub, values: list[float | None], why: str) -> None:
    data = frame(values, "kWh")
    if None in values:
        data["quality"] = ["ok" if v is not None else "sensor_error" for v in values]
    with pytest.raises(InputError, match=r"row 1: channel d/e is new .* add a kind column "
                                         r"\(counter for a meter register, delta for an "
                                         r"amount per interval\)") as caught:
        hub.write(data)
    assert caught.value.row == 1
    assert hub.count() == 0
    assert kinds(hub) == {}  # nothing of the write stays, not even the channel


def test_the_last_row_of_a_timestamp_decides_whether_a_register_falls(hub: Hub) -> None:
    ts = HOURS[[0, 1, 1, 2, 3]]
    with pytest.raises(InputError, match="d/e is new"):
        hub.write(frame([100.0, 100.5, 99.0, 101.0, 101.5], "kWh", ts=ts))  # 100 -> 99
    hub.write(frame([100.0, 99.0, 100.5, 101.0, 101.5], "kWh", ts=ts))  # 100 -> 100.5
    assert kinds(hub) == {"e": "counter"}


def test_a_sensor_error_that_replaces_a_value_in_the_write_leaves_too_few(hub: Hub) -> None:
    data = frame([100.0, 100.5, 101.0, 101.5, None], "kWh", ts=HOURS[[0, 1, 2, 3, 3]])
    data["quality"] = ["ok"] * 4 + ["sensor_error"]  # 03:00 is stored as the error
    with pytest.raises(InputError, match="d/e is new"):
        hub.write(data)


def test_a_channel_in_two_units_is_not_inferred(hub: Hub) -> None:
    data = frame([1000.0, 1000.5, 1001.0, 1001.5], "kWh")
    data.at[3, "value"] = 3_605_400.0  # 1001.5 kWh
    data.at[3, "unit"] = "kJ"
    with pytest.raises(InputError, match="d/e is new"):
        hub.write(data)


def test_a_new_length_channel_needs_a_kind(hub: Hub) -> None:
    with pytest.raises(InputError, match=r"row 1: channel d/e is new and its unit mm .*delta "
                                         r"for an amount per interval such as rain per hour"):
        hub.write(frame([1000.0, 1000.5, 1001.0, 1001.5], "mm"))
    hub.write(frame([0.0, 0.2, 1.4, 0.0], "mm", kind="delta"))
    assert kinds(hub) == {"e": "delta"}


@pytest.mark.parametrize("unit", ["°C", "kW", "hPa", "%", "V", "A", "m³/h", "W/m²", "1"])
def test_a_new_level_channel_without_a_kind_is_instant(hub: Hub, unit: str) -> None:
    hub.write(frame([0.5, 0.25, 0.75, 0.5], unit))
    assert kinds(hub) == {"e": "instant"}


def test_a_kind_hint_decides_for_a_new_channel(hub: Hub) -> None:
    hub.write(pd.concat([frame([0.5, 0.25], "kWh", kind="delta", channel="use"),
                         frame([1.0, 2.0], "kWh", kind="instant", channel="odd")]))
    assert kinds(hub) == {"odd": "instant", "use": "delta"}


def test_a_hint_on_some_rows_of_a_new_channel_decides_for_all(hub: Hub) -> None:
    data = frame([0.5, 0.25, 0.75, 0.5], "kWh")
    data["kind"] = [None, "delta", None, None]
    hub.write(data)
    assert kinds(hub) == {"e": "delta"}


def test_two_kinds_for_one_new_channel_are_refused(hub: Hub) -> None:
    data = frame([0.5, 0.25, 0.75, 0.5], "kWh")
    data["kind"] = ["delta", "delta", "counter", "delta"]
    with pytest.raises(InputError, match=r"row 3: rows give channel d/e the kinds counter "
                                         r"and delta"):
        hub.write(data)
    assert kinds(hub) == {}


def test_a_write_never_changes_a_stored_kind(hub: Hub, path: str) -> None:
    hub.write(frame([100.0, 101.0], "kWh", kind="counter"))
    later = pd.date_range("2024-01-01 02:00", periods=2, freq="h", tz="UTC")
    data = frame([102.0, 103.0], "kWh", ts=later)
    data["kind"] = [None, "delta"]
    with pytest.raises(InputError, match=r"row 2: channel d/e is stored as counter, not "
                                         r"delta: change it with `meterhub channels set-kind "
                                         r"d e delta`") as caught:
        hub.write(data)
    assert caught.value.row == 2
    assert hub.count() == 2
    hub.write(frame([102.0, 103.0], "kWh", kind="counter", ts=later))  # the same kind
    hub.write(frame([104.0], "kWh", ts=later[1:] + pd.Timedelta("1h")))  # no kind
    assert hub.count() == 5
    assert kinds(hub) == {"e": "counter"}


def test_set_kind_changes_how_readings_aggregate(hub: Hub, path: str) -> None:
    hub.write(frame([100.0, 101.0, 103.0, 106.0], "kWh", kind="instant"))
    day = hub.aggregate(every="1d")
    assert day["mean"].tolist() == [102.5]  # (100 + 101 + 103 + 106) / 4
    assert "consumption" not in day.columns
    assert hub.set_kind("d", "e", "counter") is ChannelKind.INSTANT
    day = hub.aggregate(every="1d")
    assert day["consumption"].tolist() == [6.0]  # 106 - 100
    assert "mean" not in day.columns
    assert kinds(hub) == {"e": "counter"}
    # a write now takes the new kind and refuses the old one, on either path
    hub.write(frame([107.0], "kWh", kind="counter", ts=HOURS[3:] + pd.Timedelta("1h")))
    with pytest.raises(InputError, match="stored as counter, not instant"):
        hub.write(frame([108.0], "kWh", kind="instant", ts=HOURS[3:] + pd.Timedelta("2h")))
    assert hub.set_kind("d", "e", ChannelKind.COUNTER) is ChannelKind.COUNTER


def test_set_kind_refuses_an_unknown_channel_or_kind(hub: Hub) -> None:
    hub.write(frame([100.0, 101.0], "kWh", kind="counter"))
    with pytest.raises(NotFoundError, match="no channel d/x"):
        hub.set_kind("d", "x", "delta")
    with pytest.raises(NotFoundError, match="no channel z/e"):
        hub.set_kind("z", "e", "delta")
    with pytest.raises(InputError, match="kind 'register' is not one of instant, counter, "
                                         "delta"):
        hub.set_kind("d", "e", "register")
    assert kinds(hub) == {"e": "counter"}


def test_set_kind_survives_reopening(store_url: str) -> None:
    url = store_url
    with meterhub.open(url) as hub:
        hub.write(frame([0.5, 0.25], "kWh", kind="instant"))
        hub.set_kind("d", "e", "delta")
    with meterhub.open(url) as hub:
        assert kinds(hub) == {"e": "delta"}
        assert hub.aggregate(every="1d")["sum"].tolist() == [0.75]

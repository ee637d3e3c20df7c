"""The meter's status log: its latest status (DSMR-reader's MeterStatistics) and its count
of rejected telegrams, as the store keeps them between restarts."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from meterhub.dsmr.telegram import Telegram

#: MeterStatistics field -> dsmr-parser value name (counts and the active tariff, as ints)
STATUS_FIELDS = {
    "electricity_tariff": "ELECTRICITY_ACTIVE_TARIFF",
    "power_failure_count": "SHORT_POWER_FAILURE_COUNT",
    "long_power_failure_count": "LONG_POWER_FAILURE_COUNT",
    **{f"voltage_sag_count_l{n}": f"VOLTAGE_SAG_L{n}_COUNT" for n in (1, 2, 3)},
    **{f"voltage_swell_count_l{n}": f"VOLTAGE_SWELL_L{n}_COUNT" for n in (1, 2, 3)},
}


def status_key(device: str) -> str:
    """The store state key of a meter's latest status (`Telegram.status` as JSON)."""
    return f"dsmr.status.{device}"


def rejected_key(device: str) -> str:
    """The store state key of the count of a meter's rejected telegrams."""
    return f"dsmr.rejected.{device}"


#: seconds: under a stream of pushed telegrams the meter's status is stored at most this
#: often (a state write costs about a tenth of a group commit); the readings are committed
#: before every answer as always
STATUS_EVERY = 1.0
#: the range of DSMR-reader's integer columns (PostgreSQL integer)
INT_MIN, INT_MAX = -(2**31), 2**31 - 1


class MeterLog:
    """A meter's status and its count of rejected telegrams, as the store keeps them (state
    values `status_key` and `rejected_key`): loaded once, and the state values to commit
    with each accepted or rejected telegram. The push endpoint and `meterhub p1` share it.

    In between, this object is the truth: the status a telegram set is here at once and in
    the store within `STATUS_EVERY` (`accept` hands it out at most that often, and
    `unsaved_state` the one held back).
    """

    def __init__(self, get_state: Callable[[str], str | None], device: str) -> None:
        self.status_key, self.rejected_key = status_key(device), rejected_key(device)
        stored = get_state(self.status_key)
        #: the meter's latest status (None before any telegram or PATCH): a PATCH builds on
        #: it, and the API answers from it (the store may be a second behind)
        self.status: dict[str, Any] | None = orjson.loads(stored) if stored else None
        self.rejected = int(get_state(self.rejected_key) or 0)  #: ever, across restarts
        self.accepted = 0  #: stored by this process (its owner counts them)
        self.unsaved = False  #: the status holds a telegram's that is not handed out yet
        self._handed_at = -STATUS_EVERY

    def accept(self, telegram: Telegram) -> dict[str, str]:
        """Take ``telegram``'s status; the state values to commit with its readings (the
        status, unless it was handed out less than `STATUS_EVERY` ago)."""
        self.status = updated_status(self.status, telegram.status)
        if time.monotonic() - self._handed_at < STATUS_EVERY:
            self.unsaved = True
            return {}
        return self._status_state()

    def unsaved_state(self) -> dict[str, str]:
        """The status held back by `accept`, to commit on its own (nothing if none)."""
        return self._status_state() if self.unsaved else {}

    def _status_state(self) -> dict[str, str]:
        self.unsaved, self._handed_at = False, time.monotonic()
        return {self.status_key: orjson.dumps(self.status).decode()}

    def patch(self, *, status: dict[str, Any] | None = None,
              rejected: int | None = None) -> dict[str, str]:
        """Take a status or rejected count set from outside (a datalogger's PATCH); the
        state values to commit."""
        state = {}
        if rejected is not None:
            self.rejected = rejected
            state[self.rejected_key] = str(rejected)
        if status is not None:
            self.status = status
            state.update(self._status_state())
        return state

    def reject(self) -> dict[str, str]:
        """Count a rejected telegram; the state value to commit."""
        self.rejected += 1
        return {self.rejected_key: str(self.rejected)}

    def state(self) -> dict[str, str]:
        """Both values, for a writer that commits telegrams in batches."""
        state = {self.rejected_key: str(self.rejected)}
        if self.status is not None:
            state[self.status_key] = orjson.dumps(self.status).decode()
        return state


def updated_status(previous: dict[str, Any] | None, status: dict[str, Any]) -> dict[str, Any]:
    """A meter's status after a telegram: what the telegram says, and the earlier values
    of what it does not (as DSMR-reader sets only the fields a telegram has: a DSMR 2.2
    meter keeps the counts a remote datalogger PATCHed)."""
    return {**(previous or {}), **{k: v for k, v in status.items() if v is not None}}


def meter_status(telegram: Any, text: str, stamp: dt.datetime) -> dict[str, Any]:
    """DSMR-reader's MeterStatistics as a telegram sets them: its time (ISO, UTC), the DSMR
    version (``"50"``), the active tariff and the meter's event counters (ints, None when
    absent) and the telegram's text as read (without NULs). DSMR-reader keeps it trimmed,
    as its readers give it: the push as its form cleans it (whitespace, then NULs at either
    end: `meterhub.api.dsmr_reader.telegram_push`), the serial datalogger from '/' to the
    CRC (`meterhub.dsmr.p1`), so no line end after the CRC."""
    header = getattr(telegram, "P1_MESSAGE_HEADER", None)
    status: dict[str, Any] = {"timestamp": stamp.isoformat(),
                              "dsmr_version": None if header is None else header.value}
    for field, name in STATUS_FIELDS.items():
        item = getattr(telegram, name, None)
        try:
            count = None if item is None or item.value is None else int(item.value)
        except (ValueError, OverflowError):  # NaN, infinite
            count = None
        # MeterStatistics' integer columns hold no more (nor does JSON hold every int)
        status[field] = count if count is None or INT_MIN <= count <= INT_MAX else None
    status["latest_telegram"] = text
    return status

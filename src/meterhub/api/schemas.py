"""Response and request shapes, for the OpenAPI document only.

Bulk answers are encoded by `meterhub.encode` straight from Arrow; these models describe
what that produces (the schemathesis test holds every answer to them) and are never used
to validate or serialise a reading.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field


class Reading(BaseModel):
    source: str
    device: str
    channel: str
    ts: str = Field(description="UTC, ISO 8601 with Z")
    value: float | None
    unit: str
    quality: Literal["ok", "estimated", "sensor_error"]
    seq: int | None
    error_code: str | None
    validated: bool


class ReadingsPage(BaseModel):
    data: list[Reading]
    next: str | None = Field(description="URL of the next page; null on the last page")


class Aggregate(BaseModel):
    device: str
    channel: str
    kind: Literal["instant", "counter", "delta"]
    bucket: str = Field(description="bucket start, ISO 8601 with the offset of tz")
    bucket_end: str
    mean: float | None = None
    min: float | None = None
    max: float | None = None
    first: float | None = None
    last: float | None = None
    consumption: float | None = None
    sum: float | None = None
    count: int | None = None
    errors: int | None = Field(default=None, description="sensor_error readings in the "
                               "bucket (fn=errors)")
    unit: str


class Aggregates(BaseModel):
    data: list[Aggregate]


class DeviceOut(BaseModel):
    device: str
    source: str
    site: str | None
    name: str | None
    model: str | None
    serial: str | None
    timezone: str | None
    latitude: float | None
    longitude: float | None


class Devices(BaseModel):
    data: list[DeviceOut]


class ChannelOut(BaseModel):
    source: str
    device: str
    channel: str
    quantity: str
    kind: Literal["instant", "counter", "delta"]
    unit: str
    readings: int
    first_ts: str | None
    last_ts: str | None = Field(description="newest measurement time (not arrival)")
    written_at: str | None = Field(description="when the newest batch was stored")
    last_value: float | None = Field(description="the newest reading's value (null for a "
                                     "sensor error)")


class Channels(BaseModel):
    data: list[ChannelOut]


class Gap(BaseModel):
    device: str
    channel: str
    kind: Literal["interval", "seq"]
    start: str
    end: str
    missing: int
    seq_from: int | None
    seq_to: int | None


class Gaps(BaseModel):
    data: list[Gap]


class Quota(BaseModel):
    as_of: str = Field(description="when the vendor said so (its last answer of a sync)")
    calls_left: int | None = Field(description="calls left in the vendor's window")
    calls_limit: int | None = Field(description="calls the window allows")
    window_seconds: float | None = Field(description="the window the limit counts in")
    wait_until: str | None = Field(description="the end of a lock-out its last 429 asked "
                                   "to wait")


class SourceOut(BaseModel):
    name: str
    type: str | None = Field(description="connector type; null for push-only sources")
    configured: bool
    devices: int
    health: Literal["ok", "failing", "never synced", "push"]
    last_attempt: str | None
    last_success: str | None
    failing_devices: int
    last_error: str | None
    newest_reading: str | None = Field(description="its newest measurement time, any channel")
    lag_seconds: int | None = Field(description="seconds from the newest reading to now")
    interval_seconds: float | None = Field(
        description="its readings' interval: the shortest mean interval of its channels")
    stale: bool = Field(description="failing, or more than three intervals behind: a "
                        "pulled source behind its last successful sync, a pushed one "
                        "behind now")
    quota: Quota | None = Field(description="what the vendor last told of its rate "
                                "limits, where it tells (rate limit headers, a 429's wait)")


class Sources(BaseModel):
    data: list[SourceOut]


class MqttLinkOut(BaseModel):
    client_id: str
    broker: str = Field(description="host:port")
    connected: bool
    since: str | None = Field(description="when the link came up, or went down")
    last_error: str | None = Field(description="why it went down last")
    published: int = Field(description="states published since the process started")
    taken: int = Field(description="ingest messages taken (stored or rejected)")
    rejected: int = Field(description="ingest messages dropped as bad")
    as_of: str = Field(description="when the process last told its health")
    silent: bool = Field(description="no word for a minute: the process may have stopped")


class MqttLinks(BaseModel):
    data: list[MqttLinkOut]


class WriteSummary(BaseModel):
    received: int
    written: int = Field(description="distinct (device, channel, ts) keys written")
    batch: int | None = Field(description="the stored batch; null when nothing came")
    devices: list[str] = Field(description="the devices of the batch, sorted (its links "
                                           "read them back)")
    channels: list[str] = Field(description="the channel names of the batch, sorted")
    sources: list[str] = Field(description="the sources of the batch, sorted (\"api\" for "
                                           "readings without one)")


class Health(BaseModel):
    status: Literal["ok"]
    version: str
    store: str


class KeyOut(BaseModel):
    key_id: str
    name: str
    scope: Literal["read", "write", "admin"]
    rate_limit: str
    created_at: str
    revoked_at: str | None


class Keys(BaseModel):
    data: list[KeyOut]


class NewKey(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    scope: Literal["read", "write", "admin"] = "read"
    rate_limit: str | None = Field(default=None, description="e.g. 600/minute")


class CreatedKey(KeyOut):
    key: str = Field(description="the key itself, shown this once")


READINGS_BODY: dict[str, Any] = {
    "required": True,
    "content": {
        "application/json": {"schema": {
            "type": "array", "items": {
                "type": "object", "required": ["device", "channel", "ts", "value", "unit"],
                "properties": {
                    "source": {"type": "string"},
                    "device": {"type": "string", "minLength": 1},
                    "channel": {"type": "string", "minLength": 1},
                    "ts": {"type": "string", "format": "date-time"},
                    "value": {"type": ["number", "null"]},
                    "unit": {"type": "string", "minLength": 1},
                    "quality": {"type": "string", "enum": ["ok", "estimated", "sensor_error"]},
                    "seq": {"type": ["integer", "null"]},
                    "error_code": {"type": ["string", "null"]},
                    "validated": {"type": "boolean"},
                    "quantity": {"type": "string"},
                    "kind": {"type": "string", "enum": ["instant", "counter", "delta"]},
                }}}},
        "text/csv": {"schema": {"type": "string"}},
    },
}



# The Energy page's numbers (`meterhub.api.energy`): decimals as strings, written as
# DSMR-reader's v2 statistics write them (kWh and m³ with 3 places, money with 2).

class EnergyHour(BaseModel):
    id: int = Field(description="the hour's Unix hour number, as /api/v2/statistics/hour")
    hour_start: str = Field(description="ISO 8601 with the meter zone's offset (both "
                            "02:00 hours of a fall-back night are there)")
    electricity1: str
    electricity2: str
    electricity1_returned: str
    electricity2_returned: str
    gas: str
    electricity1_cost: str | None = Field(description="null when no contract holds the day")
    electricity2_cost: str | None
    gas_cost: str | None
    total_cost: str | None = Field(description="the hour's costs, no fixed cost")


class EnergyDayRow(BaseModel):
    id: int
    day: str
    electricity1: str
    electricity2: str
    electricity1_returned: str
    electricity2_returned: str
    electricity1_cost: str
    electricity2_cost: str
    gas: str = Field(description="the sum of the day's hours, as /api/v2/statistics/day")
    gas_cost: str
    lowest_temperature: str
    highest_temperature: str
    average_temperature: str
    fixed_cost: str
    total_cost: str
    electricity_reading_timestamp: str | None
    electricity1_reading: str | None
    electricity2_reading: str | None
    electricity1_returned_reading: str | None
    electricity2_returned_reading: str | None
    gas_reading_timestamp: str | None
    gas_reading: str | None
    electricity_merged: str = Field(description="electricity1 + electricity2")
    electricity_returned_merged: str
    gas_span: str = Field(description="the day's last minus first gas row: "
                          "/api/v2/consumption/today's gas, and what gas_cost counts")
    priced: bool = Field(description="whether a contract holds the day (else costs are 0)")
    complete: bool = Field(description="whether the day is over (else: so far)")


class EnergyDayOut(BaseModel):
    device: str = Field(description="the DSMR meter's device id ([dsmr] device)")
    timezone: str
    day: str
    today: bool
    complete: bool = Field(description="whether the day is over (else: so far)")
    local_hours: int = Field(description="the day's local hours: 23, 24 or 25")
    priced: bool
    totals: EnergyDayRow | None
    hours: list[EnergyHour]


class EnergyDay(BaseModel):
    data: EnergyDayOut


class EnergyDaysOut(BaseModel):
    device: str
    timezone: str
    start: str
    end: str
    days: list[EnergyDayRow]


class EnergyDays(BaseModel):
    data: EnergyDaysOut


class EnergyMonth(BaseModel):
    month: str = Field(description="YYYY-MM")
    days: int = Field(description="days with statistics")
    priced_days: int = Field(description="of which a contract holds")
    complete: bool
    electricity1: str
    electricity2: str
    electricity1_returned: str
    electricity2_returned: str
    electricity_merged: str
    electricity_returned_merged: str
    gas: str
    gas_span: str
    electricity1_cost: str
    electricity2_cost: str
    gas_cost: str
    fixed_cost: str
    total_cost: str


class EnergyMonthsOut(BaseModel):
    device: str
    timezone: str
    start: str
    end: str
    months: list[EnergyMonth]


class EnergyMonths(BaseModel):
    data: EnergyMonthsOut

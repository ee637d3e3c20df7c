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


class Sources(BaseModel):
    data: list[SourceOut]


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


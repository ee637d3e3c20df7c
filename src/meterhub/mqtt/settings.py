"""The `[mqtt]` section of meterhub.toml: the broker, the topics, and what is published."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class MqttSettings(BaseModel):
    """Where the broker is and what meterhub publishes there; absent, nothing is."""

    model_config = ConfigDict(extra="forbid")

    host: str
    port: int = Field(1883, ge=1, le=65535)
    username: str | None = None
    password: str | None = None  #: write it as ``${ENV_NAME}``, never in the file
    tls: bool = False
    client_id: str = "meterhub"
    #: states go to ``<prefix>/<source>/<device>/<channel>``
    prefix: str = "meterhub"
    #: Home Assistant's discovery topics start here (its default)
    discovery_prefix: str = "homeassistant"
    #: take readings from ``<prefix>/ingest/<source>/<device>`` and telegrams from
    #: `telegram_topic` (QoS 1); anyone who may publish there on the broker may write
    ingest: bool = True
    #: where a P1 reader publishes raw telegrams (``<prefix>/ingest/telegram`` if empty)
    telegram_topic: str = ""
    #: also publish the meter's readings, status and today's consumption on DSMR-reader's
    #: own topics (``dsmr/reading/...``: `meterhub.mqtt.dsmr_reader`)
    dsmr_reader_topics: bool = False
    #: publish only these (empty: all)
    sources: list[str] = []
    devices: list[str] = []
    channels: list[str] = []

    @field_validator("prefix", "discovery_prefix")
    @classmethod
    def _topic_root(cls, value: str) -> str:
        if not value or any(c in value for c in "#+") or value.startswith("/") \
                or value.endswith("/"):
            raise ValueError(f"{value!r} cannot start topics: use letters, digits and "
                             "single '/' between levels, without '#' or '+'")
        return value

    @field_validator("telegram_topic")
    @classmethod
    def _plain_topic(cls, value: str) -> str:
        if any(c in value for c in "#+"):
            raise ValueError(f"{value!r} is a filter: name one topic, without '#' or '+'")
        return value

    @model_validator(mode="after")
    def _telegrams_apart(self) -> MqttSettings:
        levels = self.telegram_topic.split("/")
        if self.telegram_topic.startswith(f"{self.prefix}/ingest/") and \
                len(levels) == len(self.prefix.split("/")) + 3:
            raise ValueError(f"telegram_topic {self.telegram_topic!r} is a readings topic "
                             f"({self.prefix}/ingest/<source>/<device>): choose another")
        return self

    def wanted(self, source: str, device: str, channel: str) -> bool:
        """Whether a channel is published."""
        return (not self.sources or source in self.sources) and \
            (not self.devices or device in self.devices) and \
            (not self.channels or channel in self.channels)

"""The DSMR-reader-compatible API paths, answering as DSMR-reader 5.11 does (DSMR-READER.md
holds the exchanges they were checked against), so existing dataloggers and scripts work
unchanged:

- `telegram_push`: v1 ``datalogger/dsmrreading``, raw P1 telegrams pushed by dataloggers;
- `readings`: v2 ``datalogger/dsmrreading`` (list and create) and ``application/version``;
- `statistics`: v2 ``statistics/day``, ``statistics/hour`` and ``consumption/today``;
- `meter`: v2 ``datalogger/meter-statistics`` and the live consumption paths;
- `prices`: v2 ``consumption/energy-supplier-prices``;
- `common`: what they share (keys and their rate limits, bounded bodies, DRF's answers
  and its reading of query values and fields).

Keys are meterhub API keys, sent as ``X-AUTHKEY`` or ``Authorization: Token``; every
request of a known key counts against its rate limit (`common.guarded`). These
paths are left out of meterhub's OpenAPI document: they mirror another product's
contract, not meterhub's; `openapi` describes them in a document of their own, served at
``/api/v2/openapi.json``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import FastAPI

from meterhub.api.dsmr_reader import meter, openapi, prices, readings, statistics, telegram_push
from meterhub.api.dsmr_reader.kept import MeterAnswers
from meterhub.api.reads import Answering
from meterhub.clock import Clock
from meterhub.dsmr.intake import TelegramIntake
from meterhub.dsmr.parse_helper import TelegramReader
from meterhub.dsmr.settings import DsmrSettings
from meterhub.hub import Hub
from meterhub.ingest import GroupWriter


def install(app: FastAPI, hub: Hub, settings: DsmrSettings | None, *,
            clock: Clock | None = None) -> Callable[[], Awaitable[None]]:
    """Add every DSMR-reader path to ``app`` (for the meter ``settings`` describe, else the
    defaults), pushes committed in groups; the coroutine function to await at shutdown (it
    stops the parse helpers, stores the meter's status if one is held back and folds the
    journaled pushes into the store). The statistics tell "today" and which minutes are
    over by ``clock`` (the wall clock by default)."""
    settings = settings or DsmrSettings()
    writer = GroupWriter(hub, origin="dsmr")
    app.state.dsmr_telegrams = telegrams = TelegramReader(settings)
    # the push path's and MQTT's (`meterhub.mqtt`, started by the app's lifespan)
    app.state.dsmr_intake = intake = TelegramIntake(settings, writer, telegrams)
    telegram_push.install(app, intake)
    kept = MeterAnswers(hub, settings.device, settings.timezone,
                        getattr(app.state, "answering", None) or Answering(hub.answers))
    readings.install(app, hub, settings, writer, kept)
    statistics.install(app, hub, settings, kept, clock)
    prices.install(app, hub, settings, writer)
    meter.install(app, hub, settings, writer, kept)
    openapi.install(app, settings)

    return intake.close

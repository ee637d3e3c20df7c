"""Raw P1 telegrams taken in, wherever they come from: DSMR-reader's v1 push path and an MQTT
topic go through the same checks (CRC, the configured dialect, a meter clock at most a day
ahead) and the same count of rejected telegrams, so a meter reads the same either way."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging

from meterhub.dsmr.meter_log import STATUS_EVERY, MeterLog
from meterhub.dsmr.parse_helper import TelegramReader
from meterhub.dsmr.settings import DsmrSettings
from meterhub.dsmr.telegram import Telegram, TelegramError, meter_device
from meterhub.ingest import GroupWriter

log = logging.getLogger("meterhub.dsmr")


class TelegramIntake:
    """`take` a telegram: stored (committed when it returns), or counted as rejected in
    the meter's log (`TelegramError`, `NoTelegram` for an empty one, which is not counted).
    One per process and meter: its log (`counters`) is the truth between commits."""

    def __init__(self, settings: DsmrSettings, writer: GroupWriter,
                 telegrams: TelegramReader) -> None:
        self.settings, self.writer, self.telegrams = settings, writer, telegrams
        self.counters = MeterLog(writer.hub.get_state, settings.device)
        self._saving: asyncio.Task[None] | None = None  #: a held-back status's save

    async def take(self, given: str | bytes) -> Telegram:
        """Store the telegram ``given`` (text, or a urlencoded form field's bytes as sent:
        `meterhub.dsmr.parse_helper.pushed_text`)."""
        counters = self.counters
        try:
            with self.writer.arriving():
                telegram = await self.telegrams.read(given, dt.datetime.now(dt.UTC))
        except TelegramError as exc:
            state = counters.reject()
            log.warning("telegram rejected (%d so far): %s", counters.rejected, exc)
            await self.writer.write(None, state)
            raise
        await self.writer.write(telegram, counters.accept(telegram))
        if counters.unsaved:
            self._save_status_soon()
        counters.accepted += 1
        if counters.accepted == 1:  # once per process: the meter's serial and zone
            await asyncio.to_thread(self.writer.hub.add_devices, [meter_device(
                telegram, device=self.settings.device, tz=self.settings.timezone)])
        return telegram

    def _save_status_soon(self) -> None:
        loop = asyncio.get_running_loop()
        if self._saving is None or self._saving.done() or self._saving.get_loop() is not loop:
            self._saving = loop.create_task(self._save_status())

    async def _save_status(self) -> None:
        await asyncio.sleep(STATUS_EVERY)
        state = self.counters.unsaved_state()
        if state:
            await self.writer.write(None, state)

    async def close(self) -> None:
        """Stop the parse helpers and the writer's folds; store the meter's status if one
        is held back (less than a second) and fold the journaled telegrams into the store
        (a server stopped by a signal may end before the store is closed)."""
        self.telegrams.close()
        self.writer.close()
        held_back = self.counters.unsaved_state()
        hub = self.writer.hub
        if held_back:
            await asyncio.to_thread(hub.write, None, origin=self.writer.origin, state=held_back)
        await asyncio.to_thread(hub.fold_journal)

"""DSMR-reader's reads that dashboards, Home Assistant and scripts poll (the newest reading,
live consumption, today's and the past days' statistics), answered from memory until a
write could change them (`meterhub.answers`, `meterhub.api.reads.Answering`).

An answer is kept for its whole meter: any write to the meter's device (a telegram, a
posted reading, a late or replayed one), a delete, a catalog change or a change of the
meter's prices (`meterhub.hub.Hub.drop_answers`) drops it. Its key is the request's URL,
the meter's local date (what "today" is, which days are over, which prices hold) and what
else of the server's memory it read (the meter's active tariff). An answer computed while
the meter's newest reading is later than the clock is not kept: it depends on the clock
(minutes not over yet, a meter clock ahead shown as now), not only on the store.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Hashable

import pyarrow.compute as pc
from fastapi import Request
from starlette.responses import Response

from meterhub.answers import AnswerScope
from meterhub.api.dsmr_reader.common import local_day
from meterhub.api.reads import Answering
from meterhub.errors import NotFoundError
from meterhub.hub import Hub


class MeterAnswers:
    """Kept answers of one meter's read paths."""

    def __init__(self, hub: Hub, device: str, tz: str, answering: Answering) -> None:
        self.hub, self.device, self.tz = hub, device, tz
        self.answering = answering
        # every read here depends on the meter's readings of any channel and time
        self.scope = AnswerScope(frozenset({device}), None, None)
        #: the newest reading when an answer was last kept: a clock set back before it
        #: asks what the kept answers do not say
        self._floor: dt.datetime | None = None

    def _settled(self, moment: dt.datetime) -> bool:
        """Whether no reading of the meter is later than ``moment``."""
        try:
            newest = self.hub.channels(device=self.device, as_="arrow").column("last_ts")
        except NotFoundError:
            return True
        latest: dt.datetime | None = pc.max(newest).as_py()
        if latest is None:
            return True
        if latest > moment:
            return False
        self._floor = latest if self._floor is None else max(self._floor, latest)
        return True

    async def answer(self, request: Request, moment: dt.datetime,
                     compute: Callable[[], Response], *, also: Hashable = None) -> Response:
        """The kept answer to ``request`` at ``moment`` (the clock ``compute`` reads), else
        ``compute()`` in a read thread, kept when it is a 200 that does not depend on the
        clock. ``also``: what else of the server's memory the answer read."""
        floor = self._floor
        if self.answering.answers is None or (floor is not None and moment < floor):
            # a shared store (nothing is kept), or a clock set back
            return await self.answering.run(compute)
        # this object in the key: an app of other settings (prices, zone) on the same hub
        # answers otherwise
        key = (self, str(request.url), local_day(moment, self.tz), also)

        def run() -> Response:
            with self.answering.reading() as token:
                response = compute()
                if response.status_code != 200 or not self._settled(moment):
                    return response
                return self.answering.keep(key, token, self.scope, bytes(response.body),
                                           "json")

        return await self.answering.answer(key, "json", run)

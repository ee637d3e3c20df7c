"""DSMR-reader's v2 ``consumption/energy-supplier-prices``, and meterhub's way to add and
remove contracts through the API.

DSMR-reader 5.11 only lists its contracts here (they are edited in its admin pages). A
meterhub extension on the same path adds one (``POST``, write scope, 201 with the contract
as the list shows it) and removes one (``DELETE .../energy-supplier-prices/{id}``, 204).
Validation answers like a DRF serializer of DSMR-reader's contract would (field errors;
the limits of its EnergySupplierPrice model: prices of up to 11 digits with 6 places, a
description of up to 255 characters), before anything is written. Added contracts are
kept in the store and count like the configured ones in every cost; the contracts of
meterhub.toml are changed in the file.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
from decimal import Decimal
from typing import Any

from fastapi import FastAPI, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from meterhub.api.dsmr_reader.common import (
    clean_decimal,
    date_bounds,
    get_route,
    guarded,
    json_response,
    money,
    page_of,
    paginated,
    request_data,
    within,
)
from meterhub.api.dsmr_reader.meter import text_errors
from meterhub.dsmr.prices import (
    DESCRIPTION_LENGTH,
    PRICE_DIGITS,
    PRICE_FIELDS,
    PRICE_PLACES,
    AddedPrices,
    Prices,
    contracts,
    prices_key,
)
from meterhub.dsmr.settings import DsmrSettings
from meterhub.hub import Hub
from meterhub.ingest import GroupWriter
from meterhub.keys import Scope

PATH = "/api/v2/consumption/energy-supplier-prices"
FILTERS = ("start__gte", "start__lte", "end__gte", "end__lte")  #: dates, inclusive
WRONG_DATE = "Date has wrong format. Use one of these formats instead: YYYY-MM-DD."
_DATE = re.compile(r"^(\d{4})-(\d{1,2})-(\d{1,2})$")  #: what Django's parse_date takes


def price_json(contract: Prices) -> dict[str, Any]:
    return {"id": contract.id, "start": contract.start.isoformat(),
            "end": contract.end.isoformat(), "description": contract.description,
            **{name: money(contract.get(name), PRICE_PLACES) for name in PRICE_FIELDS}}


def _clean_date(raw: object) -> dt.date | str:
    match = _DATE.match(raw.strip()) if isinstance(raw, str) else None
    if match is None:
        return WRONG_DATE
    try:
        return dt.date(*(int(part) for part in match.groups()))
    except ValueError:
        return WRONG_DATE


def validate_price(data: dict[str, Any]) -> tuple[dict[str, list[str]], Prices | None]:
    """DRF-style field errors of a new contract, or the contract (without its id)."""
    errors: dict[str, list[str]] = {}
    days: dict[str, dt.date] = {}
    for name in ("start", "end"):
        raw = data.get(name)
        if name not in data:
            errors[name] = ["This field is required."]
        elif raw is None:
            errors[name] = ["This field may not be null."]
        else:
            day = _clean_date(raw)
            if isinstance(day, str):
                errors[name] = [day]
            else:
                days[name] = day
    description = data.get("description", "")
    if description is None:
        errors["description"] = ["This field may not be null."]
    elif isinstance(description, bool) or not isinstance(description, str | int | float):
        errors["description"] = ["Not a valid string."]
    elif found := text_errors(str(description).strip(), DESCRIPTION_LENGTH):
        errors["description"] = found  # DRF checks the text trimmed
    values: dict[str, Decimal] = {}
    for name in PRICE_FIELDS:
        raw = data.get(name)
        if raw is None and name in data:
            errors[name] = ["This field may not be null."]
        elif raw is not None and raw != "":  # absent or empty in a form: the default, 0
            number = clean_decimal(raw, PRICE_DIGITS, PRICE_PLACES)
            if isinstance(number, str):
                errors[name] = [number]
            else:
                values[name] = number
    if not errors and days["end"] < days["start"]:
        # meterhub's rule: such a contract would never hold a day
        errors["non_field_errors"] = ["end must not be before start."]
    if errors:
        return errors, None
    return {}, Prices(days["start"], days["end"], str(description).strip(),
                      {name: values.get(name, Decimal(0)) for name in PRICE_FIELDS})


def install(app: FastAPI, hub: Hub, settings: DsmrSettings, writer: GroupWriter) -> None:
    state_key = prices_key(settings.device)
    # one change at a time: each reads the stored contracts and writes them back
    changing = asyncio.Lock()

    async def stored() -> AddedPrices:
        return AddedPrices.loads(await run_in_threadpool(hub.get_state, state_key))

    @get_route(app, PATH)
    @guarded(Scope.READ)
    async def list_prices(request: Request) -> Response:
        bounds, errors = date_bounds(request, FILTERS)
        if errors:
            return json_response(errors, 400)
        every = [c for c in await run_in_threadpool(contracts, hub, settings)
                 if within(c.start, bounds["start__gte"], bounds["start__lte"])
                 and within(c.end, bounds["end__gte"], bounds["end__lte"])]
        # DSMR-reader orders by start (the default) or end, either way round
        ordering = request.query_params.get("ordering", "")
        if ordering.removeprefix("-") == "end":
            every.sort(key=lambda c: c.end)
        chosen, limit, offset = page_of(request, every, ordering.removeprefix("-") or "start")
        return paginated(request, len(every), limit, offset, [price_json(c) for c in chosen])

    @app.post(PATH, include_in_schema=False)
    @guarded(Scope.WRITE)
    async def add_price(request: Request) -> Response:
        data = await request_data(request)
        if isinstance(data, Response):
            return data
        errors, contract = validate_price(data)
        if contract is None:
            return json_response(errors, 400)
        async with changing:
            kept, added = (await stored()).add(contract)
            answer = json_response(price_json(added), 201)  # before the write: it stands
            await writer.write(None, {state_key: kept.dumps()})
            hub.drop_answers()  # every cost the kept answers hold
        return answer

    @app.delete(PATH + "/{price_id}", include_in_schema=False)
    @guarded(Scope.WRITE)
    async def remove_price(request: Request, price_id: str) -> Response:
        # a contract's id as Django's <int:pk> reads it: ASCII digits (an id of thousands
        # of digits is no contract's, nor one Python reads as an integer)
        number = int(price_id) if price_id.isascii() and price_id.isdigit() and \
            len(price_id) <= 18 else None
        async with changing:
            kept = None if number is None else (await stored()).without(number)
            if kept is not None:
                await writer.write(None, {state_key: kept.dumps()})
                hub.drop_answers()  # every cost the kept answers hold
                return Response(status_code=204)
        if number is not None and 1 <= number <= len(settings.prices):
            return json_response({"detail": f"Contract {number} is configured in "
                                  "meterhub.toml ([[dsmr.prices]]): change it there."}, 409)
        return json_response({"detail": "Not found."}, 404)

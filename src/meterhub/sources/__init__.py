"""Vendor connectors (one module each, registered by type in `meterhub.sources.base`) and
what spans them: `check_credentials`, the library side of ``config check --online``."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import httpx
from pydantic import AnyUrl

from meterhub.clock import Clock, RealClock
from meterhub.errors import AuthError, MeterhubError, RateLimitedError, UnavailableError
from meterhub.http import RetryPolicy, origin
from meterhub.sources.base import SourceConfig, connector_class

__all__ = ["CHECK_RETRY", "CredentialCheck", "check_credentials"]

#: a check gives up on a dead host after two tries (a sync tries six, over a minute)
CHECK_RETRY = RetryPolicy(attempts=2, rate_limited=1)


@dataclass(frozen=True, slots=True)
class CredentialCheck:
    """The outcome of one source's credential check; ``detail`` is one line for people."""

    name: str
    type: str
    ok: bool
    detail: str


async def check_credentials(sources: Sequence[SourceConfig], *, clock: Clock | None = None,
                            transports: Mapping[str, httpx.AsyncBaseTransport] | None = None,
                            timeout: float = 60.0) -> list[CredentialCheck]:
    """Try every source's credentials with one cheap authenticated call each, concurrently.

    Each call goes through the connector's own client, limiter and error vocabulary (so a
    refused login is an `AuthError` exactly as in a sync), with fewer retries. Nothing is
    raised for a source: each result says ok or why not, naming the config keys to check
    or the host that did not answer. ``timeout`` is real seconds per source (a vendor that
    throttles may otherwise ask to wait up to an hour). One result per source, in order.
    """
    clock = clock or RealClock()
    return list(await asyncio.gather(*(
        _check(source, clock, (transports or {}).get(source.name), timeout)
        for source in sources)))


def _hosts(config: SourceConfig) -> str:
    """The hosts a source talks to (base_url, auth_url ...), never a URL's user part."""
    hosts: list[str] = []
    for value in dict(config).values():
        if isinstance(value, AnyUrl) and origin(httpx.URL(str(value))) not in hosts:
            hosts.append(origin(httpx.URL(str(value))))
    return " and ".join(hosts) or "(no host)"


async def _check(config: SourceConfig, clock: Clock,
                 transport: httpx.AsyncBaseTransport | None,
                 timeout: float) -> CredentialCheck:
    cls = connector_class(config.type)
    connector = cls(config, clock=clock, transport=transport)
    connector.http.retry = CHECK_RETRY
    where = f"source[{config.name}]"
    try:
        async with asyncio.timeout(timeout):
            detail = str(await connector.check())
        return CredentialCheck(config.name, config.type, True, detail)
    except AuthError as exc:
        # a message that names keys (Copper's enterprise_id) narrows the list
        keys = [k for k in cls.info.credentials if k in str(exc)] or cls.info.credentials
        detail = (f"credentials refused; check {', '.join(f'{where}.{k}' for k in keys)} "
                  f"({exc})")
    except RateLimitedError as exc:
        detail = f"rate limited before the credentials could be tried; try later ({exc})"
    except UnavailableError as exc:
        detail = f"{_hosts(config)} did not answer usably ({exc})"
    except TimeoutError:
        detail = f"no answer from {_hosts(config)} within {timeout:g} s"
    except MeterhubError as exc:
        detail = str(exc)
    finally:
        await connector.aclose()
    return CredentialCheck(config.name, config.type, False, detail)

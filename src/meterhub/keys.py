"""API keys: made once, shown once, kept as a SHA-256 hash, checked in constant time.

A key reads ``mh_<id>_<secret>``: the id finds the stored record without scanning, the
secret carries 256 random bits. With that much entropy a fast hash is safe (nothing to
brute-force), so no deliberately slow hash is needed on every request.
"""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

from meterhub.errors import InputError
from meterhub.model import CONTROL_PATTERN, shown

PREFIX = "mh"
MAX_KEY_NAME = 200  #: characters in a key's name
#: at most 9 digits each: a larger count is no limit anyone means (and Python refuses to
#: read an integer of over 4,300 digits)
_RATE = re.compile(
    r"^\s*(\d{1,9})\s*/\s*(\d{0,9})\s*(s|sec|second|m|min|minute|h|hour|d|day)s?\s*$")
_PERIODS = {"s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60, "h": 3600,
            "hour": 3600, "d": 86400, "day": 86400}


class Scope(enum.StrEnum):
    """What a key may do; each scope includes the ones before it."""

    READ = "read"
    WRITE = "write"
    ADMIN = "admin"

    def allows(self, needed: Scope) -> bool:
        order = list(Scope)
        return order.index(self) >= order.index(needed)


@dataclass(frozen=True, slots=True)
class RateLimit:
    """``calls`` requests per ``period`` seconds, written like ``600/minute`` or ``10/s``."""

    calls: int
    period: int

    @classmethod
    def parse(cls, text: str) -> RateLimit:
        match = _RATE.match(text)
        if not match or int(match.group(1)) < 1 or int(match.group(2) or 1) < 1:
            raise InputError(f"cannot read rate limit {shown(text)}: write it like 600/minute, "
                             "10/second or 5000/hour")
        return cls(int(match.group(1)), int(match.group(2) or 1) * _PERIODS[match.group(3)])

    def __str__(self) -> str:
        names = {1: "second", 60: "minute", 3600: "hour", 86400: "day"}
        return f"{self.calls}/{names.get(self.period, f'{self.period}s')}"


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A stored key: everything but the secret."""

    key_id: str
    name: str
    scope: Scope
    hash: str
    rate_limit: str | None  #: this key's own limit, else the server's default
    created_at: dt.datetime
    revoked_at: dt.datetime | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key(name: str, scope: str, rate_limit: str | None = None) -> tuple[ApiKey, str]:
    """A new key record and the secret key text, which is never stored."""
    if not name.strip():
        raise InputError("a key needs a name, such as datalogger")
    if len(name.strip()) > MAX_KEY_NAME:
        raise InputError(f"key name {shown(name.strip())} is {len(name.strip()):,} characters "
                         f"long: at most {MAX_KEY_NAME} are allowed")
    control = re.search(CONTROL_PATTERN, name.strip())
    if control:  # names are shown in tables, logs and answers, each on one line
        raise InputError(f"key name {shown(name.strip())} holds the control character "
                         f"{control.group()!r}: use printable characters only")
    try:
        chosen = Scope(scope)
    except ValueError:
        raise InputError(f"unknown scope {scope!r}: use read, write or admin") from None
    if rate_limit is not None:
        rate_limit = str(RateLimit.parse(rate_limit))
    key_id = secrets.token_hex(4)
    text = f"{PREFIX}_{key_id}_{secrets.token_urlsafe(32)}"
    record = ApiKey(key_id, name.strip(), chosen, digest(text), rate_limit,
                    dt.datetime.now(dt.UTC).replace(microsecond=0))
    return record, text


def key_id_of(text: str) -> str | None:
    """The id part of a presented key, or None if it does not look like one of ours."""
    parts = text.split("_", 2)
    if len(parts) != 3 or parts[0] != PREFIX or not parts[1] or not parts[2]:
        return None
    return parts[1]


def matches(record: ApiKey, text: str) -> bool:
    return hmac.compare_digest(record.hash, digest(text))

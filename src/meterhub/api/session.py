"""Dashboard sessions: an API key given once on the login page becomes a signed, expiring
cookie, so the pages' own requests carry no key.

The cookie names the key by its id (never the key itself) with an expiry, signed with
HMAC-SHA256 under a secret kept in the store (made on first use, so it outlives restarts
and every process serving the store shares it). It is HttpOnly (the pages' JavaScript
cannot read it) and SameSite=Strict (another site's page cannot send it). A session is
as good as its key: revoking the key ends it at once. It stands for the key's READ scope
only: paths that write or administer never accept it (`meterhub.api.security.require`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import time

from fastapi import Request
from starlette.responses import Response

from meterhub.hub import Hub
from meterhub.keys import ApiKey

COOKIE = "meterhub_session"
SECRET_STATE = "api.session_secret"  #: the store state holding the signing secret
DEFAULT_HOURS = 12  #: a session's life when none is configured


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class Sessions:
    """Signs and reads session cookies with the store's secret; ``hours`` is their life.

    The secret is read when first needed and made (and committed to the store) by the
    first login, so serving pages writes nothing until someone logs in."""

    def __init__(self, hub: Hub, hours: float = DEFAULT_HOURS) -> None:
        self.hub, self.hours = hub, hours
        self._secret: bytes | None = None

    def _key(self, create: bool) -> bytes | None:
        if self._secret is None:
            stored = self.hub.get_state(SECRET_STATE)
            if stored is None and create:
                self.hub.write(None, origin="api",
                               state={SECRET_STATE: secrets.token_urlsafe(32)})
                stored = self.hub.get_state(SECRET_STATE)
            self._secret = stored.encode("ascii") if stored is not None else None
        return self._secret

    def _sign(self, secret: bytes, body: str) -> str:
        return _b64(hmac.new(secret, body.encode("ascii"), hashlib.sha256).digest())

    def issue(self, key: ApiKey, now: float | None = None) -> str:
        """A cookie value for ``key``: its id and expiry, signed."""
        secret = self._key(create=True)
        assert secret is not None
        expires = int((time.time() if now is None else now) + self.hours * 3600)
        body = f"{key.key_id}.{expires}"
        return f"{body}.{self._sign(secret, body)}"

    def key_id(self, value: str, now: float | None = None) -> str | None:
        """The key id a cookie value names, if its signature holds and it has not expired."""
        if not value.isascii():  # a planted cookie may hold anything: not ours
            return None
        key_id, _, rest = value.partition(".")
        expires, _, signature = rest.partition(".")
        if not key_id or not re.fullmatch(r"[0-9]{1,12}", expires) or not signature:
            return None
        secret = self._key(create=False)
        if secret is None:  # no session was ever issued over this store
            return None
        if not hmac.compare_digest(signature, self._sign(secret, f"{key_id}.{expires}")):
            return None
        if int(expires) <= (time.time() if now is None else now):
            return None
        return key_id

    def set(self, response: Response, key: ApiKey, *, secure: bool) -> None:
        response.set_cookie(COOKIE, self.issue(key), max_age=int(self.hours * 3600),
                            httponly=True, samesite="strict", secure=secure, path="/")

    @staticmethod
    def clear(response: Response) -> None:
        response.delete_cookie(COOKIE, httponly=True, samesite="strict", path="/")


def session_key(request: Request) -> ApiKey | None:
    """The active key the request's session cookie stands for: none without a cookie, with
    a forged or expired one, or once its key is revoked."""
    sessions: Sessions | None = getattr(request.app.state, "sessions", None)
    value = request.cookies.get(COOKIE)
    key_id = sessions.key_id(value) if sessions is not None and value else None
    key: ApiKey | None = request.app.state.keys.by_id(key_id) if key_id else None
    return key

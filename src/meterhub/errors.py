"""The meterhub error tree.

Every error a user can meet carries a one-sentence message saying what to do, and never
a secret. Callers branch on the class, people read the message::

    MeterhubError
    ├── InputError          bad rows, files or arguments (nothing was written)
    ├── UnitError           unknown unit, or a conversion between incompatible units
    ├── NotFoundError       a device or channel the store does not know
    ├── ConflictError       a name that is already taken (an API key's)
    ├── StoreError          the store cannot be opened or used
    │   └── StoreInUseError another process owns the store file
    └── SourceError         a vendor API call failed
        ├── AuthError               credentials refused (never retried)
        ├── RateLimitedError        limits hit and retries exhausted
        ├── UnavailableError        5xx, time-outs, connection errors after retries
        ├── MalformedResponseError  a body without the documented shape
        └── VendorError             a vendor error code that retrying will not fix
"""

from __future__ import annotations


class MeterhubError(Exception):
    """Base of every error meterhub raises on purpose."""


class InputError(MeterhubError):
    """Input that cannot be stored or used as given; nothing of it was written."""

    def __init__(self, message: str, *, row: int | None = None,
                 reason: str | None = None) -> None:
        super().__init__(message)
        #: 1-based row of the offending item, where the input has rows.
        self.row = row
        #: the message without its row prefix, for callers that name the row their own way
        self.reason = reason or message


class UnitError(MeterhubError):
    """A unit pint does not know, or a conversion between incompatible units."""


class NotFoundError(MeterhubError):
    """A device, channel or other named thing the store does not hold."""


class ConflictError(MeterhubError):
    """A name or key that is already taken; nothing was changed."""


class StoreError(MeterhubError):
    """The store cannot be opened or used."""


class StoreNotFoundError(StoreError):
    """A command that only reads was pointed at a store that does not exist."""

    def __init__(self, message: str, *, path: str) -> None:
        super().__init__(message)
        self.path = path


class StoreInUseError(StoreError):
    """Another process holds the store file (DuckDB allows one owner per file)."""


class SourceError(MeterhubError):
    """A vendor API call failed; subclasses say whether trying again can help."""


class AuthError(SourceError):
    """The vendor refused the credentials: never retried, the user must fix them."""


class RateLimitedError(SourceError):
    """The vendor's limit was hit and retries ran out; ``retry_after`` seconds is its hint."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class UnavailableError(SourceError):
    """Server errors, time-outs or connection failures that outlasted the retries."""


class MalformedResponseError(SourceError):
    """A response that does not have the documented shape (cut short, wrong type)."""


class VendorError(SourceError):
    """The vendor answered with an error of its own that retrying will not fix."""

    def __init__(self, message: str, *, status: int, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code

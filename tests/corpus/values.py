"""The hostile values, defined once: every family of paths draws its cases from here.

Each table maps a short name (which becomes part of the test id, so a failure names its
value) to the value. Values that only JSON's text can carry (its non-standard NaN token, an
integer of 400 digits, a lone surrogate escape) or only raw bytes can (invalid UTF-8) are
`Raw` JSON text, spliced into a body as they are.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson


@dataclass(frozen=True)
class Raw:
    """JSON text put into a body as it is (orjson cannot write these values)."""

    text: bytes


def dumps(value: Any) -> bytes:
    """``value`` as JSON, where `Raw` parts are spliced in as they are."""
    if isinstance(value, Raw):
        return value.text
    if isinstance(value, dict):
        return b"{" + b",".join(orjson.dumps(k) + b":" + dumps(v) for k, v in value.items()
                                ) + b"}"
    if isinstance(value, list):
        return b"[" + b",".join(dumps(v) for v in value) + b"]"
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 2**63:
        return str(value).encode()  # beyond orjson's 64 bits: JSON has no such limit
    return orjson.dumps(value)


#: times at the edges, in several zones; "naive 1800" and "DST gap" are naive, read in the
#: zone of the path (UTC for pushes, the meter's zone, Europe/Amsterdam, for DSMR-reader's)
TIMES: dict[str, Any] = {
    "year 1": "0001-01-01T00:00:00Z",
    "year 1 +01:00": "0001-01-01T00:00:00+01:00",  # year 0 in UTC
    "9999-12-31": "9999-12-31T23:59:59Z",
    "9999-12-31 -05:00": "9999-12-31T23:59:59-05:00",  # year 10000 in UTC
    "1799 last second": "1799-12-31T23:59:59Z",
    "2200": "2200-01-01T00:00:00Z",
    "naive 1800": "1800-01-01T00:00:00",  # 1799-12-31T23:40:28Z in Europe/Amsterdam
    "DST gap": "2024-03-31T02:30:00",  # no such wall time in Europe/Amsterdam
    "2024-02-30": "2024-02-30T00:00:00Z",
    "empty": "",
    "now": "now",
    "number": 1729900800,
    "float": 1.5,
    "true": True,
    "null": None,
    "object": {},
    "array": [],
}
#: the times no path may store (the others depend on the zone a path reads naive times in,
#: or are refused by type only where a type is checked)
TIMES_REFUSED = ("year 1", "year 1 +01:00", "9999-12-31", "9999-12-31 -05:00",
                 "1799 last second", "2200", "2024-02-30", "empty", "now")

#: numbers huge and tiny, as numbers and as text
NUMBERS: dict[str, Any] = {
    "1e308": 1e308,  # in MWh: beyond a float in kWh
    "-1.8e308": Raw(b"-1.8e308"),  # beyond a double
    "5e-324": 5e-324,
    "10**30": 10**30,
    "10**400": Raw(str(10**400).encode()),
    "text 1e308": "1e308",
    "text -1.8e308": "-1.8e308",
    "text 1e400": "1e400",
    "text 0x10": "0x10",
    "text 1_000": "1_000",
    "text 10**400": str(10**400),
}
#: NaN and infinity in every spelling, as text and as JSON's non-standard tokens
NON_FINITE: dict[str, Any] = {
    "text NaN": "NaN",
    "text nan": "nan",
    "text Infinity": "Infinity",
    "text -inf": "-inf",
    "token NaN": Raw(b"NaN"),
    "token Infinity": Raw(b"Infinity"),
    "token -Infinity": Raw(b"-Infinity"),
}
#: the wrong types where a value is required
TYPES: dict[str, Any] = {
    "object": {"value": 1},
    "array": [1, 2],
    "true": True,
    "null": None,
}
#: text no identifier or name may hold
TEXTS: dict[str, Any] = {
    "NUL": "a\x00b",
    "CR": "a\rb",
    "LF": "a\nb",
    "DEL": "a\x7fb",
    "NEL": "a\u0085b",
    "only LF": "\n",
    "1M chars": "x" * 1_000_000,
    "lone surrogate": Raw(b'"a\\ud800b"'),
    "invalid UTF-8": Raw(b'"a\xff\xfeb"'),
    "empty": "",
}
#: names that look like attacks: valid identifiers, stored and read back as they are
INJECTIONS: dict[str, str] = {
    "SQL": "'; DROP TABLE readings; --",
    "path": "../../etc/passwd",
    "HTML": "<script>alert(1)</script>",
    "percent NUL": "%00",
    "JNDI": "${jndi:ldap://x}",
}
#: query values: the corpus as text (a query holds nothing else), plus the long and the
#: undecodable
QUERY_TEXTS: dict[str, str] = {
    **{name: value for name, value in TIMES.items() if isinstance(value, str)},
    **{name: value for name, value in NUMBERS.items() if isinstance(value, str)},
    **{name: value for name, value in NON_FINITE.items() if isinstance(value, str)},
    **{f"text {name}": value for name, value in TEXTS.items()
       if isinstance(value, str) and len(value) < 100},
    **{f"injection {name}": value for name, value in INJECTIONS.items()},
    "60,000 chars": "x" * 60_000,  # within the server's 64 kB request head
    "-1": "-1",
    "0": "0",
    "true": "true",
}


def cases(*tables: dict[str, Any], only: tuple[str, ...] | None = None,
          skip: tuple[str, ...] = ()) -> list[tuple[str, Any]]:
    """(name, value) of the tables' entries, in order (``only``: just those names)."""
    found = [(name, value) for table in tables for name, value in table.items()
             if (only is None or name in only) and name not in skip]
    assert found, "no case chosen"
    return found

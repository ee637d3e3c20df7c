"""A remote datalogger's push, written the way DSMR-reader's documented client script sends
telegrams (its `send_telegram`): `requests`, the key in `X-AUTHKEY`, the telegram as the
form field `telegram`, 200 or 201 taken as success and any other answer printed as
`API error: <body>`. The project's own code, so that the test needs nothing outside the
repository."""

from __future__ import annotations

import requests


def send_telegram(telegram: str, api_url: str, api_key: str) -> None:
    response = requests.post(api_url, headers={"X-AUTHKEY": api_key},
                             data={"telegram": telegram}, timeout=30)
    # DSMR-reader's script: old versions answer 200, new ones 201; anything else is an error
    # whose hint is the body.
    if response.status_code not in (200, 201):
        print(f"API error: {response.text}")

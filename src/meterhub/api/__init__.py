"""The REST API (FastAPI on uvicorn): `create_app` over a `meterhub.Hub`."""

from meterhub.api.app import create_app

__all__ = ["create_app"]

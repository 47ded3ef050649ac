"""The HTTP API (FastAPI): routes under /v1, errors as RFC 9457 problem documents."""

from gateway.api.app import create_app

__all__ = ["create_app"]

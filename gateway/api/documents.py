"""Bodies that are documents: YAML (application/yaml) or JSON."""

from __future__ import annotations

import json
from typing import Any

from fastapi import Request

from gateway.catalogue.documents import Strict, parse_document, validate_document
from gateway.errors import InvalidInput


def parse_body(request: Request, body: bytes, model: type[Strict]) -> Any:
    content_type = request.headers.get("content-type", "application/json").lower()
    if "yaml" in content_type:
        return parse_document(body, model)
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise InvalidInput("the body is not valid JSON") from None
    return validate_document(data, model)

"""The OpenAPI document: every error a route can answer, as `application/problem+json` with one
`Problem` schema, and the bearer security scheme on every route that needs a token.

Routes declare their own extra error codes with `responses=problems(409, …)`; the codes every
route shares follow from its shape (a token: 401/403/422/503; parameters or a body: 422; an id
in the path: 404; anything: 500), so a new route cannot forget them.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, ConfigDict, Field

PROBLEM_JSON = "application/problem+json"
PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}


class Problem(BaseModel):
    """An RFC 9457 problem; extensions (`rule`, `reason_code`, `errors`, …) may follow."""

    model_config = ConfigDict(extra="allow")
    type: str = Field(examples=["urn:insitu:problem:forbidden"])
    title: str
    status: int
    detail: str
    instance: str | None = None


def problems(*codes: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route's own error codes (the content is filled in by `install`)."""
    return {code: {"description": HTTPStatus(code).phrase} for code in codes}


def _codes(path: str, operation: dict[str, Any]) -> tuple[set[int], bool]:
    """The error codes an operation shares with every other of its shape, and whether it
    needs a token (it reads the `Authorization` header, which `get_principal` declares)."""
    params = operation.get("parameters", [])
    authenticated = any(
        p.get("in") == "header" and p.get("name", "").lower() == "authorization" for p in params
    )
    codes = {500}
    if authenticated:  # a refused token, a policy denial, an identity not acceptable, a store down
        codes |= {401, 403, 422, 503}
    if any(p.get("in") in {"query", "header"} for p in params) or "requestBody" in operation:
        codes.add(422)
    if "{" in path:
        codes |= {404, 422}
    if path.startswith("/open/"):  # rate limited per key or address; an unknown API key is 401
        codes |= {401, 429}
    return codes, authenticated


def _document(app: FastAPI) -> dict[str, Any]:
    if app.openapi_schema:
        return app.openapi_schema
    document = get_openapi(
        title=app.title,
        version=app.version,
        summary=app.summary,
        description=app.description,
        routes=app.routes,
    )
    components = document.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    schemas["Problem"] = Problem.model_json_schema()
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    components["securitySchemes"] = {
        "bearer": {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "JWT",
            "description": "An RFC 9068 access token (at+jwt) from the configured issuer.",
        }
    }
    for path, item in document.get("paths", {}).items():
        for operation in item.values():
            codes, authenticated = _codes(path, operation)
            responses = operation.setdefault("responses", {})
            declared = {int(c) for c in responses if c.isdigit() and int(c) >= 400}
            for code in sorted(codes | declared):
                responses[str(code)] = {
                    "description": HTTPStatus(code).phrase,
                    "content": {PROBLEM_JSON: {"schema": PROBLEM_REF}},
                }
            operation["responses"] = dict(sorted(responses.items()))
            if authenticated:
                operation["security"] = [{"bearer": []}]
                operation["parameters"] = [
                    p
                    for p in operation["parameters"]
                    if not (p.get("in") == "header" and p["name"].lower() == "authorization")
                ]
                if not operation["parameters"]:
                    del operation["parameters"]
    app.openapi_schema = document
    return document


def install(app: FastAPI) -> None:
    app.openapi = lambda: _document(app)  # type: ignore[method-assign]

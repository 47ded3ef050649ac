"""Request dependencies: the gateway object and the verified caller."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request

from gateway.auth.errors import InvalidIdentity, TokenInvalid, TokenMissing
from gateway.auth.principal import Principal
from gateway.auth.verifier import parse_bearer
from gateway.context import Gateway
from gateway.errors import InvalidInput
from gateway.timing import stage

MAX_BODY = 1_000_000


async def get_gateway(request: Request) -> Gateway:
    gw: Gateway = request.app.state.gateway
    return gw


def get_principal(
    request: Request,
    gw: Annotated[Gateway, Depends(get_gateway)],
    authorization: Annotated[str | None, Header()] = None,
) -> Principal:
    """The verified caller; a refused token is a denied decision and is audited
    (`gateway.trail.refusals`: bounded, however many arrive)."""
    try:
        with stage("token"):
            return gw.tokens.verify(parse_bearer(authorization))
    except (TokenMissing, TokenInvalid, InvalidIdentity) as exc:
        gw.failed_auth.note(_reason(exc), request.client.host if request.client else None)
        raise  # answered as before: 401 (422 for an unacceptable identity)


def _reason(exc: Exception) -> str:
    """A fixed phrase for the audit log, never text taken from the request."""
    if isinstance(exc, TokenInvalid):
        return exc.reason
    if isinstance(exc, TokenMissing):
        return "no bearer token"
    return "identity not acceptable"


GatewayDep = Annotated[Gateway, Depends(get_gateway)]
PrincipalDep = Annotated[Principal, Depends(get_principal)]


async def document_body(request: Request) -> bytes:
    """The raw body of a YAML or JSON document, bounded in size."""
    body = await request.body()
    if len(body) > MAX_BODY:
        raise InvalidInput("the document is larger than 1 MB")
    return body

"""OpenID Connect discovery: an issuer's metadata at ``<issuer>/.well-known/openid-configuration``.

The metadata's ``issuer`` must equal the configured issuer exactly (OpenID Connect Discovery
1.0 §4.3): a provider that answers for another issuer is a misconfiguration or an attack, and
its ``jwks_uri`` is not trusted. Every URL taken from or given to this module must be ``https``;
plain ``http`` is accepted on loopback only (tests, a provider on the same host).

Fetching is bounded: no redirects, a size limit and an overall time limit; anything else raises
`DiscoveryError` (a ValueError) with a short reason that never carries the response body.
"""

from __future__ import annotations

import ipaddress
import json
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

import httpx

WELL_KNOWN = "/.well-known/openid-configuration"
#: Members this project uses; each, when present, must be an https (or loopback http) URL.
URL_MEMBERS = (
    "jwks_uri",
    "token_endpoint",
    "device_authorization_endpoint",
    "authorization_endpoint",
    "revocation_endpoint",
)
MAX_METADATA_BYTES = 256 * 1024


class DiscoveryError(ValueError):
    """The issuer's metadata cannot be fetched or must not be trusted."""


def _loopback(host: str | None) -> bool:
    if host == "localhost":
        return True
    try:
        return host is not None and ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_url(url: str, what: str) -> str:
    """``url`` if it is https, or http on loopback; else ValueError naming ``what``."""
    parts = urlsplit(url)
    if not parts.hostname or not (
        parts.scheme == "https" or (parts.scheme == "http" and _loopback(parts.hostname))
    ):
        raise ValueError(f"the {what} must use https (plain http only on loopback)")
    return url


def metadata_url(issuer: str) -> str:
    """Where the issuer publishes its metadata (trailing slash of the issuer removed first)."""
    check_url(issuer, "OIDC issuer")
    return issuer.rstrip("/") + WELL_KNOWN


def fetch_json(
    client: httpx.Client,
    url: str,
    *,
    timeout_s: float = 3.0,
    max_bytes: int = MAX_METADATA_BYTES,
    deadline: float | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> object:
    """GET ``url`` as JSON: 200 only, no redirects, at most ``max_bytes``; else ValueError.

    ``timeout_s`` bounds each read and, unless ``deadline`` (on ``clock``) is given, the body
    as a whole: a server dripping a byte at a time is cut off between reads.
    """
    if deadline is None:
        deadline = clock() + timeout_s
    with client.stream(
        "GET",
        url,
        timeout=httpx.Timeout(timeout_s),
        follow_redirects=False,
        headers={"Accept": "application/json", "Accept-Encoding": "identity"},
    ) as response:
        if response.status_code != httpx.codes.OK:
            raise DiscoveryError(f"status {response.status_code}")
        if response.headers.get("Content-Encoding", "identity").strip().lower() != "identity":
            # A compressed body would be inflated before the size limit sees it (zip bomb).
            raise DiscoveryError("compressed response refused")
        body = bytearray()
        for chunk in response.iter_bytes():
            body += chunk
            if len(body) > max_bytes:
                raise DiscoveryError("response too large")
            if clock() > deadline:
                raise DiscoveryError("response too slow")
    try:
        return json.loads(bytes(body), object_pairs_hook=_no_duplicates)
    except (ValueError, RecursionError):
        raise DiscoveryError("response is not JSON") from None


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """An object with a member twice (two ``issuer``s, two ``n``s) is not trusted either way."""
    result = dict(pairs)
    if len(result) != len(pairs):
        raise ValueError("duplicate member")
    return result


def validate_metadata(document: object, issuer: str) -> Mapping[str, Any]:
    """The metadata if it names exactly ``issuer``; every endpoint URL in it is checked."""
    if not isinstance(document, Mapping):
        raise DiscoveryError("metadata is not a JSON object")
    if document.get("issuer") != issuer:
        raise DiscoveryError("metadata names a different issuer")
    for name in URL_MEMBERS:
        value = document.get(name)
        if value is not None:
            if not isinstance(value, str):
                raise DiscoveryError(f"metadata member {name} is not a URL")
            try:
                check_url(value, name)
            except ValueError as exc:
                raise DiscoveryError(str(exc)) from None
    return document


def discover(client: httpx.Client, issuer: str, *, timeout_s: float = 3.0) -> Mapping[str, Any]:
    """The issuer's validated metadata (`DiscoveryError` / httpx.HTTPError on failure)."""
    return validate_metadata(fetch_json(client, metadata_url(issuer), timeout_s=timeout_s), issuer)


def discover_jwks_uri(client: httpx.Client, issuer: str, *, timeout_s: float = 3.0) -> str:
    """The ``jwks_uri`` of the issuer's validated metadata."""
    jwks_uri = discover(client, issuer, timeout_s=timeout_s).get("jwks_uri")
    if not isinstance(jwks_uri, str):
        raise DiscoveryError("metadata has no jwks_uri")
    return jwks_uri

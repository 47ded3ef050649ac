"""Signing the CLI in to an external identity provider (Authlib), and the token cache.

Flows (OAuth 2.0 through `authlib.integrations.httpx_client.OAuth2Client`):

- client credentials (RFC 6749 §4.4) for service accounts; the secret comes from
  ``INSITU_CLIENT_SECRET`` and is never written to disk;
- device authorization (RFC 8628) for people: the CLI shows a code and a URL, the person signs
  in with a browser anywhere, the CLI polls the token endpoint (``interval``, ``slow_down``);
- authorization code with PKCE for people on this machine (`gateway.cli.browser_login`).

Endpoints come from the issuer's OpenID Connect metadata (`gateway.auth.discovery`: the
metadata must name the issuer exactly; every endpoint must be https, http only on loopback).

The cache is one JSON file, mode 0600 in a 0700 directory (``$INSITU_CONFIG_DIR``, else
``$XDG_CONFIG_HOME/insitu``, else ``~/.config/insitu``), written atomically; entries are keyed by
gateway URL and record the issuer. A token that expires within `REFRESH_LEEWAY_S` is refreshed
(refresh token, or client credentials again when the secret is in the environment) before use.
A cache file that others can read is refused, as the issuer's key file is.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import stat
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway.cli.output import CliError

if TYPE_CHECKING:  # authlib, httpx and the discovery module load only when a command talks OIDC
    from authlib.integrations.httpx_client import OAuth2Client

CACHE_FILE = "credentials.json"
REFRESH_LEEWAY_S = 60
MAX_CACHE_BYTES = 1024 * 1024
DEVICE_CODE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
MAX_DEVICE_WAIT_S = 1800


def config_dir() -> Path:
    explicit = os.environ.get("INSITU_CONFIG_DIR")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CONFIG_HOME")
    return (Path(xdg) if xdg else Path.home() / ".config") / "insitu"


@dataclass(frozen=True, slots=True)
class Credential:
    """One cached sign-in: what the CLI needs to use and to refresh an access token."""

    issuer: str
    client_id: str
    grant: str  # "client_credentials" | "device_code"
    token_endpoint: str
    access_token: str
    expires_at: int
    refresh_token: str | None = None
    scope: str | None = None
    audience: str | None = None
    revocation_endpoint: str | None = None
    resource: str | None = None  # RFC 8707 resource indicator asked for at sign-in

    def fresh(self, now: float) -> bool:
        return now + REFRESH_LEEWAY_S < self.expires_at


class TokenCache:
    """The credentials file: ``{"<gateway url>": {credential}, ...}``."""

    def __init__(self, directory: Path | None = None) -> None:
        self.directory = directory or config_dir()
        self.path = self.directory / CACHE_FILE

    def _check_directory(self) -> None:
        """The directory must be ours and writable by nobody else: whoever can write there
        can replace the file, and with it the token endpoint the client secret is sent to."""
        try:
            info = os.stat(self.directory)
        except FileNotFoundError:
            return
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid() or info.st_mode & 0o022:
            raise CliError(
                f"the credentials directory {self.directory} is not yours alone; "
                "make it mode 0700 and sign in again",
                1,
            )

    def _read(self) -> dict[str, Any]:
        self._check_directory()
        try:
            fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except FileNotFoundError:
            return {}
        except OSError:
            raise CliError("cannot read the credentials cache; run `insitu logout`", 1) from None
        with os.fdopen(fd, "rb") as handle:
            info = os.fstat(handle.fileno())
            if (
                not stat.S_ISREG(info.st_mode)
                or info.st_mode & 0o077
                or info.st_uid != os.geteuid()
            ):
                raise CliError(
                    f"the credentials cache {self.path} is accessible by group or others; "
                    "remove it and sign in again",
                    1,
                )
            raw = handle.read(MAX_CACHE_BYTES + 1)
        try:
            data = json.loads(raw)
        except ValueError:
            data = None
        if len(raw) > MAX_CACHE_BYTES or not isinstance(data, dict):
            raise CliError("the credentials cache is malformed; run `insitu logout`", 1)
        return data

    def get(self, url: str) -> Credential | None:
        entry = self._read().get(url)
        if not isinstance(entry, dict):
            return None
        try:
            return Credential(**entry)
        except TypeError:
            return None

    def put(self, url: str, credential: Credential) -> None:
        data = self._read()
        data[url] = asdict(credential)
        self._write(data)

    def remove(self, url: str) -> Credential | None:
        data = self._read()
        removed = self.get(url)
        if url in data:
            del data[url]
            self._write(data)
        return removed

    def _write(self, data: Mapping[str, Any]) -> None:
        self.directory.mkdir(parents=True, mode=0o700, exist_ok=True)
        self._check_directory()
        temporary = self.directory / f".{CACHE_FILE}.{secrets.token_hex(4)}.tmp"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
        fd = os.open(temporary, flags, 0o600)
        try:
            with os.fdopen(fd, "w") as handle:
                json.dump(data, handle, indent=2)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise


# --- talking to the identity provider ---------------------------------------------------------


def provider_metadata(issuer: str) -> Mapping[str, Any]:
    """The issuer's validated OpenID Connect metadata, or a one-line `CliError`."""
    import httpx

    from gateway.auth.discovery import DiscoveryError, check_url, discover

    try:
        check_url(issuer, "issuer")
        with httpx.Client() as client:
            return discover(client, issuer, timeout_s=10.0)
    except (DiscoveryError, ValueError) as exc:
        raise CliError(f"identity provider metadata refused: {exc}", 1) from None
    except httpx.HTTPError as exc:
        raise CliError(f"cannot reach the identity provider ({type(exc).__name__})", 1) from None


def _oauth_client(client_id: str, client_secret: str | None, scope: str | None) -> OAuth2Client:
    from authlib.integrations.httpx_client import OAuth2Client

    return OAuth2Client(
        client_id=client_id,
        client_secret=client_secret,
        token_endpoint_auth_method="client_secret_basic" if client_secret else "none",
        scope=scope,
        timeout=30.0,
        follow_redirects=False,
    )


def credential_from_token(
    token: Mapping[str, Any],
    *,
    issuer: str,
    client_id: str,
    grant: str,
    metadata: Mapping[str, Any],
    scope: str | None,
    audience: str | None,
    previous_refresh: str | None = None,
    resource: str | None = None,
) -> Credential:
    access_token = token.get("access_token")
    if not isinstance(access_token, str) or not access_token:
        raise CliError("the identity provider answered without an access token", 1)
    if str(token.get("token_type", "")).lower() != "bearer":
        raise CliError("the identity provider answered with a token that is not a bearer token", 1)
    expires_at = token.get("expires_at")
    if not isinstance(expires_at, int | float):
        expires_at = time.time() + 300  # no expires_in: treat as short-lived, refresh soon
    refresh = token.get("refresh_token")
    return Credential(
        issuer=issuer,
        client_id=client_id,
        grant=grant,
        token_endpoint=str(metadata["token_endpoint"]),
        access_token=access_token,
        expires_at=int(expires_at),
        refresh_token=refresh if isinstance(refresh, str) else previous_refresh,
        scope=scope,
        audience=audience,
        revocation_endpoint=metadata.get("revocation_endpoint"),
        resource=resource,
    )


def extra_params(audience: str | None, resource: str | None = None) -> dict[str, str]:
    """Provider-specific `audience` and the RFC 8707 `resource` indicator, when given."""
    params = {"audience": audience} if audience else {}
    if resource:
        params["resource"] = resource
    return params


def provider_error(exc: Exception) -> CliError:
    from authlib.integrations.base_client import OAuthError

    if isinstance(exc, OAuthError):
        code = exc.error if isinstance(exc.error, str) else ""
        shown = code if re.fullmatch(r"[a-z_]{1,64}", code) else "an unexpected error"
        return CliError(f"the identity provider refused: {shown}", 1)
    return CliError(f"cannot get a token from the identity provider ({type(exc).__name__})", 1)


def token_endpoint(metadata: Mapping[str, Any]) -> str:
    endpoint = metadata.get("token_endpoint")
    if not isinstance(endpoint, str):
        raise CliError("the identity provider publishes no token endpoint", 1)
    return endpoint


def client_credentials_login(
    issuer: str,
    client_id: str,
    client_secret: str,
    *,
    scope: str | None,
    audience: str | None,
    resource: str | None = None,
) -> Credential:
    from authlib.integrations.base_client import OAuthError
    from httpx2 import HTTPError as OAuthTransportError

    metadata = provider_metadata(issuer)
    endpoint = token_endpoint(metadata)
    with _oauth_client(client_id, client_secret, scope) as oauth:
        try:
            token = oauth.fetch_token(
                endpoint, grant_type="client_credentials", **extra_params(audience, resource)
            )
        except (OAuthError, OAuthTransportError, ValueError) as exc:
            raise provider_error(exc) from None
    return credential_from_token(
        token,
        issuer=issuer,
        client_id=client_id,
        grant="client_credentials",
        metadata=metadata,
        scope=scope,
        audience=audience,
        resource=resource,
    )


def device_login(
    issuer: str,
    client_id: str,
    *,
    scope: str | None,
    audience: str | None,
    resource: str | None = None,
    show: Callable[[str, str, str | None], None],
    sleep: Callable[[float], None] = time.sleep,
) -> Credential:
    """RFC 8628: ask for a device code, show it, poll until the person has signed in."""
    from authlib.integrations.base_client import OAuthError
    from httpx2 import HTTPError as OAuthTransportError

    metadata = provider_metadata(issuer)
    endpoint = token_endpoint(metadata)
    device_endpoint = metadata.get("device_authorization_endpoint")
    if not isinstance(device_endpoint, str):
        raise CliError("the identity provider does not offer the device flow", 1)
    with _oauth_client(client_id, None, scope) as oauth:
        form = {
            "client_id": client_id,
            **({"scope": scope} if scope else {}),
            **extra_params(audience, resource),
        }
        try:
            response = oauth.request(
                "POST",
                device_endpoint,
                withhold_token=True,
                data=form,
                headers={"Accept": "application/json"},
            )
            grant = response.json() if response.status_code == 200 else None
        except (OAuthTransportError, ValueError) as exc:
            raise provider_error(exc) from None
        if not isinstance(grant, dict) or not all(
            isinstance(grant.get(k), str) for k in ("device_code", "user_code", "verification_uri")
        ):
            raise CliError("the identity provider refused the device authorization request", 1)
        show(grant["user_code"], grant["verification_uri"], grant.get("verification_uri_complete"))
        try:  # RFC 8628 §3.2: default 5 s; bounded so a provider cannot stall or spin us
            interval = min(max(float(grant.get("interval") or 5), 1.0), 60.0)
        except (TypeError, ValueError):
            interval = 5.0
        expires_in = grant.get("expires_in")
        wait = min(float(expires_in), MAX_DEVICE_WAIT_S) if isinstance(expires_in, int) else 600
        deadline = time.monotonic() + wait
        while True:
            sleep(interval)
            try:
                token = oauth.fetch_token(
                    endpoint,
                    grant_type=DEVICE_CODE_GRANT,
                    device_code=grant["device_code"],
                    **extra_params(None, resource),
                )
                break
            except OAuthError as exc:
                if exc.error == "slow_down":
                    interval += 5
                elif exc.error != "authorization_pending":
                    raise provider_error(exc) from None
            except (OAuthTransportError, ValueError) as exc:
                raise provider_error(exc) from None
            if time.monotonic() + interval > deadline:
                raise CliError("the device code expired before sign-in finished", 1)
    return credential_from_token(
        token,
        issuer=issuer,
        client_id=client_id,
        grant="device_code",
        metadata=metadata,
        scope=scope,
        audience=audience,
        resource=resource,
    )


def refresh(credential: Credential) -> Credential | None:
    """A fresh credential from the refresh token or the client secret; None when neither works.

    The secret in ``INSITU_CLIENT_SECRET`` belongs to a service account: it is sent only when
    renewing a client-credentials sign-in, never with a person's (public client's) refresh
    token, whose token endpoint may be another provider's.
    """
    from authlib.integrations.base_client import OAuthError
    from httpx2 import HTTPError as OAuthTransportError

    from gateway.auth.discovery import check_url

    secret = os.environ.get("INSITU_CLIENT_SECRET")
    if credential.grant != "client_credentials":
        secret = None
    metadata = {
        "token_endpoint": credential.token_endpoint,
        "revocation_endpoint": credential.revocation_endpoint,
    }
    try:
        check_url(credential.token_endpoint, "token endpoint")
    except ValueError:
        return None
    if credential.refresh_token:
        with _oauth_client(credential.client_id, secret, credential.scope) as oauth:
            try:
                token = oauth.refresh_token(
                    credential.token_endpoint,
                    refresh_token=credential.refresh_token,
                    **extra_params(None, credential.resource),
                )
            except (OAuthError, OAuthTransportError, ValueError):
                return None
    elif credential.grant == "client_credentials" and secret:
        with _oauth_client(credential.client_id, secret, credential.scope) as oauth:
            try:
                token = oauth.fetch_token(
                    credential.token_endpoint,
                    grant_type="client_credentials",
                    **extra_params(credential.audience, credential.resource),
                )
            except (OAuthError, OAuthTransportError, ValueError):
                return None
    else:
        return None
    return credential_from_token(
        token,
        issuer=credential.issuer,
        client_id=credential.client_id,
        grant=credential.grant,
        metadata=metadata,
        scope=credential.scope,
        audience=credential.audience,
        previous_refresh=credential.refresh_token,
        resource=credential.resource,
    )


def revoke(credential: Credential) -> None:
    """Best effort: ask the provider to revoke the refresh token (RFC 7009); errors are ignored."""
    from authlib.integrations.base_client import OAuthError
    from httpx2 import HTTPError as OAuthTransportError

    from gateway.auth.discovery import check_url

    if not credential.revocation_endpoint or not credential.refresh_token:
        return
    with contextlib.suppress(ValueError, OAuthError, OAuthTransportError):
        check_url(credential.revocation_endpoint, "revocation endpoint")
        with _oauth_client(credential.client_id, None, None) as oauth:
            oauth.revoke_token(
                credential.revocation_endpoint,
                token=credential.refresh_token,
                token_type_hint="refresh_token",  # noqa: S106 - a hint name, not a secret
            )


def cached_token(url: str, cache: TokenCache | None = None) -> str | None:
    """The cached access token for the gateway at ``url``, refreshed if it is about to expire."""
    cache = cache or TokenCache()
    credential = cache.get(url)
    if credential is None:
        return None
    now = time.time()
    if credential.fresh(now):
        return credential.access_token
    renewed = refresh(credential)
    if renewed is not None:
        cache.put(url, renewed)
        return renewed.access_token
    if now < credential.expires_at:
        return credential.access_token  # cannot refresh yet, still valid for a little while
    raise CliError("the signed-in session has expired; run `insitu login` again", 1)

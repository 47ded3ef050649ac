"""`insitu login` / `insitu logout`: sign the CLI in to the gateway's identity provider."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from gateway.cli.app import app
from gateway.cli.client import Client, gateway_url
from gateway.cli.output import CliError, console, errors

DEFAULT_CLIENT_ID = "insitu-cli"


def _issuer(explicit: str | None, url: str) -> str:
    """The issuer: --issuer, else INSITU_OIDC_ISSUER, else what the gateway names (RFC 9728)."""
    issuer = explicit or os.environ.get("INSITU_OIDC_ISSUER")
    if issuer:
        return issuer
    metadata = Client(url=url, token="").get("/.well-known/oauth-protected-resource")
    servers = metadata.get("authorization_servers") if isinstance(metadata, dict) else None
    if not isinstance(servers, list) or not servers or not isinstance(servers[0], str):
        raise CliError("the gateway does not name its identity provider; pass --issuer", 1)
    if not servers[0].startswith(("https://", "http://")):
        raise CliError(
            "this gateway uses its local issuer: get a token with `insitu token issue` "
            "on the gateway host and set INSITU_TOKEN",
            1,
        )
    return servers[0]


def _resource(url: str) -> str:
    """The gateway's RFC 9728 resource identifier (its public URL)."""
    metadata = Client(url=url, token="").get("/.well-known/oauth-protected-resource")
    resource = metadata.get("resource") if isinstance(metadata, dict) else None
    if not isinstance(resource, str) or not resource.startswith(("https://", "http://")):
        raise CliError("the gateway names no resource URL; pass --resource URL", 1)
    return resource


@app.command("login")
def login(  # noqa: PLR0917 - typer options are parameters
    client_credentials: Annotated[
        bool,
        typer.Option(
            "--client-credentials",
            help="Service account: client id + INSITU_CLIENT_SECRET (never on the command line).",
        ),
    ] = False,
    device: Annotated[
        bool, typer.Option("--device", help="A person: sign in with a browser on any device.")
    ] = False,
    browser: Annotated[
        bool,
        typer.Option("--browser", help="A person on this machine: authorization code with PKCE."),
    ] = False,
    issuer: Annotated[
        str | None, typer.Option(help="Identity provider (default: the one the gateway names).")
    ] = None,
    client_id: Annotated[
        str | None, typer.Option(help="OAuth client id (default $INSITU_CLIENT_ID or insitu-cli).")
    ] = None,
    scope: Annotated[str | None, typer.Option(help="Scopes to ask for.")] = None,
    audience: Annotated[
        str | None, typer.Option(help="`audience` parameter for providers that need one.")
    ] = None,
    url: Annotated[str | None, typer.Option(help="Gateway URL (default $INSITU_URL).")] = None,
    resource: Annotated[
        str | None,
        typer.Option(
            help="RFC 8707 resource indicator to ask the token for; `gateway` takes the "
            "gateway's own (its /.well-known/oauth-protected-resource `resource`)."
        ),
    ] = None,
) -> None:
    """Sign in and cache the access token for the gateway (file 0600 in the config directory)."""
    # Lazy: authlib and the OIDC client load only for this command, not for every CLI start.
    from gateway.cli.browser_login import browser_login
    from gateway.cli.credentials import TokenCache, client_credentials_login, device_login

    if [client_credentials, device, browser].count(True) != 1:
        raise CliError("choose one of --client-credentials, --device or --browser")
    target = gateway_url(url)
    provider = _issuer(issuer, target)
    cid = client_id or os.environ.get("INSITU_CLIENT_ID") or DEFAULT_CLIENT_ID
    if resource == "gateway":
        resource = _resource(target)
    if client_credentials:
        secret = os.environ.get("INSITU_CLIENT_SECRET")
        if not secret:
            raise CliError("set INSITU_CLIENT_SECRET for --client-credentials")
        credential = client_credentials_login(
            provider, cid, secret, scope=scope, audience=audience, resource=resource
        )
    elif browser:

        def show_url(authorization_url: str) -> None:
            errors.print(
                f"To sign in, open {authorization_url}",
                markup=False,
                highlight=False,
                soft_wrap=True,
            )
            errors.print(
                "waiting for the sign-in to finish…", markup=False, highlight=False, soft_wrap=True
            )

        credential = browser_login(
            provider, cid, scope=scope, audience=audience, show=show_url, resource=resource
        )
    else:

        def show(user_code: str, verification_uri: str, complete: str | None) -> None:
            errors.print(
                f"To sign in, open {verification_uri}",
                markup=False,
                highlight=False,
                soft_wrap=True,
            )
            errors.print(
                f"and enter the code {user_code}", markup=False, highlight=False, soft_wrap=True
            )
            if complete:
                errors.print(f"(or open {complete})", markup=False, highlight=False, soft_wrap=True)
            errors.print(
                "waiting for the sign-in to finish…", markup=False, highlight=False, soft_wrap=True
            )

        credential = device_login(
            provider, cid, scope=scope, audience=audience, resource=resource, show=show
        )
    TokenCache().put(target, credential)
    console.print(f"signed in to {target} through {provider}", markup=False)


@app.command("logout")
def logout(
    url: Annotated[str | None, typer.Option(help="Gateway URL (default $INSITU_URL).")] = None,
) -> None:
    """Forget the cached token for the gateway (and revoke its refresh token if possible)."""
    from gateway.cli.credentials import TokenCache, revoke

    target = gateway_url(url)
    removed = TokenCache().remove(target)
    if removed is None:
        console.print(f"not signed in to {target}", markup=False)
        return
    revoke(removed)
    console.print(f"signed out of {target}", markup=False)

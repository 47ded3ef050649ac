"""Commands that work on the home directly: init, serve, token issue, audit verify, demo."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
import uvicorn
from pydantic import ValidationError

from gateway import home
from gateway.auth.errors import IssuerKeyError
from gateway.auth.issuer import LocalIssuer
from gateway.auth.keys import DEFAULT_OVERLAP_S, IssuerKeys
from gateway.cli.app import HomeOpt, app, token_app
from gateway.cli.output import CliError, console
from gateway.errors import GatewayError
from gateway.settings import Settings, load_settings


def settings_for(home_dir: Path | None) -> Settings:
    try:
        return load_settings(home_dir)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise CliError(f"bad setting {where}: {first['msg']}") from None


def require_home(settings: Settings) -> None:
    if not (settings.home / "keys").is_dir():
        raise CliError(f"no insitu home at {settings.home}; run `insitu init` first")


@app.command("init")
def init(home_dir: HomeOpt = None) -> None:
    """Create the home: config, keys (0600), database, default policy."""
    settings = settings_for(home_dir)
    created = home.init_home(settings)
    if created:
        for item in created:
            console.print(f"created {item}", markup=False)
    else:
        console.print(f"{settings.home} is already initialised")


@app.command("serve")
def serve(
    home_dir: HomeOpt = None,
    host: Annotated[str | None, typer.Option()] = None,
    port: Annotated[int | None, typer.Option()] = None,
) -> None:
    """Run the gateway (HTTP API and job workers)."""
    from gateway.api import create_app

    settings = settings_for(home_dir)
    require_home(settings)
    try:
        application = create_app(settings)
    except GatewayError as exc:
        raise CliError(exc.detail, 1) from None
    except IssuerKeyError as exc:  # its message names the problem, never the key
        raise CliError(str(exc), 1) from None
    uvicorn.run(
        application,
        host=host or settings.host,
        port=port or settings.port,
        log_level="warning",
    )


@token_app.command("issue")
def token_issue(
    subject: Annotated[str, typer.Option()],
    department: Annotated[str, typer.Option()],
    role: Annotated[list[str], typer.Option("--role")],
    ttl: Annotated[int, typer.Option(help="Seconds the token is valid.")] = 3600,
    home_dir: HomeOpt = None,
) -> None:
    """Issue a token from the local issuer; prints the token alone on stdout."""
    settings = settings_for(home_dir)
    require_home(settings)
    keys = IssuerKeys.load(settings.keys_dir / home.ISSUER_KEYS)
    issuer = LocalIssuer(keys, issuer=settings.local_issuer, audience=settings.oidc_audience)
    try:
        token = issuer.issue(subject=subject, department=department, roles=role, ttl_s=ttl)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    typer.echo(token)


@token_app.command("rotate-key")
def token_rotate_key(
    overlap: Annotated[
        int,
        typer.Option(
            help="Seconds the previous key stays valid (0: revoke every earlier key now).",
            min=0,
            max=366 * 86400,
        ),
    ] = DEFAULT_OVERLAP_S,
    home_dir: HomeOpt = None,
) -> None:
    """Rotate the local issuer's signing key; a running gateway picks the new key up."""
    settings = settings_for(home_dir)
    require_home(settings)
    path = settings.keys_dir / home.ISSUER_KEYS
    try:
        keys = IssuerKeys.rotate_file(path, overlap_s=overlap)
    except IssuerKeyError as exc:
        raise CliError(str(exc).replace(str(path), path.name), 1) from None
    console.print(f"new signing key {keys.kid}", markup=False)
    for entry in keys.public_jwks()["keys"][1:]:  # type: ignore[index]
        kid = str(entry["kid"])
        until = keys.not_after(kid)
        shown = "until rotated out" if until is None else f"until {_utc(until)}"
        console.print(f"previous key {kid} stays valid {shown}", markup=False)
    if overlap == 0:
        console.print("earlier keys revoked: their tokens are refused from now on")


def _utc(timestamp: int) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


@app.command("demo")
def demo(
    home_dir: Annotated[Path, typer.Option("--home", help="Demo home (wiped each run).")] = Path(
        ".insitu-demo"
    ),
    serve_: Annotated[bool, typer.Option("--serve", help="Keep the gateway running.")] = False,
    port: Annotated[int, typer.Option(help="Port with --serve (default: any free port).")] = 0,
) -> None:
    """Run the main job end to end on the embedded default and verify the audit log."""
    from gateway.demo.flow import DemoError, run_demo

    try:
        run_demo(home_dir, serve=serve_, port=port if serve_ else 0)
    except DemoError as exc:
        raise CliError(str(exc), 1) from None

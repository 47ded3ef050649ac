"""Commands that work on the home directly: init, serve, token issue, audit verify, demo.

The home, settings, keys, uvicorn and the app are imported inside each command: a remote
command or ``--help`` must not pay for SQLAlchemy, DuckDB or pydantic at start.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from gateway.cli.app import HomeOpt, app, token_app
from gateway.cli.output import CliError, console

if TYPE_CHECKING:
    from gateway.settings import Settings

#: `gateway.auth.keys.DEFAULT_OVERLAP_S`, repeated so the option's default needs no import
#: of the key module (a unit test pins that the two agree).
DEFAULT_OVERLAP_S = 86400


def settings_for(home_dir: Path | None) -> Settings:
    from pydantic import ValidationError

    from gateway.settings import load_settings

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
    from gateway import home

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
    import uvicorn

    from gateway import serving
    from gateway.api import create_app
    from gateway.auth.errors import IssuerKeyError
    from gateway.errors import GatewayError
    from gateway.settings import LOOPBACK_HOSTS

    settings = settings_for(home_dir)
    require_home(settings)
    bind = host or settings.host
    if settings.console_insecure_http_cookies and bind not in LOOPBACK_HOSTS:
        raise CliError(
            "INSITU_CONSOLE_INSECURE_HTTP_COOKIES is for a gateway bound to loopback only"
        )
    try:
        application = create_app(settings)
    except GatewayError as exc:
        raise CliError(exc.detail, 1) from None
    except IssuerKeyError as exc:  # its message names the problem, never the key
        raise CliError(str(exc), 1) from None
    from gateway.logs import configure

    configure()  # JSON lines on stderr, each request's with its X-Request-Id
    config = serving.config(
        application,
        settings,
        host=bind,
        port=port or settings.port,
        log_config=None,  # uvicorn's own lines go through the JSON handler too
        access_log=False,  # `insitu.access` writes the access log, with the request id
    )
    uvicorn.Server(config).run()


@token_app.command("issue")
def token_issue(
    subject: Annotated[str, typer.Option()],
    department: Annotated[str, typer.Option()],
    role: Annotated[list[str], typer.Option("--role")],
    ttl: Annotated[int, typer.Option(help="Seconds the token is valid.")] = 3600,
    home_dir: HomeOpt = None,
) -> None:
    """Issue a token from the local issuer; prints the token alone on stdout."""
    from gateway import home
    from gateway.auth.issuer import LocalIssuer
    from gateway.auth.keys import IssuerKeys

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
    from gateway import home
    from gateway.auth.errors import IssuerKeyError
    from gateway.auth.keys import IssuerKeys

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

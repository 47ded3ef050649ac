"""`insitu console-link`: a one-time sign-in link to the web console (embedded issuer).

Works on the home, like `insitu token issue`: the link's secret is stored hashed in the
gateway's database and printed once. It signs one browser in once, before it expires
(`INSITU_CONSOLE_LINK_TTL_S`, default 10 minutes).
"""

from __future__ import annotations

from typing import Annotated

import typer

from gateway.cli.app import HomeOpt, app
from gateway.cli.local import require_home, settings_for
from gateway.cli.output import CliError


@app.command("console-link")
def console_link(
    subject: Annotated[str, typer.Option(help="Who signs in, e.g. analyst@stats.")],
    role: Annotated[list[str], typer.Option("--role", help="A role (repeat for several).")],
    department: Annotated[
        str | None, typer.Option(help="Department (default: the part of --subject after @).")
    ] = None,
    url: Annotated[
        str | None, typer.Option(help="The console's base URL (default INSITU_CONSOLE_URL).")
    ] = None,
    home_dir: HomeOpt = None,
) -> None:
    """Print a one-time sign-in link to the web console; it works once, for a few minutes."""
    from gateway.auth.errors import InvalidIdentity
    from gateway.console import sessions

    settings = settings_for(home_dir)
    require_home(settings)
    dept = department or (subject.rpartition("@")[2] if "@" in subject else "")
    if not dept:
        raise CliError("name the department with --department (or a subject like me@dept)")
    try:
        who = sessions.identity(subject, dept, role)
    except (InvalidIdentity, ValueError) as exc:
        raise CliError(str(exc)) from None
    base = url or settings.console_url or f"http://{settings.host}:{settings.port}"
    try:
        secret = sessions.issue_link_at(
            settings.resolved_database_url, who, ttl_s=settings.console_link_ttl_s
        )
    except sessions.NoConsoleTables:
        raise CliError("the home's database has no console tables; run `insitu init`", 1) from None
    typer.echo(sessions.link_url(base, secret))

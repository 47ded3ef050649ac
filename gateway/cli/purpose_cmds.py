"""`insitu purpose …` (the condition of 有条件共享) and `insitu verify …` (核验)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

import typer

from gateway.cli.app import OutputOpt, app, parse_param
from gateway.cli.client import Client
from gateway.cli.output import CliError
from gateway.cli.render import Col, Format, choose, col, emit, say
from gateway.cli.results import print_result

purpose_app = typer.Typer(help="Purposes for conditionally shared data.", no_args_is_help=True)
verify_app = typer.Typer(help="Verification (核验) of keys you hold.", no_args_is_help=True)
app.add_typer(purpose_app, name="purpose")
app.add_typer(verify_app, name="verify")


@purpose_app.command("request")
def purpose_request(
    dataset: str, purpose: Annotated[str, typer.Option("--purpose", help="What for.")]
) -> None:
    """Ask a conditionally shared dataset's owner to approve a purpose (analysts)."""
    out = Client().post("/v1/purposes", json={"dataset": dataset, "purpose": purpose})
    typer.echo(out["id"])


@purpose_app.command("approve")
def purpose_approve(
    purpose_id: str,
    days: Annotated[int, typer.Option("--days", min=1, max=366, help="Valid for N days.")] = 90,
) -> None:
    """Approve a purpose for one of your datasets until N days from now (data owners)."""
    expires = (datetime.now(UTC) + timedelta(days=days)).isoformat()
    out = Client().post(f"/v1/purposes/{purpose_id}/approvals", json={"expires_at": expires})
    say(f"purpose {out['id']} approved until {out['expires_at']}")


@purpose_app.command("reject")
def purpose_reject(purpose_id: str) -> None:
    out = Client().post(f"/v1/purposes/{purpose_id}/rejections", json={})
    say(f"purpose {out['id']} {out['status']}")


@purpose_app.command("list")
def purpose_list(output: OutputOpt = None) -> None:
    emit(
        Client().get("/v1/purposes")["items"],
        [
            col("id", ident=True),
            col("dataset", ident=True),
            col("department"),
            col("status"),
            col("expires", "expires_at"),
            col("purpose"),
        ],
        choose(output, Format.TABLE),
    )


@verify_app.command("run")
def verify_run(
    template: str,
    keys: Annotated[list[str], typer.Argument(help="The keys to verify (you hold them).")],
    *,
    key_name: Annotated[str, typer.Option("--key-name", help="The template's key name.")],
    param: Annotated[list[str] | None, typer.Option("--param", "-p", help="name=value")] = None,
    purpose: str = "",
    output: OutputOpt = None,
) -> None:
    """Verify keys with an approved verify template: match / no match per key, or a count."""
    parameters = dict(parse_param(p) for p in param or [])
    parameters[key_name] = list(keys)
    client = Client()
    out = client.post(
        "/v1/jobs", json={"template": template, "parameters": parameters, "purpose": purpose}
    )
    body = client.get(f"/v1/jobs/{out['id']}/result", params={"wait": 300})
    fmt = choose(output, Format.TABLE)
    if body.get("columns") == ["key_index", "matched"] and fmt is not Format.JSON:
        answers = [
            {"key": keys[int(index) - 1], "match": bool(matched)}
            for index, matched in sorted(body["rows"])
        ]
        emit(answers, [col("key", ident=True), col("match")], fmt)
    else:
        print_result(body, fmt)
    if body["status"] != "released":
        raise CliError(f"job {out['id']} {body['status']}: {body['job'].get('error')}", 1)


@verify_app.command("alerts")
def verify_alerts(output: OutputOpt = None) -> None:
    """Sweeps (many keys, few matches) and spreads (one key against many parameter values)
    on your department's datasets (data owners)."""
    emit(
        Client().get("/v1/verify/alerts")["items"],
        [
            col("day"),
            Col("kind", lambda a: a.get("kind", "sweep")),
            col("dataset", ident=True),
            col("department"),
            col("keys", number=True),
            col("matches", number=True),
            Col("job", lambda a: a.get("job") or "(refused)", ident=True),
        ],
        choose(output, Format.TABLE),
    )

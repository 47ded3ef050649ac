"""The command tree."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from gateway.cli.client import Client
from gateway.cli.output import CliError, console

app = typer.Typer(
    name="insitu",
    help="Data stays home: approved query templates run beside the data; only results leave.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
token_app = typer.Typer(help="Local token issuer.", no_args_is_help=True)
dataset_app = typer.Typer(help="The catalogue of datasets.", no_args_is_help=True)
template_app = typer.Typer(help="Query templates and their approval.", no_args_is_help=True)
job_app = typer.Typer(help="Jobs: run an approved template.", no_args_is_help=True)
policy_app = typer.Typer(help="Casbin policy.", no_args_is_help=True)
audit_app = typer.Typer(help="The tamper-evident audit log.", no_args_is_help=True)
for sub, name in (
    (token_app, "token"),
    (dataset_app, "dataset"),
    (template_app, "template"),
    (job_app, "job"),
    (policy_app, "policy"),
    (audit_app, "audit"),
):
    app.add_typer(sub, name=name)

HomeOpt = Annotated[
    Path | None, typer.Option("--home", help="Home directory (default $INSITU_HOME or ./.insitu).")
]


def print_json(data: Any) -> None:
    console.print_json(json.dumps(data, ensure_ascii=False, default=str))


def read_document(path: Path) -> tuple[bytes, str]:
    if not path.is_file():
        raise CliError(f"no such file: {path.name}")
    content_type = "application/json" if path.suffix == ".json" else "application/yaml"
    return path.read_bytes(), content_type


def parse_param(text: str) -> tuple[str, Any]:
    """`k=v`: v is read as a JSON literal when it is one (2024, true), else as a string."""
    name, sep, raw = text.partition("=")
    if not sep or not name:
        raise CliError(f"--param takes name=value, not {text!r}")
    try:
        value = json.loads(raw)
    except ValueError:
        value = raw
    if isinstance(value, dict | list | float):
        value = raw  # only integers, booleans and strings come from the command line
    return name, value


def result_table(body: dict[str, Any]) -> Table:
    table = Table(title=f"job {body['job']['id']} — {body['status']}")
    for column in body.get("columns", []):
        table.add_column(column)
    for row in body.get("rows", []):
        table.add_row(*("" if v is None else str(v) for v in row))
    return table


def print_result(body: dict[str, Any]) -> None:
    if "columns" in body:
        console.print(result_table(body))
    withheld = body.get("withheld", [])
    if withheld:
        console.print(f"withheld by disclosure control: {len(withheld)} cell(s)")
        for cell in withheld:
            key = ", ".join(f"{k}={v}" for k, v in cell["key"].items())
            console.print(f"  {key}: {cell['reason']} ({cell['rule']})", markup=False)
    if body.get("job", {}).get("error"):
        console.print(f"error: {body['job']['error']}", markup=False)
    receipt = body.get("receipt")
    if receipt:
        console.print(
            f"receipt: audit entry {receipt['audit_index']} of {receipt['tree_size']}, "
            f"leaf {receipt['leaf_hash'][:16]}…"
        )


# --- dataset ---------------------------------------------------------------------------------
@dataset_app.command("register")
def dataset_register(file: Path) -> None:
    """Register a dataset from its YAML document (as the provider's data owner)."""
    body, content_type = read_document(file)
    out = Client().post("/v1/datasets", content=body, headers={"Content-Type": content_type})
    console.print(f"registered {out['id']}")


@dataset_app.command("list")
def dataset_list() -> None:
    table = Table("id", "title", "provider", "share class", "classification")
    for d in Client().get("/v1/datasets")["items"]:
        table.add_row(d["id"], d["title"], d["provider"], d["share_class"], d["classification"])
    console.print(table)


@dataset_app.command("show")
def dataset_show(dataset_id: str) -> None:
    print_json(Client().get(f"/v1/datasets/{dataset_id}"))


# --- template --------------------------------------------------------------------------------
@template_app.command("propose")
def template_propose(file: Path) -> None:
    """Propose a template version from its YAML document."""
    body, content_type = read_document(file)
    out = Client().post("/v1/templates", content=body, headers={"Content-Type": content_type})
    console.print(f"proposed {out['id']}@{out['version']} {out['content_hash']} ({out['status']})")


def _decide(
    template_id: str, version: int, verb: str, content_hash: str | None, comment: str
) -> None:
    out = Client().post(
        f"/v1/templates/{template_id}/versions/{version}/{verb}",
        json={"content_hash": content_hash, "comment": comment},
    )
    console.print(f"{template_id}@{version} is {out['status']}")


@template_app.command("approve")
def template_approve(
    template_id: str,
    version: int,
    content_hash: Annotated[str | None, typer.Option("--hash")] = None,
    comment: str = "",
) -> None:
    """Approve a template version for your department's datasets (data owners)."""
    _decide(template_id, version, "approvals", content_hash, comment)


@template_app.command("reject")
def template_reject(
    template_id: str,
    version: int,
    content_hash: Annotated[str | None, typer.Option("--hash")] = None,
    comment: str = "",
) -> None:
    _decide(template_id, version, "rejections", content_hash, comment)


@template_app.command("list")
def template_list() -> None:
    table = Table("id", "version", "kind", "status", "title")
    for t in Client().get("/v1/templates")["items"]:
        table.add_row(t["id"], str(t["version"]), t["kind"], t["status"], t["title"])
    console.print(table)


@template_app.command("show")
def template_show(template_id: str, version: int) -> None:
    print_json(Client().get(f"/v1/templates/{template_id}/versions/{version}"))


# --- job -------------------------------------------------------------------------------------
@job_app.command("submit")
def job_submit(
    template: str,
    param: Annotated[list[str] | None, typer.Option("--param", "-p", help="name=value")] = None,
    version: Annotated[int | None, typer.Option()] = None,
    purpose: str = "",
    wait: Annotated[bool, typer.Option("--wait", help="Wait for the result.")] = False,
) -> None:
    """Submit a job running an approved template."""
    parameters = dict(parse_param(p) for p in param or [])
    client = Client()
    out = client.post(
        "/v1/jobs",
        json={
            "template": template,
            "version": version,
            "parameters": parameters,
            "purpose": purpose,
        },
    )
    if not wait:
        typer.echo(out["id"])
        return
    body = client.get(f"/v1/jobs/{out['id']}/result", params={"wait": 300})
    print_result(body)
    if body["status"] != "released":
        raise CliError(f"job {out['id']} {body['status']}", 1)


@job_app.command("show")
def job_show(job_id: str) -> None:
    print_json(Client().get(f"/v1/jobs/{job_id}"))


@job_app.command("result")
def job_result(job_id: str, wait: float = 0) -> None:
    body = Client().get(f"/v1/jobs/{job_id}/result", params={"wait": wait})
    print_result(body)
    if body["status"] not in {"released", "suppressed"}:
        raise CliError(f"job {job_id} is {body['status']}", 1)


# --- policy ----------------------------------------------------------------------------------
@policy_app.command("list")
def policy_list() -> None:
    out = Client().get("/v1/policies")
    console.print(f"policy version {out['version']}")
    for rule in out["rules"]:
        console.print(rule, markup=False, highlight=False)


@policy_app.command("test")
def policy_test(
    role: Annotated[list[str], typer.Option("--role")],
    department: Annotated[str, typer.Option()],
    obj: Annotated[str, typer.Option("--object")],
    action: Annotated[str, typer.Option()],
) -> None:
    """Would this decision be allowed? Prints the decision, rule and reason."""
    out = Client().post(
        "/v1/policies/check",
        json={"roles": role, "department": department, "object": obj, "action": action},
    )
    verdict = "allow" if out["allowed"] else "deny"
    console.print(f"{verdict} (policy v{out['policy_version']}): {out['reason']}", markup=False)
    if out["rule"]:
        console.print(f"rule: {out['rule']}", markup=False)
    if not out["allowed"]:
        raise typer.Exit(1)


@policy_app.command("history")
def policy_history() -> None:
    table = Table("version", "created by", "at", "note")
    for item in Client().get("/v1/policies/history")["items"]:
        table.add_row(str(item["version"]), item["created_by"], item["created_at"], item["note"])
    console.print(table)

"""`insitu policy …`: Casbin policy, changed four-eyes (propose → a second officer approves)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from gateway.cli.app import policy_app
from gateway.cli.client import Client
from gateway.cli.output import CliError, console
from policies import InvalidRule, parse_rule_line, parse_rules, policy_to_yaml


def _say(text: str) -> None:
    console.print(text, markup=False, highlight=False, soft_wrap=True)


def _rules(lines: list[str], files: list[Path]) -> list[dict[str, str]]:
    """Rule lines from the command line and from files, as typed rule objects."""
    try:
        rules = [parse_rule_line(line) for line in lines]
        for path in files:
            if not path.is_file():
                raise CliError(f"no such file: {path.name}")
            rules.extend(parse_rules(path.read_text(encoding="utf-8")))
    except InvalidRule as exc:
        raise CliError(f"invalid rule: {exc}") from None
    return [rule.as_dict() for rule in rules]


def _print_proposal(out: dict[str, Any]) -> None:
    _say(
        f"proposal {out['id']} ({out['kind']}, {out['status']}) on version {out['base_version']}"
        f" by {out['proposed_by']}: +{out['added_count']} -{out['removed_count']} rules"
    )
    if out.get("result_version"):
        _say(f"policy version {out['result_version']} is live")
    for rule in out.get("added", []):
        _say(f"  + {rule}")
    for rule in out.get("removed", []):
        _say(f"  - {rule}")
    impact = out.get("impact") or {}
    summary = impact.get("summary") or out.get("impact_summary") or {}
    if summary:
        _say(
            f"impact: {summary.get('changed', 0)} decision(s) change "
            f"({summary.get('granted', 0)} granted, {summary.get('revoked', 0)} revoked"
            f"{', truncated' if summary.get('truncated') else ''})"
        )
    changes = impact.get("changes") or []
    if changes:
        table = Table("department", "role", "template / object", "action", "purpose", "change")
        for c in changes:
            table.add_row(
                c["department"],
                c["role"],
                c["template"] or c["object"],
                c["action"],
                ", ".join(c["purposes"] or []) or "-",
                f"{c['before']} → {c['after']}",
            )
        console.print(table)


@policy_app.command("list")
def policy_list(version: Annotated[int | None, typer.Option()] = None) -> None:
    """The rules of the live policy (or of --version)."""
    out = Client().get("/v1/policies", params={"version": version} if version else None)
    _say(f"policy version {out['version']}")
    for rule in out["rules"]:
        _say(rule)


@policy_app.command("propose")
def policy_propose(
    *,
    add: Annotated[list[str] | None, typer.Option("--add", help="A rule line to add.")] = None,
    remove: Annotated[
        list[str] | None, typer.Option("--remove", help="A rule line to remove.")
    ] = None,
    add_file: Annotated[
        list[Path] | None, typer.Option("--add-file", help="A file of rule lines to add.")
    ] = None,
    remove_file: Annotated[list[Path] | None, typer.Option("--remove-file")] = None,
    note: Annotated[str, typer.Option()] = "",
    base: Annotated[
        int | None, typer.Option("--base", help="Refuse unless the policy is at this version.")
    ] = None,
) -> None:
    """Propose a batch of changes; it is live only once a second officer approves it."""
    body = {
        "add": _rules(add or [], add_file or []),
        "remove": _rules(remove or [], remove_file or []),
        "note": note,
        "base_version": base,
    }
    if not body["add"] and not body["remove"]:
        raise CliError("give at least one --add or --remove rule")
    _print_proposal(Client().post("/v1/policies", json=body))


@policy_app.command("show")
def policy_show(proposal: str) -> None:
    """A proposal: its changes and their impact."""
    _print_proposal(Client().get(f"/v1/policies/proposals/{proposal}"))


@policy_app.command("proposals")
def policy_proposals(status: Annotated[str | None, typer.Option()] = None) -> None:
    table = Table("id", "kind", "status", "base", "by", "changes", "note")
    out = Client().get("/v1/policies/proposals", params={"status": status} if status else None)
    for p in out["items"]:
        table.add_row(
            p["id"],
            p["kind"],
            p["status"],
            str(p["base_version"]),
            p["proposed_by"],
            f"+{p['added_count']} -{p['removed_count']}",
            p["note"],
        )
    console.print(table)


@policy_app.command("approve")
def policy_approve(proposal: str, comment: Annotated[str, typer.Option()] = "") -> None:
    """Approve another officer's proposal: it becomes the next live policy version."""
    out = Client().post(f"/v1/policies/proposals/{proposal}/approvals", json={"comment": comment})
    _print_proposal(out)


@policy_app.command("reject")
def policy_reject(proposal: str, comment: Annotated[str, typer.Option()] = "") -> None:
    out = Client().post(f"/v1/policies/proposals/{proposal}/rejections", json={"comment": comment})
    _print_proposal(out)


@policy_app.command("test")
def policy_test(
    *,
    role: Annotated[list[str], typer.Option("--role")],
    department: Annotated[str, typer.Option()],
    action: Annotated[str | None, typer.Option()] = None,
    obj: Annotated[str | None, typer.Option("--object")] = None,
    dataset: Annotated[str | None, typer.Option()] = None,
    template: Annotated[str | None, typer.Option()] = None,
    version: Annotated[int | None, typer.Option()] = None,
    purpose: Annotated[str | None, typer.Option()] = None,
    subject: Annotated[str | None, typer.Option()] = None,
) -> None:
    """Would this be allowed? Prints the decision, the rule and the reason (exit 1 if denied)."""
    body = {
        "roles": role,
        "department": department,
        "action": action,
        "object": obj,
        "dataset": dataset,
        "template": template,
        "version": version,
        "purpose": purpose,
        "subject": subject,
    }
    out = Client().post("/v1/policies/check", json={k: v for k, v in body.items() if v})
    verdict = "allow" if out["allowed"] else f"deny [{out['reason_code']}]"
    _say(f"{verdict} (policy v{out['policy_version']}): {out['reason']}")
    for step in out.get("steps", []):
        mark = "ok " if step["allowed"] else "NO "
        _say(f"  {mark}{step['action']} on {step['object']}: {step['rule'] or step['reason_code']}")
    if not out["allowed"]:
        raise typer.Exit(1)


@policy_app.command("history")
def policy_history() -> None:
    table = Table("version", "created by", "approved by", "at", "base", "note")
    for item in Client().get("/v1/policies/history")["items"]:
        table.add_row(
            str(item["version"]),
            item["created_by"],
            item.get("approved_by") or "-",
            item["created_at"],
            str(item.get("base_version") or "-"),
            item["note"],
        )
    console.print(table)


@policy_app.command("diff")
def policy_diff(from_version: int, to_version: int) -> None:
    """Rules added (+) and removed (-) from one version to another."""
    out = Client().get("/v1/policies/diff", params={"from": from_version, "to": to_version})
    _say(f"version {out['from']} → {out['to']}")
    for rule in out["added"]:
        _say(f"+ {rule}")
    for rule in out["removed"]:
        _say(f"- {rule}")


@policy_app.command("rollback")
def policy_rollback(version: int, note: Annotated[str, typer.Option()] = "") -> None:
    """Propose going back to an earlier version's rules (a second officer approves)."""
    _print_proposal(Client().post("/v1/policies/rollback", json={"version": version, "note": note}))


@policy_app.command("export")
def policy_export(
    version: Annotated[int | None, typer.Option()] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o")] = None,
) -> None:
    """The policy as a YAML document (for git)."""
    out = Client().get("/v1/policies", params={"version": version} if version else None)
    text = policy_to_yaml(parse_rules("\n".join(out["rules"])), version=out["version"])
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
        _say(f"wrote {output.name}")


@policy_app.command("import")
def policy_import(file: Path, note: Annotated[str, typer.Option()] = "") -> None:
    """Propose the rules of a YAML policy document as the next version (four-eyes)."""
    if not file.is_file():
        raise CliError(f"no such file: {file.name}")
    out = Client().post(
        "/v1/policies/import",
        content=file.read_bytes(),
        params={"note": note},
        headers={"Content-Type": "application/yaml"},
    )
    _print_proposal(out)

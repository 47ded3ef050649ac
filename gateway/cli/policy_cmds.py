"""`insitu policy …`: Casbin policy, changed four-eyes (propose → a second officer approves)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from gateway.cli.app import OutputOpt, policy_app
from gateway.cli.client import Client
from gateway.cli.output import CliError, console
from gateway.cli.render import Col, Format, choose, col, emit, show, table
from gateway.cli.render import say as _say


def _rules(lines: list[str], files: list[Path]) -> list[dict[str, str]]:
    """Rule lines from the command line and from files, as typed rule objects."""
    from policies import InvalidRule, parse_rule_line, parse_rules  # lazy: casbin is slow to load

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
        columns = [
            col("department"),
            col("role"),
            Col("template / object", lambda c: c["template"] or c["object"], ident=True),
            col("action"),
            Col("purpose", lambda c: ", ".join(c["purposes"] or []) or "-"),
            Col("change", lambda c: f"{c['before']} → {c['after']}"),
        ]
        console.print(table(None, columns, ([c.get(x) for c in columns] for x in changes)))


@policy_app.command("list")
def policy_list(
    version: Annotated[int | None, typer.Option()] = None, output: OutputOpt = None
) -> None:
    """The rules of the live policy (or of --version)."""
    out = Client().get("/v1/policies", params={"version": version} if version else None)
    fmt = choose(output, Format.TABLE)
    if fmt is not Format.TABLE:
        rows = [{"version": out["version"], "rule": rule} for rule in out["rules"]]
        emit(rows, [col("version", number=True), col("rule")], fmt, raw=out)
        return
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
def policy_show(proposal: str, output: OutputOpt = None) -> None:
    """A proposal: its changes and their impact."""
    out = Client().get(f"/v1/policies/proposals/{proposal}")
    fmt = choose(output, Format.TABLE)
    if fmt is Format.TABLE:
        _print_proposal(out)
    else:
        show(out, fmt)


@policy_app.command("proposals")
def policy_proposals(
    status: Annotated[str | None, typer.Option()] = None, output: OutputOpt = None
) -> None:
    out = Client().get("/v1/policies/proposals", params={"status": status} if status else None)
    emit(
        out["items"],
        [
            col("id", ident=True),
            col("kind"),
            col("status"),
            col("base", "base_version", number=True),
            col("by", "proposed_by"),
            Col("changes", lambda p: f"+{p['added_count']} -{p['removed_count']}"),
            col("note"),
        ],
        choose(output, Format.TABLE),
    )


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
    purpose: Annotated[
        list[str] | None,
        typer.Option(help="A purpose id (repeatable) or a description, as for `job submit`."),
    ] = None,
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
        "purpose": purpose[0] if purpose else None,
        "purposes": (purpose or [])[1:],
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
def policy_history(output: OutputOpt = None) -> None:
    emit(
        Client().get("/v1/policies/history")["items"],
        [
            col("version", ident=True, number=True),
            col("created by", "created_by"),
            Col("approved by", lambda i: i.get("approved_by") or "-"),
            col("at", "created_at"),
            Col("base", lambda i: i.get("base_version") or "-", number=True),
            col("note"),
        ],
        choose(output, Format.TABLE),
    )


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
    from policies import parse_rules, policy_to_yaml

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

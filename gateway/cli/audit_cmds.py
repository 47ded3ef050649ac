"""`insitu audit …`: verify, export, prove, tail, stats, receipts, witness, keys.

Local commands work on the home (`--home`): `verify` without a bundle, `export --home`, `keys`,
`rotate-key`. `verify BUNDLE` and `receipt` are offline: no server, no database. The others are
clients of a gateway (`INSITU_URL`, `INSITU_TOKEN`).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from gateway import home
from gateway.cli.app import HomeOpt, audit_app, print_json
from gateway.cli.client import Client
from gateway.cli.local import require_home, settings_for
from gateway.cli.output import CliError, console
from gateway.store import db

VkeyOpt = Annotated[
    list[str] | None, typer.Option("--vkey", help="A trusted log verifier key (repeatable).")
]
RESULT_KEYS = {"job", "status", "result_hash", "receipt"}


def _read_text(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        raise CliError(f"cannot read the {what} file {path.name}") from None


@audit_app.command("verify")
def audit_verify(
    bundle: Annotated[
        Path | None, typer.Argument(help="An exported bundle; default: the home's log.")
    ] = None,
    *,
    home_dir: HomeOpt = None,
    pin: Annotated[Path | None, typer.Option(help="A checkpoint note saved earlier.")] = None,
    vkey: VkeyOpt = None,
    witness: Annotated[
        list[str] | None, typer.Option("--witness", help="A witness vkey (repeatable).")
    ] = None,
    cosignatures: Annotated[
        int, typer.Option(help="Witness cosignatures a checkpoint must carry.")
    ] = 0,
) -> None:
    """Recompute the whole log: every entry, the Merkle tree, every signed checkpoint."""
    from audit import AuditError, VerificationError

    if bundle is not None:
        from audit import verify_bundle

        if not bundle.is_file():
            raise CliError(f"no such bundle file: {bundle.name}")
        if cosignatures < 0 or cosignatures > len(witness or []):
            raise CliError("--cosignatures must be between 0 and the number of --witness keys")
        try:
            report = verify_bundle(
                bundle,
                pin=_read_text(pin, "pin") if pin else None,
                vkeys=vkey or None,
                witnesses=witness or [],
                cosignatures=cosignatures,
                workers=None,  # several processes for a large bundle
            )
        except AuditError as exc:
            index = exc.index if isinstance(exc, VerificationError) else None
            where = "" if index is None else f" at entry {index}"
            raise CliError(f"verification FAILED{where}: {exc}", 1) from None
        trust = "" if vkey else " (keys taken from the bundle itself)"
        console.print(f"ok{trust}: {report}", markup=False)
        return
    settings = settings_for(home_dir)
    require_home(settings)
    engine = db.create_engine(settings.resolved_database_url)
    trail = home.open_trail(settings)
    try:
        with engine.begin() as conn:
            trail.log.checkpoint(conn)
            report = trail.log.verify(conn)
    except AuditError as exc:
        raise CliError(f"verification FAILED: {exc}", 1) from None
    finally:
        engine.dispose()
    console.print(f"audit log verified: {report}", markup=False)


@audit_app.command("export")
def audit_export(
    out: Annotated[Path, typer.Argument(help="Where to write the bundle (.jsonl).")],
    home_dir: HomeOpt = None,
) -> None:
    """Write the whole log (entries, checkpoints, public keys) as an offline bundle."""
    if home_dir is None:
        client = Client()
        content = client.download("/v1/audit/bundle")
        out.write_bytes(content)
        console.print(f"wrote {out} ({len(content)} bytes)", markup=False)
        return
    settings = settings_for(home_dir)
    require_home(settings)
    engine = db.create_engine(settings.resolved_database_url)
    trail = home.open_trail(settings)
    try:
        with engine.begin() as conn:
            trail.log.checkpoint(conn)
        with db.reading(engine) as conn:
            count = trail.log.export_bundle(conn, out)
    finally:
        engine.dispose()
    console.print(f"wrote {count} entries to {out}", markup=False)


@audit_app.command("keys")
def audit_keys(home_dir: HomeOpt = None) -> None:
    """Print the log's verifier keys (current first, then rotated-out ones)."""
    settings = settings_for(home_dir)
    require_home(settings)
    for verifier in home.open_trail(settings).log.verifiers:
        typer.echo(verifier.vkey)


@audit_app.command("rotate-key")
def audit_rotate_key(home_dir: HomeOpt = None) -> None:
    """Replace the checkpoint signing key (the old public key stays trusted for old notes)."""
    settings = settings_for(home_dir)
    require_home(settings)
    old, new = home.rotate_audit_key(settings)
    console.print(
        f"retired {old}\ncurrent {new}\nrestart the gateway to sign with it", markup=False
    )


def _verifiers(client: Client, vkeys: list[str] | None) -> list[Any]:
    from audit import AuditError, NoteVerifier

    try:
        keys = vkeys or client.get("/v1/audit/keys")["vkeys"]
        return [NoteVerifier.from_vkey(v) for v in keys]
    except AuditError as exc:
        raise CliError(f"bad verifier key: {exc}") from None


@audit_app.command("prove")
def audit_prove(
    index: Annotated[int | None, typer.Option(help="Prove this entry is in the log.")] = None,
    pin: Annotated[
        Path | None, typer.Option(help="Prove this saved checkpoint is a prefix of the log now.")
    ] = None,
    vkey: VkeyOpt = None,
) -> None:
    """Fetch an inclusion or consistency proof and check it against the signed checkpoint."""
    from audit import AuditError, open_checkpoint, verify_consistency, verify_inclusion

    if (index is None) == (pin is None):
        raise CliError("give exactly one of --index or --pin")
    client = Client()
    verifiers = _verifiers(client, vkey)
    note = client.get("/v1/audit/checkpoint")["checkpoint"]
    try:
        origin = note.split("\n", 1)[0]
        cp = open_checkpoint(note, verifiers, origin)
        if index is not None:
            params = {"index": index, "size": cp.size}
            body = client.get("/v1/audit/proofs/inclusion", params=params)
            proof = [bytes.fromhex(p) for p in body["proof"]]
            verify_inclusion(bytes.fromhex(body["leaf_hash"]), index, cp.size, proof, cp.root)
            what = f"entry {index} is in the signed tree of {cp.size}"
        else:
            assert pin is not None
            old = open_checkpoint(_read_text(pin, "pin"), verifiers, origin)
            if old.size > cp.size:
                raise CliError(
                    f"proof FAILED: rollback, the log has {cp.size} entries, the pin {old.size}", 1
                )
            params = {"first": old.size, "second": cp.size}
            body = client.get("/v1/audit/proofs/consistency", params=params)
            proof = [bytes.fromhex(p) for p in body["proof"]]
            verify_consistency(old.size, cp.size, proof, old.root, cp.root)
            what = f"the pinned tree of {old.size} is a prefix of the signed tree of {cp.size}"
    except (AuditError, ValueError) as exc:
        raise CliError(f"proof FAILED: {exc}", 1) from None
    print_json({**body, "checkpoint": note})
    console.print(f"ok: {what} ({len(proof)} hashes)", markup=False)


@audit_app.command("tail")
def audit_tail(
    *,
    n: Annotated[int, typer.Option("-n", help="How many of the newest entries.")] = 20,
    type_: Annotated[str | None, typer.Option("--type")] = None,
    subject: Annotated[str | None, typer.Option()] = None,
    department: Annotated[str | None, typer.Option()] = None,
    dataset: Annotated[str | None, typer.Option()] = None,
    template: Annotated[str | None, typer.Option()] = None,
    decision: Annotated[str | None, typer.Option()] = None,
    provider: Annotated[str | None, typer.Option()] = None,
    manager: Annotated[str | None, typer.Option()] = None,
) -> None:
    """The newest entries, optionally filtered (by actor, department, dataset, party …)."""
    params: dict[str, Any] = {"latest": True, "limit": max(1, min(n, 1000))}
    filters = {
        "type": type_,
        "subject": subject,
        "department": department,
        "dataset": dataset,
        "template": template,
        "decision": decision,
        "provider": provider,
        "manager": manager,
    }
    params.update({k: v for k, v in filters.items() if v})
    items = Client().get("/v1/audit/entries", params=params)["items"]
    table = Table(title=f"audit log — {len(items)} newest entries")
    for column in ("index", "time", "type", "actor", "target", "decision", "rule"):
        table.add_column(column)
    for item in reversed(items):
        e = item["event"]
        actor = f"{e['actor']['subject']} ({e['actor']['department']})"
        decision_text = "allowed" if e["allowed"] else f"denied: {e['reason']}"
        table.add_row(
            str(item["index"]),
            e["time"],
            e["type"],
            actor,
            e["target"],
            decision_text,
            e["rule"] or "",
        )
    console.print(table)


@audit_app.command("stats")
def audit_stats(
    since: Annotated[str | None, typer.Option(help="ISO time with zone.")] = None,
    until: Annotated[str | None, typer.Option(help="ISO time with zone.")] = None,
    department: Annotated[str | None, typer.Option()] = None,
    dataset: Annotated[str | None, typer.Option()] = None,
    template: Annotated[str | None, typer.Option()] = None,
) -> None:
    """Calls per day × department × dataset × template (调用次数), allowed and denied."""
    params = {
        k: v
        for k, v in {
            "since": since,
            "until": until,
            "department": department,
            "dataset": dataset,
            "template": template,
        }.items()
        if v
    }
    body = Client().get("/v1/audit/stats", params=params)
    table = Table(title="calls (调用次数)")
    for column in ("day", "department", "dataset", "template", "allowed", "denied"):
        table.add_column(column)
    for row in body["items"]:
        table.add_row(
            row["day"],
            row["department"],
            row["dataset"],
            row["template"],
            str(row["allowed"]),
            str(row["denied"]),
        )
    console.print(table)
    total = body["total"]
    console.print(f"total: {total['allowed']} allowed, {total['denied']} denied")


def result_hash(result: dict[str, Any]) -> str:
    """The hash the gateway logs for a released result (sha256 of its canonical JSON)."""
    canonical = json.dumps(result, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


@audit_app.command("receipt")
def audit_receipt(
    file: Annotated[Path, typer.Argument(help="A saved job result (or just its receipt), JSON.")],
    vkey: VkeyOpt = None,
) -> None:
    """Check a receipt offline: signed checkpoint, inclusion proof, and that the logged
    release names this job and the hash of this very result."""
    from audit import AuditError, NoteVerifier, verify_receipt

    try:
        document = json.loads(_read_text(file, "result"))
    except ValueError:
        raise CliError("the file is not JSON") from None
    if not isinstance(document, dict):
        raise CliError("the file is not a JSON object")
    receipt = document.get("receipt", document)
    try:
        keys = [NoteVerifier.from_vkey(v) for v in vkey or []]
    except AuditError as exc:
        raise CliError(f"bad --vkey: {exc}") from None
    if not keys:
        raise CliError("give the log's --vkey (from `insitu audit keys` or GET /v1/audit/keys)")
    try:
        checked = verify_receipt(receipt, keys)
    except AuditError as exc:
        raise CliError(f"receipt FAILED: {exc}", 1) from None
    event = checked.event
    said = f"entry {checked.index} ({event.type}, {event.target}) is in the signed tree of "
    said += f"{checked.checkpoint.size}"
    if "receipt" in document:
        job = document.get("job", {}).get("id")
        logged = event.details.get("result_hash")
        result = {k: v for k, v in document.items() if k not in RESULT_KEYS}
        if event.target != f"job:{job}":
            raise CliError("receipt FAILED: the logged release is for another job", 1)
        if logged != document.get("result_hash") or logged != result_hash(result):
            raise CliError("receipt FAILED: this result is not the one the log recorded", 1)
        said += "; the result matches the logged result hash"
    console.print(f"ok: {said}", markup=False)


@audit_app.command("witness-key")
def audit_witness_key(
    out: Annotated[Path, typer.Argument(help="Where to write the witness's private key.")],
    name: Annotated[str, typer.Option(help="The witness's key name, e.g. witness.example")],
) -> None:
    """Create a witness signing key (0600) and print its vkey."""
    from audit import AuditError, Signer

    try:
        signer = Signer.generate(name)
    except AuditError as exc:
        raise CliError(str(exc)) from None
    try:
        home.write_private(out, signer.to_pem())
    except FileExistsError:
        raise CliError(f"{out.name} exists; not overwriting a key") from None
    typer.echo(signer.verifier().vkey)


@audit_app.command("witness")
def audit_witness(
    state: Annotated[Path, typer.Option(help="The witness's state file (last checkpoint).")],
    key: Annotated[Path, typer.Option(help="The witness's private key (witness-key).")],
    name: Annotated[str, typer.Option(help="The witness's key name.")],
    log_vkey: Annotated[list[str], typer.Option("--log-vkey", help="The log's vkey(s).")],
    submit: Annotated[bool, typer.Option(help="Send the cosignature to the gateway.")] = True,
) -> None:
    """Cosign the gateway's newest checkpoint if it extends the last one this witness saw;
    refuse a rollback or a fork (exit 1)."""
    from audit import AuditError, NoteVerifier, Signer, Witness, WitnessRefusal

    try:
        signer = Signer.from_pem(home.read_private(key), name)
        log_keys = [NoteVerifier.from_vkey(v) for v in log_vkey]
    except AuditError as exc:
        raise CliError(str(exc)) from None
    client = Client()
    note = client.get("/v1/audit/checkpoint")["checkpoint"]
    origin = note.split("\n", 1)[0]
    witness = Witness(signer, log_keys, origin, state)
    try:
        last = witness.last()
        size = int(note.split("\n")[1])
        proof: list[bytes] = []
        if last is not None and 0 < last.size < size:
            body = client.get(
                "/v1/audit/proofs/consistency", params={"first": last.size, "second": size}
            )
            proof = [bytes.fromhex(p) for p in body["proof"]]
        cosigned = witness.cosign(note, proof)
    except WitnessRefusal as exc:
        raise CliError(f"refused to cosign: {exc}", 1) from None
    except (AuditError, ValueError, IndexError) as exc:
        raise CliError(f"refused to cosign: {exc}", 1) from None
    if submit:
        client.post("/v1/audit/cosignatures", json={"checkpoint": cosigned})
    console.print(f"cosigned size {size} of {origin}", markup=False)

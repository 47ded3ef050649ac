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

from gateway.cli.app import HomeOpt, OutputOpt, audit_app, print_json
from gateway.cli.client import Client
from gateway.cli.local import require_home, settings_for
from gateway.cli.output import CliError, console
from gateway.cli.render import Format, choose, col, emit, say

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
    from gateway import home
    from gateway.store import db

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
    from gateway import home
    from gateway.store import db

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
    from gateway import home

    settings = settings_for(home_dir)
    require_home(settings)
    for verifier in home.open_trail(settings).log.verifiers:
        typer.echo(verifier.vkey)


@audit_app.command("rotate-key")
def audit_rotate_key(home_dir: HomeOpt = None) -> None:
    """Replace the checkpoint signing key (the old public key stays trusted for old notes)."""
    from gateway import home

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
    output: OutputOpt = None,
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
    fmt = choose(output, Format.TABLE)
    if fmt is Format.JSON:
        emit(items, [], fmt)
        return
    rows = [_tail_row(item) for item in reversed(items)]
    columns = [
        col("index", ident=True, number=True),
        col("time"),
        col("type"),
        col("actor"),
        col("target"),
        col("decision"),
    ]
    if fmt is Format.CSV:
        columns += [col("rule"), col("details")]
    emit(rows, columns, fmt, title=f"audit log — {len(items)} newest entries")


def _tail_row(item: dict[str, Any]) -> dict[str, Any]:
    e = item["event"]
    return {
        "index": item["index"],
        "time": e["time"][:19].replace("T", " "),
        "type": e["type"],
        "actor": f"{e['actor']['subject']} ({e['actor']['department']})",
        "target": e["target"],
        "decision": "allowed" if e["allowed"] else f"denied: {e['reason']}",
        "rule": e["rule"] or "",
        "details": e.get("details"),
    }


@audit_app.command("stats")
def audit_stats(
    *,
    since: Annotated[str | None, typer.Option(help="ISO time with zone.")] = None,
    until: Annotated[str | None, typer.Option(help="ISO time with zone.")] = None,
    department: Annotated[str | None, typer.Option()] = None,
    dataset: Annotated[str | None, typer.Option()] = None,
    template: Annotated[str | None, typer.Option()] = None,
    output: OutputOpt = None,
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
    fmt = choose(output, Format.TABLE)
    emit(
        body["items"],
        [
            col("day"),
            col("department"),
            col("dataset", ident=True),
            col("template", ident=True),
            col("allowed", number=True),
            col("denied", number=True),
        ],
        fmt,
        title="calls (调用次数)",
        raw=body,
    )
    if fmt is Format.TABLE:
        total = body["total"]
        say(f"total: {total['allowed']} allowed, {total['denied']} denied")


def result_hash(result: dict[str, Any]) -> str:
    """The hash the gateway logs for a released result (sha256 of its canonical JSON)."""
    canonical = json.dumps(result, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


@audit_app.command("receipt")
def audit_receipt(
    file: Annotated[Path, typer.Argument(help="A saved job result (or just its receipt), JSON.")],
    vkey: VkeyOpt = None,
    home_dir: Annotated[
        Path | None,
        typer.Option(
            "--home",
            help="Also check the entry is still in this home's log (or was lost in an "
            "acknowledged rollback); the log's keys come from the home.",
        ),
    ] = None,
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
    if not keys and home_dir is not None:
        from gateway import home

        settings = settings_for(home_dir)
        require_home(settings)
        keys = list(home.open_trail(settings).log.verifiers)
    source = ""
    if not keys:  # the public keys of the gateway that gave the result (any signed-in caller)
        try:
            keys = _verifiers(Client(), None)
        except CliError as exc:
            raise CliError(
                f"give the log's --vkey, or INSITU_URL and a token to fetch it ({exc})"
            ) from None
        source = " (log keys from the gateway; pin them with --vkey for an independent check)"
    try:
        checked = verify_receipt(receipt, keys)
    except AuditError as exc:
        raise CliError(f"receipt FAILED: {exc}", 1) from None
    if home_dir is not None:
        _still_logged(home_dir, checked.index, checked.checkpoint.size, receipt["leaf_hash"])
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
    say(f"ok: {said}{source}")


def _still_logged(home_dir: Path, index: int, tree_size: int, leaf: str) -> None:
    """Exit 1 unless entry `index` of the home's log is the receipt's leaf: 'lost' when an
    acknowledged rollback took it, 'FAILED' otherwise."""
    from audit import AuditError, leaf_hash
    from gateway import home
    from gateway.ops import continuity
    from gateway.store import db

    settings = settings_for(home_dir)
    engine = db.create_engine(settings.resolved_database_url)
    try:
        with db.reading(engine) as conn:
            body = home.open_trail(settings).log.entry(conn, index)
        present = leaf_hash(body).hex() == leaf
    except AuditError:
        present = False
    finally:
        engine.dispose()
    if present:
        return
    lost = continuity.lost_in(settings, index, tree_size)
    if lost is None:
        raise CliError(f"receipt FAILED: entry {index} is not in this home's log", 1)
    raise CliError(
        f"receipt LOST: entry {index} was lost in the acknowledged rollback of "
        f"{lost['acknowledged_at']} by {lost['by']} (the log was restored to "
        f"{lost['restored_size']} of {lost['remembered_size']} entries; audit entry "
        f"{lost['audit_index']})",
        1,
    )


@audit_app.command("witness-key")
def audit_witness_key(
    out: Annotated[Path, typer.Argument(help="Where to write the witness's private key.")],
    name: Annotated[str, typer.Option(help="The witness's key name, e.g. witness.example")],
) -> None:
    """Create a witness signing key (0600) and print its C2SP cosignature/v1 vkey (type 0x04)."""
    from audit import AuditError, Signer, cosigner_verifier
    from gateway import home

    try:
        signer = Signer.generate(name)
    except AuditError as exc:
        raise CliError(str(exc)) from None
    try:
        home.write_private(out, signer.to_pem())
    except FileExistsError:
        raise CliError(f"{out.name} exists; not overwriting a key") from None
    typer.echo(cosigner_verifier(signer).vkey)


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
    from gateway import home

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


@audit_app.command("witness-serve")
def audit_witness_serve(  # noqa: PLR0917 - typer options are parameters
    state: Annotated[Path, typer.Option(help="The witness's state file (last checkpoint).")],
    key: Annotated[Path, typer.Option(help="The witness's private key (witness-key).")],
    name: Annotated[str, typer.Option(help="The witness's key name.")],
    log_vkey: Annotated[list[str], typer.Option("--log-vkey", help="The log's vkey(s).")],
    origin: Annotated[str, typer.Option(help="The log's origin line.")],
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to bind.")] = 8380,
    prefix: Annotated[str, typer.Option(help="URL prefix of the endpoints.")] = "",
) -> None:
    """Serve this witness over the C2SP tlog-witness protocol (POST <prefix>/add-checkpoint)."""
    from audit import AuditError, NoteVerifier, Signer, Witness, WitnessServer
    from gateway import home

    try:
        signer = Signer.from_pem(home.read_private(key), name)
        log_keys = [NoteVerifier.from_vkey(v) for v in log_vkey]
        witness = Witness(signer, log_keys, origin, state)
    except AuditError as exc:
        raise CliError(str(exc)) from None
    server = WitnessServer(witness, host, port, prefix)
    console.print(f"witness {witness.vkey} on {server.url}", markup=False)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


@audit_app.command("witness-request")
def audit_witness_request() -> None:
    """Ask the gateway's C2SP witnesses (INSITU_AUDIT_WITNESS_URLS) to cosign its newest
    checkpoint; exit 1 if any refused or could not be reached."""
    answer = Client().post("/v1/audit/witness-requests")
    print_json(answer)
    if any(row["error"] for row in answer["witnesses"]):
        raise typer.Exit(1)

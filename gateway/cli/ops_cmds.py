"""`insitu backup`, `insitu restore` and `insitu audit acknowledge-rollback` (issue 14).

Local commands on a home: see `gateway.ops.backup` for what a backup holds and
`gateway.ops.continuity` for the rollback check a restored gateway runs at start-up.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from gateway.cli.app import HomeOpt, app, audit_app
from gateway.cli.local import require_home, settings_for
from gateway.cli.output import CliError, console

PASSPHRASE_ENV = "INSITU_BACKUP_PASSPHRASE"  # noqa: S105 - the name of a variable


@app.command("backup")
def backup(
    dest: Annotated[Path, typer.Argument(help="A new directory to write the backup into.")],
    home_dir: HomeOpt = None,
) -> None:
    """Back up the home while it serves: store (consistent), keys, config, audit continuity
    files and a manifest of the data files with their hashes."""
    from gateway.errors import GatewayError
    from gateway.ops import backup as ops

    settings = settings_for(home_dir)
    require_home(settings)
    passphrase = os.environ.get(PASSPHRASE_ENV) or None
    try:
        manifest = ops.backup(settings, dest, passphrase=passphrase)
    except GatewayError as exc:
        raise CliError(exc.detail, 2 if exc.status < 500 else 1) from None
    if passphrase is None:
        typer.echo(
            f"WARNING: the keys in {dest}/keys are NOT encrypted (set {PASSPHRASE_ENV}); "
            "whoever reads this backup can sign audit checkpoints and tokens.",
            err=True,
        )
    console.print(
        f"backed up the {manifest['database']} store, keys and {len(manifest['data'])} data "
        f"file hashes to {dest}",
        markup=False,
    )


@app.command("restore")
def restore(
    src: Annotated[Path, typer.Argument(help="A backup written by `insitu backup`.")],
    home_dir: HomeOpt = None,
    checkpoint: Annotated[
        Path | None,
        typer.Option(
            help="The newest checkpoint known from outside the backup (the old home's "
            "audit/last-checkpoint, a witness's copy): the restored gateway refuses to serve "
            "a log behind it until the loss is acknowledged."
        ),
    ] = None,
) -> None:
    """Restore a backup into a new, empty home (then copy the data files into its data/)."""
    from gateway.errors import GatewayError
    from gateway.ops import backup as ops
    from gateway.store import db

    settings = settings_for(home_dir)
    note = None
    if checkpoint is not None:
        try:
            note = checkpoint.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            raise CliError("cannot read the --checkpoint file") from None
    try:
        report = ops.restore(
            src, settings, passphrase=os.environ.get(PASSPHRASE_ENV) or None, checkpoint=note
        )
        engine = db.create_engine(settings.resolved_database_url)
        try:
            db.migrate(engine)
        finally:
            engine.dispose()
    except GatewayError as exc:
        raise CliError(exc.detail, 2 if exc.status < 500 else 1) from None
    if not report["checkpoint_from_outside"]:
        typer.echo(
            "WARNING: no --checkpoint given: entries recorded after this backup cannot be "
            "detected as lost unless the old home's audit/last-checkpoint is put in place.",
            err=True,
        )
    missing = [name for name, state in report["data"].items() if state != "ok"]
    console.print(f"restored into {settings.home}", markup=False)
    for name in missing:
        console.print(f"data file {name}: {report['data'][name]}", markup=False)


@audit_app.command("acknowledge-rollback")
def acknowledge_rollback(
    by: Annotated[str, typer.Option(help="Who records the loss (an operator's name).")],
    home_dir: HomeOpt = None,
) -> None:
    """Record (in the audit log) that the log was rolled back behind a checkpoint this
    gateway published; receipts for the lost entries are then reported as lost."""
    from gateway import home
    from gateway.errors import GatewayError
    from gateway.ops import continuity
    from gateway.store import db

    settings = settings_for(home_dir)
    require_home(settings)
    if not by.strip() or len(by) > 128:
        raise CliError("--by names the operator (1 to 128 characters)")
    engine = db.create_engine(settings.resolved_database_url)
    try:
        record = continuity.acknowledge(settings, engine, home.open_trail(settings), by=by)
    except GatewayError as exc:
        raise CliError(exc.detail, 1) from None
    finally:
        engine.dispose()
    console.print(
        f"recorded at audit entry {record['audit_index']}: entries "
        f"{record['restored_size']}..{record['remembered_size'] - 1} published before are lost",
        markup=False,
    )

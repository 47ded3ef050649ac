"""`insitu audit …`: verify the tamper-evident log."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from gateway import db, home
from gateway.cli.app import HomeOpt, audit_app
from gateway.cli.local import require_home, settings_for
from gateway.cli.output import CliError, console


@audit_app.command("verify")
def audit_verify(
    bundle: Annotated[
        Path | None, typer.Argument(help="An exported bundle; default: the home's log.")
    ] = None,
    home_dir: HomeOpt = None,
) -> None:
    """Recompute the whole log: every entry, the Merkle tree, every signed checkpoint."""
    from audit import AuditError, SqlAuditLog

    if bundle is not None:
        from audit import verify_bundle

        try:
            report = verify_bundle(bundle)
        except AuditError as exc:
            raise CliError(f"verification FAILED: {exc}", 1) from None
        console.print(f"ok: {report}")
        return
    settings = settings_for(home_dir)
    require_home(settings)
    engine = db.create_engine(settings.resolved_database_url)
    log = SqlAuditLog(origin=settings.audit_origin, signer=home.load_signer(settings))
    try:
        with engine.begin() as conn:
            log.checkpoint(conn)
            report = log.verify(conn)
    except AuditError as exc:
        raise CliError(f"verification FAILED: {exc}", 1) from None
    finally:
        engine.dispose()
    console.print(f"audit log verified: {report}", markup=False)

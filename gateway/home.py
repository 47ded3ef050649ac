"""The insitu home: config, keys, database and default policy (`insitu init`).

    <home>/config.env             settings (INSITU_* lines), read after the environment
    <home>/keys/issuer.jwks.json  local token issuer keys (private, 0600)
    <home>/keys/audit.pem         Ed25519 key that signs audit checkpoints (0600)
    <home>/keys/audit-retired.vkeys  public keys of rotated-out audit keys, one vkey a line
    <home>/keys/fingerprint.key   HMAC key for parameter/result fingerprints (0600)
    <home>/keys/population.key    key of the unit hashes the differencing checks compare (0600);
                                  every replica needs the same one
    <home>/insitu.db              SQLite store (unless INSITU_DATABASE_URL says otherwise)
    <home>/data/                  the only place dataset sources may live

`init` is idempotent: it creates what is missing and never overwrites a key.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from audit import AuditError, NoteVerifier, Signer, SqlAuditLog
from gateway.auth.keys import IssuerKeys
from gateway.errors import Unavailable
from gateway.jobs.releases import history as release_history
from gateway.settings import CONFIG_FILE, Settings
from gateway.store import db
from gateway.store import policy_versions as policy_store
from gateway.trail.writer import AuditTrail
from policies import default_rules

ISSUER_KEYS = "issuer.jwks.json"
AUDIT_KEY = "audit.pem"
RETIRED_AUDIT_KEYS = "audit-retired.vkeys"
FINGERPRINT_KEY = "fingerprint.key"


def write_private(path: Path, data: bytes) -> None:
    """Create `path` with mode 0600 from the start; refuse to overwrite."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def read_private(path: Path) -> bytes:
    if not path.is_file():
        raise Unavailable(f"key file {path.name} is missing; run `insitu init`")
    if path.stat().st_mode & 0o077:
        raise Unavailable(f"key file {path.name} is readable by others; chmod 600 it")
    return path.read_bytes()


def audit_key_name(settings: Settings) -> str:
    return settings.audit_origin


def init_home(settings: Settings) -> list[str]:
    """Create the home; return what was created (for the CLI to print)."""
    created: list[str] = []
    home = settings.home
    for directory in (home, settings.keys_dir, settings.data_dir):
        if not directory.exists():
            directory.mkdir(parents=True, mode=0o700)
            created.append(f"{directory}/")
    config = home / CONFIG_FILE
    if not config.exists():
        config.write_text(
            "# insitu settings for this home; environment variables win over these lines.\n"
            "# See the settings table in README.md.\n"
            f"INSITU_AUDIT_ORIGIN={settings.audit_origin}\n"
        )
        created.append(str(config))
    issuer = settings.keys_dir / ISSUER_KEYS
    if not issuer.exists():
        IssuerKeys.generate(issuer)
        created.append(str(issuer))
    audit_key = settings.keys_dir / AUDIT_KEY
    if not audit_key.exists():
        write_private(audit_key, Signer.generate(audit_key_name(settings)).to_pem())
        created.append(str(audit_key))
    fp_key = settings.keys_dir / FINGERPRINT_KEY
    if not fp_key.exists():
        write_private(fp_key, secrets.token_bytes(32))
        created.append(str(fp_key))
    population = settings.keys_dir / release_history.KEY_FILE
    if not population.exists():  # made here, so a home copied to a replica carries it
        release_history.population_key(settings.keys_dir)
        created.append(str(population))

    engine = db.create_engine(settings.resolved_database_url)
    trail = open_trail(settings)
    try:
        db.migrate(engine)
        with engine.begin() as conn:
            if policy_store.newest_version(conn) is None:
                rules = default_rules()
                version = policy_store.save_version(
                    conn, rules, created_by="insitu init", note="default policy"
                )
                trail.record(
                    conn,
                    type="policy.seeded",
                    principal=None,
                    action="seed",
                    target=f"policy:{version}",
                    allowed=True,
                    details={"policy_version": version, "rules": len(rules)},
                )
                created.append(f"policy version {version} (default)")
    finally:
        engine.dispose()
    return created


def load_signer(settings: Settings) -> Signer:
    return Signer.from_pem(read_private(settings.keys_dir / AUDIT_KEY), audit_key_name(settings))


def load_fingerprint_key(settings: Settings) -> bytes:
    return read_private(settings.keys_dir / FINGERPRINT_KEY)


def load_retired_keys(settings: Settings) -> list[NoteVerifier]:
    """Public keys that signed earlier checkpoints of this home's log."""
    path = settings.keys_dir / RETIRED_AUDIT_KEYS
    if not path.is_file():
        return []
    try:
        return [NoteVerifier.from_vkey(line) for line in path.read_text().split() if line]
    except AuditError:
        raise Unavailable(f"{RETIRED_AUDIT_KEYS} holds a malformed key") from None


def rotate_audit_key(settings: Settings) -> tuple[str, str]:
    """Replace the checkpoint signing key; keep the old public key to verify old checkpoints.

    The old vkey is appended (and fsynced) to the retired list before the new private key
    replaces the old one, so no signed checkpoint ever loses its key. Running gateways sign with
    the old key until restarted. Returns (old vkey, new vkey).
    """
    old = load_signer(settings)
    new = Signer.generate(audit_key_name(settings))
    retired = settings.keys_dir / RETIRED_AUDIT_KEYS
    with retired.open("a", encoding="utf-8") as out:
        out.write(old.verifier().vkey + "\n")
        out.flush()
        os.fsync(out.fileno())
    temp = settings.keys_dir / (AUDIT_KEY + ".new")
    temp.unlink(missing_ok=True)
    write_private(temp, new.to_pem())
    temp.replace(settings.keys_dir / AUDIT_KEY)
    return old.verifier().vkey, new.verifier().vkey


def open_trail(settings: Settings) -> AuditTrail:
    log = SqlAuditLog(
        origin=settings.audit_origin,
        signer=load_signer(settings),
        retired=load_retired_keys(settings),
    )
    return AuditTrail(log, load_fingerprint_key(settings))

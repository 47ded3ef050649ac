"""`insitu backup DEST` (online, consistent) and `insitu restore SRC --home NEW`.

    DEST/manifest.json        format, time, database kind, audit head, sha256 of every file,
                              and the home's data files (path, bytes, sha256; not copied)
    DEST/store.sqlite3        SQLite: the online backup API (a consistent copy while serving)
    DEST/store.pgdump         PostgreSQL: `pg_dump --format=custom` (one snapshot)
    DEST/keys.enc | keys/     the home's keys: scrypt + AES-GCM with the passphrase from
                              INSITU_BACKUP_PASSPHRASE, or in clear (0600) with a loud warning
    DEST/config.env, DEST/audit/last-checkpoint, DEST/audit/rollbacks.jsonl

The policy, catalogue, jobs, ledger and audit log are in the store. A restore writes a new,
empty home; the audit continuity check (`gateway.ops.continuity`) then compares the restored
log with the newest checkpoint known from outside the backup (`--checkpoint`: the old home's
`audit/last-checkpoint`, a witness's copy, or `/open/v1/audit/checkpoint` saved by a monitor).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from gateway.errors import InvalidInput, Unavailable
from gateway.ops import continuity
from gateway.settings import CONFIG_FILE, Settings

FORMAT: Final = "insitu-backup/1"
KEYS_MAGIC: Final = b"insitu-keys/1\n"
MANIFEST: Final = "manifest.json"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as source:
        for chunk in iter(lambda: source.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _files(root: Path) -> Iterator[Path]:
    return (p for p in sorted(root.rglob("*")) if p.is_file())


def _key(passphrase: str, salt: bytes) -> bytes:
    return Scrypt(salt=salt, length=32, n=2**15, r=8, p=1).derive(passphrase.encode())


def seal_keys(keys_dir: Path, passphrase: str) -> bytes:
    files = {p.name: base64.b64encode(p.read_bytes()).decode() for p in _files(keys_dir)}
    salt, nonce = os.urandom(16), os.urandom(12)
    sealed = AESGCM(_key(passphrase, salt)).encrypt(nonce, json.dumps(files).encode(), KEYS_MAGIC)
    return KEYS_MAGIC + salt + nonce + sealed


def open_keys(blob: bytes, passphrase: str) -> dict[str, bytes]:
    if not blob.startswith(KEYS_MAGIC):
        raise InvalidInput("keys.enc is not an insitu key archive")
    rest = blob[len(KEYS_MAGIC) :]
    salt, nonce, sealed = rest[:16], rest[16:28], rest[28:]
    try:
        plain = AESGCM(_key(passphrase, salt)).decrypt(nonce, sealed, KEYS_MAGIC)
    except InvalidTag:
        raise InvalidInput("wrong passphrase for keys.enc (or the file is damaged)") from None
    return {name: base64.b64decode(data) for name, data in json.loads(plain).items()}


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise Unavailable(f"{name} is not installed (a PostgreSQL client package)")
    return found


def _libpq_url(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def _copy_store(settings: Settings, dest: Path) -> str:
    url = settings.resolved_database_url
    if url.startswith("sqlite"):
        path = Path(url.split("///", 1)[1])
        if not path.is_file():
            raise Unavailable("the SQLite store of this home does not exist")
        try:
            source = sqlite3.connect(path, timeout=30)
            target = sqlite3.connect(dest / "store.sqlite3")
            try:
                source.backup(target)  # online: readers and writers carry on meanwhile
                target.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
            finally:
                target.close()
                source.close()
        except sqlite3.Error:
            raise Unavailable("the SQLite store could not be copied") from None
        return "sqlite"
    out = dest / "store.pgdump"
    done = subprocess.run(  # noqa: S603 - fixed program, the configured URL
        [_tool("pg_dump"), "--format=custom", "--no-owner", f"--file={out}", _libpq_url(url)],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        raise Unavailable("pg_dump failed; is the database reachable and pg_dump installed?")
    return "postgresql"


def _audit_head(store: Path) -> dict[str, Any]:
    conn = sqlite3.connect(f"file:{store}?mode=ro", uri=True)
    try:
        size = conn.execute("SELECT COALESCE(MAX(idx) + 1, 0) FROM audit_entries").fetchone()[0]
    finally:
        conn.close()
    return {"size": int(size)}


def backup(settings: Settings, dest: Path, *, passphrase: str | None) -> dict[str, Any]:
    """Write a backup of the home `settings.home` into the new directory `dest`."""
    if dest.exists():
        raise InvalidInput("the backup destination exists; name a new directory")
    dest.mkdir(mode=0o700, parents=True)
    kind = _copy_store(settings, dest)
    if passphrase:
        (dest / "keys.enc").write_bytes(seal_keys(settings.keys_dir, passphrase))
    else:
        shutil.copytree(settings.keys_dir, dest / "keys")
    for name in (CONFIG_FILE,):
        if (settings.home / name).is_file():
            shutil.copy2(settings.home / name, dest / name)
    audit = continuity.audit_dir(settings)
    if audit.is_dir():
        shutil.copytree(audit, dest / "audit", ignore=shutil.ignore_patterns("*.tmp"))
    data = settings.data_dir
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "created_at": datetime.now(UTC).isoformat(),
        "database": kind,
        "keys_encrypted": bool(passphrase),
        "audit": _audit_head(dest / "store.sqlite3") if kind == "sqlite" else None,
        "files": {str(p.relative_to(dest)): _sha256(p) for p in _files(dest)},
        "data": {
            str(p.relative_to(data)): {"bytes": p.stat().st_size, "sha256": _sha256(p)}
            for p in (_files(data) if data.is_dir() else iter(()))
        },
    }
    (dest / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest


def _check_manifest(src: Path) -> dict[str, Any]:
    try:
        manifest: dict[str, Any] = json.loads((src / MANIFEST).read_text())
    except (OSError, ValueError):
        raise InvalidInput("not an insitu backup: manifest.json is missing or unreadable") from None
    if manifest.get("format") != FORMAT:
        raise InvalidInput("not an insitu backup of a known format")
    for name, digest in manifest["files"].items():
        path = src / name
        if not path.is_file() or _sha256(path) != digest:
            raise InvalidInput(f"the backup's file {name} is missing or damaged")
    return manifest


def restore(
    src: Path, settings: Settings, *, passphrase: str | None, checkpoint: str | None
) -> dict[str, Any]:
    """Restore the backup `src` into the new, empty home `settings.home`. Returns a report:
    data files missing or different under `<home>/data`, and whether the remembered
    checkpoint came from outside the backup."""
    manifest = _check_manifest(src)
    home = settings.home
    if home.exists() and any(home.iterdir()):
        raise InvalidInput("restore into a new, empty home (the one named is not empty)")
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    settings.keys_dir.mkdir(mode=0o700)
    settings.data_dir.mkdir(mode=0o700)
    if manifest["keys_encrypted"]:
        if not passphrase:
            raise InvalidInput("the keys are encrypted: set INSITU_BACKUP_PASSPHRASE")
        files = open_keys((src / "keys.enc").read_bytes(), passphrase)
    else:
        files = {p.name: p.read_bytes() for p in _files(src / "keys")}
    for name, content in files.items():
        fd = os.open(settings.keys_dir / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(content)
    if (src / CONFIG_FILE).is_file():
        shutil.copy2(src / CONFIG_FILE, home / CONFIG_FILE)
    if (src / "audit").is_dir():
        shutil.copytree(src / "audit", continuity.audit_dir(settings))
    if checkpoint is not None:  # the newest checkpoint known from outside the backup
        continuity.audit_dir(settings).mkdir(mode=0o700, exist_ok=True)
        (continuity.audit_dir(settings) / continuity.LAST_CHECKPOINT).write_text(checkpoint)
    _restore_store(src, settings, manifest["database"])
    data = {
        name: "missing"
        if not (settings.data_dir / name).is_file()
        else ("different" if _sha256(settings.data_dir / name) != entry["sha256"] else "ok")
        for name, entry in manifest["data"].items()
    }
    return {"data": data, "checkpoint_from_outside": checkpoint is not None}


def _restore_store(src: Path, settings: Settings, kind: str) -> None:
    url = settings.resolved_database_url
    if kind == "sqlite":
        if not url.startswith("sqlite"):
            raise InvalidInput("this backup holds a SQLite store; unset INSITU_DATABASE_URL")
        target = Path(url.split("///", 1)[1])
        if target.exists():
            raise InvalidInput("the store file of the new home exists already")
        source = sqlite3.connect(f"file:{src / 'store.sqlite3'}?mode=ro", uri=True)
        dest = sqlite3.connect(target)
        try:
            source.backup(dest)
        finally:
            dest.close()
            source.close()
        return
    if not url.startswith("postgresql"):
        raise InvalidInput("this backup holds a PostgreSQL dump; set INSITU_DATABASE_URL")
    done = subprocess.run(  # noqa: S603 - fixed program, the configured URL
        [
            _tool("pg_restore"),
            "--no-owner",
            "--exit-on-error",
            f"--dbname={_libpq_url(url)}",
            str(src / "store.pgdump"),
        ],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        raise Unavailable("pg_restore failed; the target database must exist and be empty")

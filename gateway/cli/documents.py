"""Dataset documents on the data owner's side: a draft from a data file's schema, and the id
of a document about to be sent."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Literal

from gateway.cli.output import CliError

FORMATS: dict[str, Literal["parquet", "csv"]] = {".parquet": "parquet", ".csv": "csv"}
IDENTIFIER = re.compile(r"(^id$|_id$|_code$|_no$)")


def document_id(body: bytes, content_type: str) -> str | None:
    import yaml

    try:
        data = json.loads(body) if content_type == "application/json" else yaml.safe_load(body)
    except (ValueError, yaml.YAMLError):
        raise CliError("the document is not valid YAML or JSON") from None
    value = data.get("id") if isinstance(data, dict) else None
    return value if isinstance(value, str) else None


def _name(text: str) -> str:
    name = re.sub(r"[^a-z0-9_]+", "_", text.lower()).strip("_")
    return name if re.fullmatch(r"[a-z][a-z0-9_]{0,62}", name) else ""


def draft_dataset(
    file: Path,
    *,
    dataset_id: str | None,
    title: str | None,
    share_class: str,
    classification: str,
    home_dir: Path | None,
) -> str:
    from gateway.cli.local import settings_for
    from sandbox import DuckDBEngine, SandboxError, TableSource

    fmt = FORMATS.get(file.suffix.lower())
    if fmt is None:
        raise CliError("the file must be .parquet or .csv")
    if not file.is_file():
        raise CliError(f"no such file: {file.name}")
    data = (settings_for(home_dir).home / "data").resolve()
    path = file.resolve()
    if not path.is_relative_to(data) or len(path.relative_to(data).parts) < 2:
        raise CliError("the file must lie under <home>/data/<department>/ (give --home)")
    department = path.relative_to(data).parts[0]
    dataset_id = dataset_id or f"{department}.{_name(path.stem)}"
    dept, _, name = dataset_id.partition(".")
    if not (_name(dept) == dept and _name(name) == name):
        raise CliError("--id must be written <department>.<name> (lower-case letters, digits, _)")
    if dept != department:
        raise CliError(f"the file lies in the data of department {department}, not {dept}")
    engine = DuckDBEngine()
    try:
        columns = engine.infer_schema(TableSource(dataset_id=dataset_id, format=fmt, path=path))
    except SandboxError:
        raise CliError(f"cannot read {file.name} as {fmt}") from None
    finally:
        engine.close()
    relative = path.relative_to(data.parent).as_posix()
    default_title = path.stem.replace("_", " ").capitalize()
    lines = [
        "# Drafted by `insitu dataset init` from the file's schema. Review before registering:",
        "# every column starts `sensitive` (ids `identifier`); mark what may be grouped or",
        "# filtered on `public` or `quasi_identifier`, and declare a public column's `values`.",
        f"id: {dataset_id}",
        f"title: {json.dumps(title or default_title, ensure_ascii=False)}",
        f"provider: {department}",
        f"source: {{format: {fmt}, path: {json.dumps(relative)}}}",
        f"share_class: {share_class}                # unconditional | conditional | none",
        f"classification: {classification}             # general | important | core",
        "update_cycle: unspecified",
        "privacy_unit: null                        # the column whose privacy DP protects",
        "columns:",
    ]
    for column, kind in columns:
        sensitivity = "identifier" if IDENTIFIER.search(column) else "sensitive"
        lines.append(
            f"  - {{name: {json.dumps(column)}, type: {kind}, sensitivity: {sensitivity}}}"
        )
    lines.append("disclosure: {min_group_size: 10}")
    return "\n".join(lines) + "\n"

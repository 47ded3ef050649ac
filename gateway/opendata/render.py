"""What an open dataset shows the public: the result (whitelisted fields), its CSV, DCAT.

Only these fields of a release ever leave under `/open`: the table (`columns`, `rows`), what
disclosure control withheld and, for `dp`, the intervals, accuracy and privacy cost. Job ids,
template SQL, dataset rows and profiles never do.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from typing import Any

PUBLIC_FIELDS = ("columns", "rows", "withheld", "intervals", "accuracy", "privacy")


def public_result(result: dict[str, Any]) -> dict[str, Any]:
    return {k: result[k] for k in PUBLIC_FIELDS if k in result}


def canonical(value: object) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def result_hash(result: dict[str, Any]) -> str:
    return "sha256:" + hashlib.sha256(canonical(result)).hexdigest()


def csv_bytes(result: dict[str, Any]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(result["columns"])
    writer.writerows(result["rows"])
    return out.getvalue().encode()


def csv_hash(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def metadata(row: Any) -> dict[str, Any]:
    """An open dataset's public description (a row of `open_datasets` joined with its version)."""
    return {
        "id": row.id,
        "title": row.title,
        "description": row.description,
        "licence": row.licence,
        "update_cycle": row.update_cycle,
        "open_class": row.open_class,
        "publisher": row.provider,
        "template": {"id": row.template_id, "version": row.template_version},
        "parameters": row.parameters,
        "version": row.version,
        "published_at": row.published_at.isoformat(),
    }


def document(row: Any) -> dict[str, Any]:
    """GET /open/v1/datasets/{id}: metadata, the result, its hashes and its receipt."""
    return {
        **metadata(row),
        "result": row.result,
        "result_hash": row.result_hash,
        "csv_sha256": row.csv_sha256,
        "receipt": row.receipt,
        "verify": {
            "checkpoint": "/open/v1/audit/checkpoint",
            "keys": "/open/v1/audit/keys",
            "consistency": "/open/v1/audit/proofs/consistency",
        },
    }


def dcat(rows: list[Any]) -> dict[str, Any]:
    """The catalogue of published results as DCAT JSON-LD."""
    return {
        "@context": {
            "dcat": "http://www.w3.org/ns/dcat#",
            "dct": "http://purl.org/dc/terms/",
            "foaf": "http://xmlns.com/foaf/0.1/",
            "insitu": "urn:insitu:vocab:",
        },
        "@id": "urn:insitu:open",
        "@type": "dcat:Catalog",
        "dct:title": "Open results (开放不出门): results of data services, never the data",
        "dcat:dataset": [_dcat_dataset(r) for r in rows],
    }


def _dcat_dataset(row: Any) -> dict[str, Any]:
    base = f"/open/v1/datasets/{row.id}"
    return {
        "@id": f"urn:insitu:open:{row.id}",
        "@type": "dcat:Dataset",
        "dct:identifier": row.id,
        "dct:title": row.title,
        "dct:description": row.description,
        "dct:license": row.licence,
        "dct:accrualPeriodicity": row.update_cycle,
        "dct:publisher": {"@type": "foaf:Agent", "@id": f"urn:insitu:department:{row.provider}"},
        "dct:issued": row.published_at.isoformat(),
        "dcat:version": str(row.version),
        "insitu:openClass": row.open_class,
        "insitu:template": {"id": row.template_id, "version": row.template_version},
        "insitu:parameters": row.parameters,
        "insitu:resultHash": row.result_hash,
        "dcat:distribution": [
            {
                "@type": "dcat:Distribution",
                "dcat:downloadURL": base,
                "dcat:mediaType": "application/json",
            },
            {
                "@type": "dcat:Distribution",
                "dcat:downloadURL": f"{base}/data.csv",
                "dcat:mediaType": "text/csv",
                "insitu:sha256": row.csv_sha256,
            },
        ],
    }

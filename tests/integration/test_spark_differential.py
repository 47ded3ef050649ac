"""Differential: the same approved templates, the same data, two engines — same answers.

Two gateways (the real app, real SQLite store, real audit log), one on the embedded DuckDB,
one on Spark through a real Spark Connect server, get the same datasets, templates, purposes
and jobs in the same order: every demo template and the integration suite's templates of
kinds aggregate, verify and list release the same cells and withhold the same cells for the
same reasons (the release history, whose sketches are made by each engine's own hash,
included). For dp the noise is random, so the exact pre-noise aggregates the engines hand
to OpenDP are compared instead.
"""

from __future__ import annotations

import importlib.util
import math
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from tests.conftest import IN_CI

if importlib.util.find_spec("pyspark") is None:  # the `spark` extra (make test installs it)
    if IN_CI:
        raise ImportError("pyspark is missing: with CI=true the Spark tests must run")
    pytest.skip("pyspark is not installed (pip install '.[spark]')", allow_module_level=True)
from fastapi.testclient import TestClient

from gateway import home
from gateway.api import create_app
from gateway.auth.issuer import LocalIssuer
from gateway.auth.keys import IssuerKeys
from gateway.catalogue.documents import DatasetSpec, TemplateSpec, parse_document
from gateway.demo import documents
from gateway.demo.data import write_demo_data
from gateway.dp.plans import dp_plan
from gateway.settings import Settings
from sandbox import DuckDBEngine, Limits, SparkEngine, TableSource, compile_dp
from tests.integration import test_disclosure_differencing as differencing
from tests.integration import test_dp_jobs as dp_jobs
from tests.integration.conftest import Caller
from tests.integration.test_hardening import AVERAGE
from tests.integration.test_templates_workflow import RANGE_TEMPLATE

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("spark")]

DATASETS = (
    ("market", documents.ENTERPRISE_REGISTRY),
    ("tax", documents.TAX_FILINGS),
    ("civil", documents.RESIDENTS + documents.RESIDENTS_PRIVACY),
    ("market", documents.LICENCES),
    ("tax", documents.ABNORMAL_TAXPAYERS),
    ("civil", differencing.PEOPLE),
)
# (template document, the providers that approve it, jobs: parameters of each)
TEMPLATES: tuple[tuple[str, tuple[str, ...], tuple[dict[str, Any], ...]], ...] = (
    (
        documents.NO_FILING_TEMPLATE,
        ("market", "tax"),
        (
            {"year": 2024, "industry": "manufacturing"},
            {"year": 2021, "industry": "retail"},
        ),
    ),
    (documents.LIST_TEMPLATE, ("market", "tax"), ({"district": "mentougou", "year": 2024},)),
    (AVERAGE, ("market",), ({"since": 2000},)),
    (RANGE_TEMPLATE, ("market",), ({"until": [2025, 2028]},)),
    (differencing.INCOME, ("civil",), ({},)),
    (differencing.AGE_RANGE, ("civil",), ({"lo": 20, "hi": 69}, {"lo": 20, "hi": 49})),
)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("differential-data")
    write_demo_data(path, enterprises_n=6_000, residents_n=4_000)
    pq.write_table(differencing.people(), path / "civil" / "people.parquet")
    return path


def verify_keys(data_dir: Path) -> list[str]:
    people = pq.read_table(data_dir / "civil/residents.parquet").to_pylist()
    inside = [p["person_id"] for p in people if p["district"] == "haidian"][:3]
    outside = next(p["person_id"] for p in people if p["district"] != "haidian")
    return [inside[0], outside, inside[1], "P999999999", inside[2]]


def finished(analyst: Caller, job_id: str) -> dict[str, Any]:
    """The job's result once it ended (long polls of 60 s, the API's longest wait)."""
    for _ in range(20):
        body: dict[str, Any] = analyst.get(f"/v1/jobs/{job_id}/result", params={"wait": 60}).json()
        if body.get("status") not in ("accepted", "running"):
            return body
    raise AssertionError(f"job {job_id} did not finish")


def outcomes(tmp: Path, data_dir: Path, **engine: Any) -> dict[str, Any]:
    """Run every job on a fresh gateway with ``engine`` settings; what each released."""
    settings = Settings(
        home=tmp / "home",
        database_url=f"sqlite:///{tmp / 'insitu.db'}",
        workers=1,
        sandbox_isolation="inprocess",
        job_timeout_s=600,
        **engine,
    )
    home.init_home(settings)
    shutil.copytree(data_dir, settings.data_dir, dirs_exist_ok=True)
    keys = IssuerKeys.load(settings.keys_dir / home.ISSUER_KEYS)
    issuer = LocalIssuer(keys, issuer=settings.local_issuer, audience=settings.oidc_audience)

    def caller(client: TestClient, subject: str, dept: str, role: str) -> Caller:
        token = issuer.issue(subject=subject, department=dept, roles=[role], ttl_s=3600)
        return Caller(client, token)

    results: dict[str, Any] = {}
    with TestClient(create_app(settings)) as client:
        owners = {
            d: caller(client, f"owner@{d}", d, "data_owner") for d in ("market", "tax", "civil")
        }
        analyst = caller(client, "analyst@stats", "stats", "analyst")
        for dept, doc in DATASETS:
            r = owners[dept].post_yaml("/v1/datasets", doc)
            assert r.status_code == 201, r.text
        expires = (datetime.now(UTC) + timedelta(days=30)).isoformat()
        purposes: dict[str, str] = {}
        for dept, dataset in (("market", "market.enterprise_registry"), ("tax", "tax.filings")):
            asked = analyst.post("/v1/purposes", json={"dataset": dataset, "purpose": "review"})
            done = owners[dept].post(
                f"/v1/purposes/{asked.json()['id']}/approvals", json={"expires_at": expires}
            )
            assert done.status_code == 201, done.text
            purposes[dataset] = done.json()["id"]
        jobs = [(doc, providers, params) for doc, providers, runs in TEMPLATES for params in runs]
        jobs.append(
            (
                documents.VERIFY_TEMPLATE,
                ("civil",),
                {"district": "haidian", "person_id": verify_keys(data_dir)},
            )
        )
        approved: set[str] = set()
        for doc, providers, params in jobs:
            spec = parse_document(doc, TemplateSpec)
            if spec.id not in approved:
                proposed = analyst.post_yaml("/v1/templates", doc)
                assert proposed.status_code == 201, proposed.text
                for dept in providers:
                    r = owners[dept].post(
                        f"/v1/templates/{spec.id}/versions/1/approvals",
                        json={"content_hash": proposed.json()["content_hash"]},
                    )
                    assert r.status_code == 201, r.text
                approved.add(spec.id)
            named = [purposes[d] for d in spec.datasets if d in purposes]
            submitted = analyst.post(
                "/v1/jobs", json={"template": spec.id, "parameters": params, "purposes": named}
            )
            assert submitted.status_code == 202, submitted.text
            body = finished(analyst, submitted.json()["id"])
            assert body["status"] in ("released", "suppressed"), body
            results[f"{spec.id} {params}"] = {
                "status": body["status"],
                "columns": body.get("columns"),
                "rows": body.get("rows"),
                "withheld": sorted(
                    (sorted(c["key"].items()), c["column"], c["rule"])
                    for c in body.get("withheld", [])
                ),
            }
    return results


def same(a: object, b: object) -> bool:
    """Equal; floats (sums and means of DOUBLE columns, added in another order by each
    engine) to 1e-12 relative."""
    if isinstance(a, float) or isinstance(b, float):
        return (
            isinstance(a, int | float)
            and isinstance(b, int | float)
            and math.isclose(a, b, rel_tol=1e-12)
        )
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return a == b


def test_aggregate_list_and_verify_jobs_release_the_same_on_duckdb_and_spark(
    tmp_path: Path, data_dir: Path, spark_remote: str
) -> None:
    duck = outcomes(tmp_path / "duckdb", data_dir, engine="duckdb")
    spark = outcomes(tmp_path / "spark", data_dir, engine="spark", spark_remote=spark_remote)
    assert duck.keys() == spark.keys()
    for name in duck:
        d, s = duck[name], spark[name]
        if d["rows"] is not None and "ORDER BY" not in name:
            d["rows"], s["rows"] = sorted(d["rows"], key=repr), sorted(s["rows"], key=repr)
        assert same(d, s), (name, d, s)
    # the suite's data exercises every branch: released cells, withheld cells, each kind
    assert any(r["withheld"] for r in duck.values())
    assert any(r["rows"] for r in duck.values() if r["columns"] == ["enterprise_id", "district"])
    assert any(r["status"] == "released" and r["rows"] for r in duck.values())


DP_TEMPLATES = (
    (
        documents.DP_TEMPLATE,
        documents.RESIDENTS + documents.RESIDENTS_PRIVACY,
        {"born_since": 1960},
    ),
    (dp_jobs.DP_TEMPLATE, documents.RESIDENTS + dp_jobs.PRIVACY, {"born_since": 1950}),
    (dp_jobs.PRIVATE_KEYS_TEMPLATE, documents.RESIDENTS + dp_jobs.PRIVACY, {}),
)


@pytest.fixture
def engines(spark_remote: str) -> Iterator[tuple[DuckDBEngine, SparkEngine]]:
    duck = DuckDBEngine(Limits(max_rows=10_000))
    yield duck, SparkEngine(spark_remote, Limits(timeout_s=600, max_rows=10_000))
    duck.close()


@pytest.mark.parametrize(("template", "dataset", "params"), DP_TEMPLATES)
def test_dp_plans_hand_the_same_exact_aggregates_to_opendp(
    template: str,
    dataset: str,
    params: dict[str, Any],
    data_dir: Path,
    engines: tuple[DuckDBEngine, SparkEngine],
) -> None:
    """The bounded-contribution plan (clamping, per-unit windows, exact sums in fixed point)
    computed by each engine: the numbers OpenDP adds noise to are the same."""
    ds = parse_document(dataset, DatasetSpec)
    spec = parse_document(template, TemplateSpec)
    plan = dp_plan(spec, {ds.id: ds})
    query = compile_dp(plan, tuple(sorted(spec.parameters)))
    sources = {ds.id: TableSource(ds.id, "parquet", data_dir / "civil" / "residents.parquet")}
    values = {**params, **plan.constants()}
    duck, spark = engines
    expected = duck.run(query, sources, values)
    got = spark.run(query, sources, values)
    assert got.columns == expected.columns
    assert sorted(got.rows, key=repr) == sorted(expected.rows, key=repr)
    assert expected.rows

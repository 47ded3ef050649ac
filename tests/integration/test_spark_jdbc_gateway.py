"""A JDBC dataset through the gateway on Spark: PostgreSQL queried in place.

The real app (SQLite store, audit log) with ``INSITU_ENGINE=spark`` on a real Spark Connect
server that has Debian's PostgreSQL JDBC driver on its class path: a provider registers a
dataset whose source is a ``jdbc`` table on the machine's PostgreSQL, named by a connection
of the gateway's settings file (the document holds no URL and no credentials); an analyst's
aggregate job on it releases the counts of the same rows computed here, and withholds the
group under the minimum size (with one more cell, so that the total does not give it away).
Registration profiles the table on Spark (the quality profile of a non-file source).
"""

from __future__ import annotations

import importlib.util
import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import IN_CI

if importlib.util.find_spec("pyspark") is None:  # the `spark` extra (make test installs it)
    if IN_CI:
        raise ImportError("pyspark is missing: with CI=true the Spark tests must run")
    pytest.skip("pyspark is not installed (pip install '.[spark]')", allow_module_level=True)
import sqlalchemy as sa
from fastapi.testclient import TestClient

from deploy.spark_connect import JDBC_JARS
from gateway import home
from gateway.api import create_app
from gateway.auth.issuer import LocalIssuer
from gateway.auth.keys import IssuerKeys
from gateway.settings import Settings
from tests.integration.conftest import Caller
from tests.integration.test_spark_differential import finished

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("spark"), pytest.mark.postgres]

DATASET = """\
id: civil.people
title: People (in the civil registry's PostgreSQL)
provider: civil
source: {format: jdbc, table: public.people, connection: civil_pg}
share_class: unconditional
classification: general
privacy_unit: person_id
columns:
  - {name: person_id, type: VARCHAR, sensitivity: identifier}
  - {name: district, type: VARCHAR, sensitivity: public}
  - {name: income, type: BIGINT, sensitivity: sensitive}
disclosure: {min_group_size: 10}
"""

TEMPLATE = """\
id: people-by-district
version: 1
kind: aggregate
title: People by district
datasets: [civil.people]
sql: |
  SELECT p.district, COUNT(*) AS people FROM civil.people AS p GROUP BY p.district
output: {count_column: people}
"""

# 4 districts of 20, 15, 12 and 4 people: the last is under the minimum group size of 10
ROWS = [
    {"person_id": f"P{i:03d}", "district": district, "income": 1000 + 7 * i}
    for i, district in enumerate(["north"] * 20 + ["south"] * 15 + ["west"] * 12 + ["east"] * 4)
]


@pytest.fixture
def jdbc_driver() -> None:
    """Debian's libpostgresql-jdbc-java: .ci/run installs it, so CI fails without it."""
    if not any(jar.exists() for jar in JDBC_JARS):
        reason = "no PostgreSQL JDBC driver (apt-get install libpostgresql-jdbc-java)"
        if IN_CI:
            pytest.fail(f"{reason}; with CI=true .ci/run installs it")
        pytest.skip(reason)


def test_aggregate_job_on_a_jdbc_dataset_through_the_gateway(
    jdbc_driver: None, spark_remote: str, postgres_url: str, tmp_path: Path
) -> None:
    db = sa.create_engine(postgres_url)
    with db.begin() as conn:
        conn.execute(sa.text("CREATE TABLE people (person_id text, district text, income bigint)"))
        conn.execute(sa.text("INSERT INTO people VALUES (:person_id, :district, :income)"), ROWS)
    db.dispose()
    url = sa.make_url(postgres_url)
    connections = tmp_path / "jdbc.json"
    connections.write_text(
        json.dumps(
            {
                "civil_pg": {
                    "url": f"jdbc:postgresql://{url.host}:{url.port}/{url.database}",
                    "user": url.username or "postgres",
                    "password": url.password or "",
                }
            }
        )
    )
    settings = Settings(
        home=tmp_path / "home",
        database_url=f"sqlite:///{tmp_path / 'insitu.db'}",
        workers=1,
        engine="spark",
        spark_remote=spark_remote,
        jdbc_connections_file=connections,
        job_timeout_s=600,
    )
    home.init_home(settings)
    keys = IssuerKeys.load(settings.keys_dir / home.ISSUER_KEYS)
    issuer = LocalIssuer(keys, issuer=settings.local_issuer, audience=settings.oidc_audience)

    def caller(client: TestClient, subject: str, dept: str, role: str) -> Caller:
        token = issuer.issue(subject=subject, department=dept, roles=[role], ttl_s=3600)
        return Caller(client, token)

    with TestClient(create_app(settings)) as client:
        owner = caller(client, "owner@civil", "civil", "data_owner")
        analyst = caller(client, "analyst@stats", "stats", "analyst")
        registered = owner.post_yaml("/v1/datasets", DATASET)
        assert registered.status_code == 201, registered.text
        proposed = analyst.post_yaml("/v1/templates", TEMPLATE)
        assert proposed.status_code == 201, proposed.text
        approved = owner.post(
            "/v1/templates/people-by-district/versions/1/approvals",
            json={"content_hash": proposed.json()["content_hash"]},
        )
        assert approved.status_code == 201, approved.text
        submitted = analyst.post("/v1/jobs", json={"template": "people-by-district"})
        assert submitted.status_code == 202, submitted.text
        body: dict[str, Any] = finished(analyst, submitted.json()["id"])
    assert body["status"] == "released", body
    counts = Counter(row["district"] for row in ROWS)
    withheld = {c["key"]["district"]: c["rule"] for c in body["withheld"]}
    # east is under the minimum; one more cell goes with it, or the total would give it away
    assert withheld["east"] == "min_group_size"
    assert sorted(withheld.values()) == ["min_group_size", "secondary"]
    released = {tuple(row) for row in body["rows"] if row[1] is not None}
    assert released == {(d, n) for d, n in counts.items() if d not in withheld}
    assert len(released) == 2
    assert "postgres" not in json.dumps(body) and str(connections) not in json.dumps(body)

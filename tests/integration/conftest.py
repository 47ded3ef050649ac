"""The real app (FastAPI + workers) on a real store (SQLite and PostgreSQL), real DuckDB,
real Casbin, real audit log, and tokens signed by the home's real issuer keys."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from gateway import home
from gateway.api import create_app
from gateway.auth.issuer import LocalIssuer
from gateway.auth.keys import IssuerKeys
from gateway.demo import documents
from gateway.demo.data import write_demo_data
from gateway.settings import Settings
from gateway.store import schema
from tests.conftest import create_database

YAML = {"Content-Type": "application/yaml"}


@dataclass
class World:
    settings: Settings
    client: TestClient
    issuer: LocalIssuer
    app: Any
    registered: bool = False  # the demo datasets are registered already (`registered`)

    def token(self, subject: str, department: str, *roles: str, ttl_s: int = 600) -> str:
        return self.issuer.issue(
            subject=subject, department=department, roles=list(roles), ttl_s=ttl_s
        )

    def as_(self, subject: str, department: str, *roles: str) -> Caller:
        return Caller(self.client, self.token(subject, department, *roles))


@dataclass
class Caller:
    client: TestClient
    token: str
    # Purposes approved for this caller's department (`grant_purpose`): `submit` names them, as
    # a job on conditionally shared data must (有条件共享).
    purposes: list[str] = field(default_factory=list)

    def submit(self, json: dict[str, Any], **kwargs: Any) -> httpx.Response:
        """POST /v1/jobs naming the caller's approved purposes unless `json` names its own."""
        return self.post("/v1/jobs", json={"purposes": self.purposes, **json}, **kwargs)

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.token}", **kwargs.pop("headers", {})}
        return self.client.request(method, path, headers=headers, **kwargs)

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", path, **kwargs)

    def post_yaml(self, path: str, document: str) -> httpx.Response:
        return self.request("POST", path, content=document.encode(), headers=YAML)


@pytest.fixture(scope="session")
def demo_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Small demo datasets, generated once per session and copied into each home."""
    path = tmp_path_factory.mktemp("demo-data")
    write_demo_data(path, enterprises_n=6_000, residents_n=4_000)
    return path


def copy_demo_data(data_dir: Path, settings: Settings) -> None:
    for source in data_dir.rglob("*.parquet"):
        target = settings.data_dir / source.relative_to(data_dir)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(source.read_bytes())


def register_demo_datasets(owners: dict[str, Caller]) -> None:
    for dept, doc in (
        ("market", documents.ENTERPRISE_REGISTRY),
        ("tax", documents.TAX_FILINGS),
        ("civil", documents.RESIDENTS),
    ):
        response = owners[dept].post_yaml("/v1/datasets", doc)
        assert response.status_code == 201, response.text


def owners_of(world: World) -> dict[str, Caller]:
    return {d: world.as_(f"owner@{d}", d, "data_owner") for d in ("market", "tax", "civil")}


# --- Registered homes -----------------------------------------------------------------------
# Most tests start from a home whose demo datasets are registered (`registered`). Registering
# them (three sandbox calls, and a sandbox worker started for them) costs ~0.6 s a test, so
# once per xdist worker and store kind a home is registered through the real app, and each
# such test gets a copy of it: the home's directory (keys, config, data) and its store (a file
# copy on SQLite; on PostgreSQL its rows, `tests.pg_pool`). Keys are then shared by the tests
# of one xdist worker; the registration path itself is still tested by `registered` where a
# test asks for it without a world made for it (`getfixturevalue`) and by the catalogue tests.


@dataclass
class _RegisteredHome:
    home: Path
    store: str  # the SQLite file, or the PostgreSQL template database's name


def _registered_home(
    request: pytest.FixtureRequest, kind: str, made: dict[str, Any], data: Path
) -> _RegisteredHome:
    if kind in made:
        seeded: _RegisteredHome = made[kind]
        return seeded
    base = request.getfixturevalue("tmp_path_factory").mktemp(f"registered-{kind}")
    if kind == "sqlite":
        store = str(base / "insitu.db")
        url = f"sqlite:///{store}"
    else:
        store, url = create_database(request.getfixturevalue("pg_admin_url"))
    settings = Settings(home=base / "home", database_url=url, workers=2)
    home.init_home(settings)
    copy_demo_data(data, settings)
    keys = IssuerKeys.load(settings.keys_dir / home.ISSUER_KEYS)
    issuer = LocalIssuer(keys, issuer=settings.local_issuer, audience=settings.oidc_audience)
    app = create_app(settings, run_workers=False)
    with TestClient(app) as client:
        register_demo_datasets(owners_of(World(settings, client, issuer, app)))
    made[kind] = seeded = _RegisteredHome(settings.home, store)
    if kind == "postgresql":
        made.setdefault("drop", []).append(store)
    return seeded


@pytest.fixture
def world(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    migrated_database_url: str,
    demo_data_dir: Path,
    _registered_homes: dict[str, Any],
) -> Iterator[World]:
    settings = Settings(home=tmp_path / "home", database_url=migrated_database_url, workers=2)
    registered = "registered" in request.fixturenames
    if registered:
        kind = "sqlite" if migrated_database_url.startswith("sqlite") else "postgresql"
        seed = _registered_home(request, kind, _registered_homes, demo_data_dir)
        shutil.copytree(seed.home, settings.home)
        if kind == "sqlite":
            shutil.copyfile(seed.store, sa.make_url(migrated_database_url).database or "")
        else:
            pool = request.getfixturevalue("_pg_pool")
            pool.reset(sa.make_url(migrated_database_url).database, seed.store)
    else:
        home.init_home(settings)
        copy_demo_data(demo_data_dir, settings)
    keys = IssuerKeys.load(settings.keys_dir / home.ISSUER_KEYS)
    issuer = LocalIssuer(keys, issuer=settings.local_issuer, audience=settings.oidc_audience)
    app = create_app(settings)
    with TestClient(app) as client:  # a server-side exception fails the test
        yield World(settings=settings, client=client, issuer=issuer, app=app, registered=registered)


@pytest.fixture
def owners(world: World) -> dict[str, Caller]:
    return owners_of(world)


@pytest.fixture
def analyst(world: World) -> Caller:
    return world.as_("analyst@stats", "stats", "analyst")


@pytest.fixture
def registered(world: World, owners: dict[str, Caller]) -> None:
    """The demo datasets are registered (the world starts from a registered home)."""
    if not world.registered:
        register_demo_datasets(owners)


def grant_purpose(
    analyst: Caller, owner: Caller, dataset: str, *, days: int = 30
) -> dict[str, Any]:
    """The analyst's department requests a purpose for a conditional dataset; its owner approves."""
    asked = analyst.post("/v1/purposes", json={"dataset": dataset, "purpose": "compliance review"})
    assert asked.status_code == 201, asked.text
    expires = (datetime.now(UTC) + timedelta(days=days)).isoformat()
    approved = owner.post(
        f"/v1/purposes/{asked.json()['id']}/approvals", json={"expires_at": expires}
    )
    assert approved.status_code == 201, approved.text
    body: dict[str, Any] = approved.json()
    analyst.purposes.append(body["id"])
    return body


@pytest.fixture
def approved_template(
    registered: None, owners: dict[str, Caller], analyst: Caller
) -> dict[str, Any]:
    proposed = analyst.post_yaml("/v1/templates", documents.NO_FILING_TEMPLATE)
    assert proposed.status_code == 201, proposed.text
    body = proposed.json()
    for dept in ("market", "tax"):
        r = owners[dept].post(
            f"/v1/templates/{body['id']}/versions/1/approvals",
            json={"content_hash": body["content_hash"]},
        )
        assert r.status_code == 201, r.text
    final: dict[str, Any] = r.json()
    assert final["status"] == "approved"
    for dept, dataset in (("market", "market.enterprise_registry"), ("tax", "tax.filings")):
        grant_purpose(analyst, owners[dept], dataset)  # both are shared on condition
    return final


def expire_lease(gw: Any, job_id: str) -> None:
    """Make a running job's lease lapse now (another worker may reclaim it)."""
    with gw.db.begin() as conn:
        conn.execute(
            schema.jobs.update()
            .where(schema.jobs.c.id == job_id)
            .values(lease_expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )

"""A real Gateway for use-case tests without HTTP: SQLite store, Casbin policy, audit trail and
DuckDB in process, from `build_gateway`, with the market's and the tax bureau's datasets
registered by their owners."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway import home
from gateway.catalogue import registry
from gateway.catalogue.documents import DatasetSpec, parse_document
from gateway.context import Gateway
from gateway.demo import documents
from gateway.demo.data import write_demo_data
from gateway.settings import Settings
from gateway.wiring import build_gateway
from tests.unit.gateway.people import person


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("data")
    write_demo_data(path, enterprises_n=300, residents_n=50)
    return path


@pytest.fixture
def gw(tmp_path: Path, data_dir: Path, migrated_sqlite_url: str) -> Iterator[Gateway]:
    settings = Settings(
        home=tmp_path / "home",
        database_url=migrated_sqlite_url,
        sandbox_isolation="inprocess",
        workers=1,
    )
    home.init_home(settings)
    for source in data_dir.rglob("*.parquet"):
        target = settings.data_dir / source.relative_to(data_dir)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(source.read_bytes())
    gateway = build_gateway(settings)
    for dept, doc in (("market", documents.ENTERPRISE_REGISTRY), ("tax", documents.TAX_FILINGS)):
        spec = parse_document(doc, DatasetSpec)
        registry.register(gateway, person(f"owner@{dept}", dept, "data_owner"), spec)
    yield gateway
    gateway.close()

"""A served demo gateway for the client, the notebook and the CLI tests: uvicorn on a loopback
port, a home with small synthetic data of the demo's three departments, their datasets
registered, and the main (aggregate), verify and dp templates approved by their owners."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pyarrow.parquet as pq

from gateway import home
from gateway.api import create_app
from gateway.auth.issuer import LocalIssuer
from gateway.auth.keys import IssuerKeys
from gateway.demo import documents, flow
from gateway.demo.data import write_demo_data
from gateway.demo.server import BackgroundServer
from gateway.settings import Settings


@dataclass
class Demo:
    url: str
    home: Path
    issuer: LocalIssuer
    purposes: list[str]  # the analyst's approved purposes (market, tax)
    residents: list[tuple[str, str]]  # (person_id, district): every other one in haidian

    def token(self, subject: str, department: str, role: str) -> str:
        return self.issuer.issue(subject=subject, department=department, roles=[role], ttl_s=3600)

    @property
    def analyst(self) -> str:
        return self.token("analyst@stats", "stats", "analyst")


def _approve(owner: flow.Actor, template: dict[str, object]) -> None:
    owner.ok(
        "POST",
        f"/v1/templates/{template['id']}/versions/{template['version']}/approvals",
        json={"content_hash": template["content_hash"]},
    )


@contextmanager
def served_demo(root: Path) -> Iterator[Demo]:
    settings = Settings(home=root / "home", database_url=None, workers=2)
    home.init_home(settings)
    data = write_demo_data(settings.data_dir, enterprises_n=5_000, residents_n=3_000)
    keys = IssuerKeys.load(settings.keys_dir / home.ISSUER_KEYS)
    issuer = LocalIssuer(keys, issuer=settings.local_issuer, audience=settings.oidc_audience)
    with (
        BackgroundServer(create_app(settings)) as url,
        httpx.Client(base_url=url, timeout=120) as http,
    ):
        owners = {
            d: flow.Actor(http, issuer.issue(subject=f"owner@{d}", department=d,
                                             roles=["data_owner"], ttl_s=3600))
            for d in ("market", "tax", "civil")
        }  # fmt: skip
        analyst = flow.Actor(
            http, issuer.issue(subject="analyst@stats", department="stats", roles=["analyst"])
        )
        purposes = flow.register_and_approve(owners, analyst)
        for document in (documents.VERIFY_TEMPLATE, documents.DP_TEMPLATE):
            _approve(owners["civil"], flow.yaml_post(analyst, "/v1/templates", document))
        people = pq.read_table(data.residents, columns=["person_id", "district"]).to_pylist()
        inside = [(p["person_id"], "haidian") for p in people if p["district"] == "haidian"]
        outside = [(p["person_id"], p["district"]) for p in people if p["district"] != "haidian"]
        # alternating: half of any prefix matches haidian (no sweep alarm on a verify test)
        residents = [r for pair in zip(inside[:30], outside[:30], strict=True) for r in pair]
        yield Demo(url, settings.home, issuer, purposes, residents)

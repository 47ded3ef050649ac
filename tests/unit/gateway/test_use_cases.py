"""The use cases of purposes, authorization, submission and job reads, without HTTP.

A real Gateway (SQLite store, Casbin policy, audit trail, DuckDB in process) from
`build_gateway`; each rule is asserted on what the store and the audit log hold afterwards.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from audit import decode
from gateway import authz
from gateway.catalogue import purposes, registry, templates
from gateway.catalogue.documents import DatasetSpec, TemplateSpec, parse_document
from gateway.context import Gateway
from gateway.demo import documents
from gateway.errors import Conflict, Forbidden, InvalidInput, NotFound
from gateway.jobs import model, reads
from gateway.jobs.submit import submit
from gateway.store import db
from tests.unit.gateway.people import person

# Each test builds a gateway of its own (a home, migrations, two datasets): ~2 s each.
pytestmark = pytest.mark.slow


ANALYST = person("ana@tax", "tax", "analyst")
OUTSIDER = person("eve@civil", "civil", "analyst")
MARKET_OWNER = person("owner@market", "market", "data_owner")
TAX_OWNER = person("owner@tax", "tax", "data_owner")


def events(gw: Gateway, type_: str) -> list[dict[str, Any]]:
    with db.reading(gw.db) as conn:
        raw = gw.audit.log.entries(conn, 0, gw.audit.log.size(conn))
    found = []
    for data in raw:
        event = decode(data)
        if event.type == type_:
            found.append({"allowed": event.allowed, "details": dict(event.details)})
    return found


def approved_template(gw: Gateway) -> templates.StoredTemplate:
    stored = templates.propose(
        gw, ANALYST, parse_document(documents.NO_FILING_TEMPLATE, TemplateSpec)
    )
    for owner in (MARKET_OWNER, TAX_OWNER):
        stored = templates.decide_approval(
            gw,
            owner,
            stored.spec.id,
            stored.spec.version,
            approve=True,
            content_hash=stored.content_hash,
            comment="",
        )
    assert stored.status is templates.Status.APPROVED
    return stored


def approved_purposes(gw: Gateway) -> list[str]:
    ids = []
    for dataset, owner in (
        ("market.enterprise_registry", MARKET_OWNER),
        ("tax.filings", TAX_OWNER),
    ):
        asked = purposes.request(gw, ANALYST, dataset, "compliance review")
        purposes.decide(
            gw,
            owner,
            asked["id"],
            approve=True,
            expires_at=datetime.now(UTC) + timedelta(days=30),
        )
        ids.append(asked["id"])
    return ids


# --- purposes ---------------------------------------------------------------------------------


def test_a_purpose_is_decided_by_its_datasets_owner_once(gw: Gateway) -> None:
    asked = purposes.request(gw, ANALYST, "market.enterprise_registry", "  compliance review ")
    assert (asked["status"], asked["purpose"], asked["department"]) == (
        "requested",
        "compliance review",
        "tax",
    )
    with pytest.raises(Forbidden):  # the tax owner does not own the market's registry
        purposes.decide(gw, TAX_OWNER, asked["id"], approve=True, expires_at=None)
    until = datetime.now(UTC) + timedelta(days=10)
    decided = purposes.decide(gw, MARKET_OWNER, asked["id"], approve=True, expires_at=until)
    assert decided["status"] == "approved"
    with pytest.raises(Conflict):
        purposes.decide(gw, MARKET_OWNER, asked["id"], approve=False, expires_at=None)
    assert [e["allowed"] for e in events(gw, "purpose.denied")] == [False]
    assert len(events(gw, "purpose.approved")) == 1


@pytest.mark.parametrize(
    "expires",
    [None, datetime.now(UTC) - timedelta(days=1), datetime.now(UTC) + timedelta(days=400)],
)
def test_an_approval_needs_a_bounded_future_expiry(gw: Gateway, expires: datetime | None) -> None:
    asked = purposes.request(gw, ANALYST, "market.enterprise_registry", "review")
    with pytest.raises(InvalidInput):
        purposes.decide(gw, MARKET_OWNER, asked["id"], approve=True, expires_at=expires)
    assert purposes.get(gw, asked["id"])["status"] == "requested"


def test_purposes_are_asked_only_of_conditional_data_and_never_blank(gw: Gateway) -> None:
    with pytest.raises(InvalidInput):
        purposes.request(gw, ANALYST, "market.enterprise_registry", "   ")
    registry.register(
        gw,
        person("o@civil", "civil", "data_owner"),
        parse_document(documents.RESIDENTS, DatasetSpec),
    )
    with pytest.raises(InvalidInput):  # not-shared data: no purpose opens it
        purposes.request(gw, ANALYST, "civil.residents", "curiosity")


def test_a_department_sees_its_own_purposes_and_those_asked_of_its_data(gw: Gateway) -> None:
    asked = purposes.request(gw, ANALYST, "market.enterprise_registry", "review")
    assert [p["id"] for p in purposes.list_visible(gw, ANALYST)] == [asked["id"]]
    assert [p["id"] for p in purposes.list_visible(gw, MARKET_OWNER)] == [asked["id"]]
    assert purposes.list_visible(gw, OUTSIDER) == []


# --- authorization ----------------------------------------------------------------------------


def test_require_audits_a_denial_with_its_reason_code_before_raising(gw: Gateway) -> None:
    nobody = person("x@tax", "tax")  # no role at all
    with pytest.raises(Forbidden) as caught:
        authz.require(gw, nobody, "job", "submit", event="job.denied", target="template:t@1")
    assert caught.value.extensions["reason_code"] == "missing_role"
    [denied] = events(gw, "job.denied")
    assert denied["allowed"] is False
    assert denied["details"]["reason_code"] == "missing_role"


def test_require_with_a_read_event_audits_the_allowed_read(gw: Gateway) -> None:
    decision = authz.require(
        gw, ANALYST, "catalogue", "read", event="x.denied", target="t", read_event="x.read"
    )
    assert decision.allowed
    assert [e["allowed"] for e in events(gw, "x.read")] == [True]


# --- submission and reads ---------------------------------------------------------------------


def test_an_admitted_job_is_one_row_and_one_accepted_entry_naming_its_purposes(
    gw: Gateway,
) -> None:
    approved_template(gw)
    ids = approved_purposes(gw)
    accepted = submit(
        gw,
        ANALYST,
        template_id="enterprises-without-tax-filing",
        version=None,
        parameters={"year": 2024, "industry": "manufacturing"},
        purpose=ids[0],
        purposes=ids[1:],
    )
    with db.reading(gw.db) as conn:
        job = model.load_job(conn, accepted["id"])
        assert job.audit_index is not None
        named = decode(gw.audit.log.entry(conn, job.audit_index))  # the row names its entry
    assert (job.status, job.department, job.purpose_ids) == ("accepted", "tax", tuple(ids))
    [entry] = events(gw, "job.accepted")
    assert entry["details"]["purpose_ids"] == ids
    assert (named.type, named.details["job"]) == ("job.accepted", job.id)


def test_a_refused_job_writes_no_row_and_one_denial(gw: Gateway) -> None:
    approved_template(gw)
    with pytest.raises(Forbidden) as caught:
        submit(
            gw,
            ANALYST,
            template_id="enterprises-without-tax-filing",
            version=None,
            parameters={"year": 2024, "industry": "manufacturing"},
            purpose="compliance review",  # a description is not the owner's approval
        )
    assert caught.value.extensions["reason_code"] == "missing_approval"
    with db.reading(gw.db) as conn:
        assert not model.any_waiting(conn)
    assert [e["details"]["reason_code"] for e in events(gw, "job.denied")] == ["missing_approval"]


def test_bad_parameters_write_no_job(gw: Gateway) -> None:
    approved_template(gw)
    ids = approved_purposes(gw)
    with pytest.raises(InvalidInput):
        submit(
            gw,
            ANALYST,
            template_id="enterprises-without-tax-filing",
            version=None,
            parameters={"year": "2024; DROP TABLE jobs", "industry": "manufacturing"},
            purpose=ids[0],
            purposes=ids[1:],
        )
    with db.reading(gw.db) as conn:
        assert not model.any_waiting(conn)
    assert len(events(gw, "job.rejected")) == 1


def test_the_same_idempotency_key_returns_the_same_job(gw: Gateway) -> None:
    approved_template(gw)
    ids = approved_purposes(gw)
    ask = {
        "template_id": "enterprises-without-tax-filing",
        "version": None,
        "parameters": {"year": 2024, "industry": "manufacturing"},
        "purpose": ids[0],
        "purposes": ids[1:],
        "idempotency_key": "k-1",
    }
    first = submit(gw, ANALYST, **ask)  # type: ignore[arg-type]
    again = submit(gw, ANALYST, **ask)  # type: ignore[arg-type]
    assert again == {"id": first["id"], "status": "accepted", "replayed": True}
    with pytest.raises(Conflict):
        submit(gw, ANALYST, **{**ask, "parameters": {"year": 2023, "industry": "retail"}})  # type: ignore[arg-type]


def test_another_departments_job_reads_as_missing(gw: Gateway) -> None:
    approved_template(gw)
    ids = approved_purposes(gw)
    accepted = submit(
        gw,
        ANALYST,
        template_id="enterprises-without-tax-filing",
        version=None,
        parameters={"year": 2024, "industry": "manufacturing"},
        purpose=ids[0],
        purposes=ids[1:],
    )
    assert reads.show(gw, ANALYST, accepted["id"])["id"] == accepted["id"]
    with pytest.raises(NotFound):
        reads.show(gw, OUTSIDER, accepted["id"])

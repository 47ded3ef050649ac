"""Four eyes on templates, as a use case without HTTP: a real Gateway (SQLite store, Casbin
policy, audit trail) from `build_gateway`; the author never approves its own template, whatever
other roles it holds or however it spells its name."""

from __future__ import annotations

import pytest

from gateway.auth.principal import Principal, same_person
from gateway.catalogue import templates
from gateway.catalogue.documents import TemplateSpec, parse_document
from gateway.context import Gateway
from gateway.demo import documents
from gateway.errors import GatewayError
from tests.unit.gateway.people import person

AUTHOR = person("Lead@Market", "market", "analyst", "data_owner")


def proposed(gw: Gateway) -> templates.StoredTemplate:
    spec = parse_document(documents.NO_FILING_TEMPLATE, TemplateSpec)
    stored = templates.propose(gw, AUTHOR, spec)
    assert stored.status is templates.Status.PROPOSED
    return stored


def decide(
    gw: Gateway, who: Principal, stored: templates.StoredTemplate
) -> templates.StoredTemplate:
    return templates.decide_approval(
        gw,
        who,
        stored.spec.id,
        stored.spec.version,
        approve=True,
        content_hash=stored.content_hash,
        comment="",
    )


@pytest.mark.parametrize("spelling", ["Lead@Market", "lead@market", "LEAD@MARKET"])
def test_the_author_never_approves_its_own_template(gw: Gateway, spelling: str) -> None:
    stored = proposed(gw)
    with pytest.raises(GatewayError, match="author") as refused:
        decide(gw, person(spelling, "market", "data_owner"), stored)
    assert refused.value.status == 403
    after = templates.get(gw, stored.spec.id, stored.spec.version)
    assert after.approvals == () and after.status is templates.Status.PROPOSED


def test_other_owners_approve_and_the_template_becomes_approved(gw: Gateway) -> None:
    stored = proposed(gw)
    once = decide(gw, person("owner@market", "market", "data_owner"), stored)
    assert once.status is templates.Status.PROPOSED  # tax has not decided yet
    twice = decide(gw, person("owner@tax", "tax", "data_owner"), stored)
    assert twice.status is templates.Status.APPROVED
    assert {a["approver"] for a in twice.approvals} == {"owner@market", "owner@tax"}


@pytest.mark.parametrize(
    ("a", "b"),
    [("lead@market", "Lead@Market"), ("lead@market", "ＬＥＡＤ@market"), ("straße", "STRASSE")],
)
def test_case_and_unicode_variants_are_one_person(a: str, b: str) -> None:
    assert same_person(a, b)


def test_different_subjects_are_different_people() -> None:
    assert not same_person("lead@market", "lead@tax")

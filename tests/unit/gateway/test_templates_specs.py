"""Template and dataset documents for the new kinds and catalogue fields."""

from __future__ import annotations

import pytest

from gateway.catalogue.documents import DatasetSpec, TemplateSpec, parse_document
from gateway.demo import documents
from gateway.errors import InvalidInput


def test_a_verify_section_is_required_for_and_only_for_verify() -> None:
    verify = parse_document(documents.VERIFY_TEMPLATE, TemplateSpec)
    assert verify.verify is not None and verify.verify.key.name == "person_id"
    with pytest.raises(InvalidInput):
        parse_document(documents.VERIFY_TEMPLATE.replace("kind: verify", "kind: aggregate"),
                       TemplateSpec)  # fmt: skip
    without = (
        documents.VERIFY_TEMPLATE.split("verify:\n")[0]
        + documents.VERIFY_TEMPLATE.split("answer: match\n")[1]
    )
    with pytest.raises(InvalidInput):
        parse_document(without, TemplateSpec)


def test_the_key_cannot_double_as_a_parameter() -> None:
    doc = documents.VERIFY_TEMPLATE.replace(
        "  district: {type: string", "  person_id: {type: string}\n  district: {type: string"
    )
    with pytest.raises(InvalidInput):
        parse_document(doc, TemplateSpec)


def test_content_hash_of_a_template_without_new_sections_is_unchanged() -> None:
    """Adding optional sections to the model must not change existing approvals' hashes."""
    spec = parse_document(documents.NO_FILING_TEMPLATE, TemplateSpec)
    # the hash the model gave this document before the verify section existed
    assert spec.content_hash() == (
        "sha256:151c070c28e1bb1c253265070d56c4e63a86dfd23b9fb8997b2dd823ad5bacd4"
    )
    changed = parse_document(documents.NO_FILING_TEMPLATE.replace("2018", "2019"), TemplateSpec)
    assert changed.content_hash() != spec.content_hash()


def test_columns_are_personal_by_default_and_limits_have_safe_defaults() -> None:
    residents = parse_document(documents.RESIDENTS, DatasetSpec)
    assert all(c.personal for c in residents.columns)
    assert residents.verify.max_keys_per_request == 20
    registry = parse_document(documents.ENTERPRISE_REGISTRY, DatasetSpec)
    assert registry.verify.max_keys_per_request == 100
    assert registry.open_class.value == "closed"
    zero = documents.RESIDENTS.replace("max_keys_per_request: 20", "max_keys_per_request: 0")
    with pytest.raises(InvalidInput):
        parse_document(zero, DatasetSpec)

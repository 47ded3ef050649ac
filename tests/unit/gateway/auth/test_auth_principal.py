from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest

from gateway.auth import (
    InvalidIdentity,
    Principal,
    canonical_department,
    canonical_roles,
    canonical_subject,
)

EXPIRES = datetime(2030, 1, 1, tzinfo=UTC)


def principal(**overrides: object) -> Principal:
    values: dict[str, object] = {
        "subject": "alice",
        "department": "market",
        "roles": ("analyst",),
        "token_id": None,
        "expires_at": EXPIRES,
    }
    values.update(overrides)
    return Principal(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        ("market", "market"),
        ("MARKET", "market"),
        ("ＭＡＲＫＥＴ", "market"),  # full-width letters, NFKC
        ("Tax_2024", "tax_2024"),
        ("\u212aey", "key"),  # KELVIN SIGN is K after NFKC
        ("ﬁnance", "finance"),  # the "fi" ligature
    ],
)
def test_department_is_nfkc_normalised_and_casefolded(raw: str, canonical: str) -> None:
    assert canonical_department(raw) == canonical


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "1market",
        "_market",
        "market-x",
        "market.x",
        "mar ket",
        " market",
        "market\n",
        "market\u200b",  # zero-width space
        "市场监管",
        "m" * 65,
        "market;drop",
        None,
        5,
        ["market"],
    ],
)
def test_department_refused_when_not_a_plain_name(raw: object) -> None:
    with pytest.raises(InvalidIdentity, match="department must start with a letter"):
        canonical_department(raw)


def test_department_of_64_characters_accepted() -> None:
    assert canonical_department("m" * 64) == "m" * 64


def test_subject_is_nfkc_normalised_and_casefolded() -> None:
    assert canonical_subject("Alice.Smith@gov.example") == "alice.smith@gov.example"
    assert canonical_subject("ａｌｉｃｅ") == "alice"
    assert canonical_subject("ＡＬＩＣＥ") == canonical_subject("alice") == "alice"
    assert canonical_subject("\u212aim") == "kim"  # KELVIN SIGN
    assert canonical_subject("f47ac10b-58cc-4372-a567-0e02b2c3d479") == (
        "f47ac10b-58cc-4372-a567-0e02b2c3d479"
    )


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "a b",
        "a/b",
        "<script>",
        "x" * 129,
        "ali\u0301ce",  # combining acute accent
        "\u0430lice",  # Cyrillic a
        "alice\u200b",  # zero-width space
        "alice\x00",
        "strasse\u00df" * 40,  # folds to more than 128 characters
        7,
    ],
)
def test_subject_refused_when_outside_allowed_characters(raw: object) -> None:
    with pytest.raises(InvalidIdentity, match="subject"):
        canonical_subject(raw)


def test_roles_are_canonical_deduplicated_and_sorted() -> None:
    assert canonical_roles(["Owner", "ANALYST", "ａｎａｌｙｓｔ"]) == ("analyst", "owner")


def test_roles_refused_as_one_string_or_with_a_bad_member() -> None:
    with pytest.raises(InvalidIdentity):
        canonical_roles("analyst")
    with pytest.raises(InvalidIdentity, match="role must start"):
        canonical_roles(["analyst", "data-owner"])


def test_principal_canonicalises_on_construction() -> None:
    p = principal(department="ＴＡＸ", roles=("Auditor", "auditor"))
    assert (p.subject, p.department, p.roles) == ("alice", "tax", ("auditor",))
    assert p.has_role("AUDITOR")
    assert not p.has_role("owner")
    assert not p.has_role("not a role")


def test_principal_refuses_bad_department_and_naive_expiry() -> None:
    with pytest.raises(InvalidIdentity):
        principal(department="market/../tax")
    with pytest.raises(InvalidIdentity, match="timezone-aware"):
        principal(expires_at=datetime(2030, 1, 1))


def test_principal_is_frozen() -> None:
    p = principal()
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.department = "tax"  # type: ignore[misc]

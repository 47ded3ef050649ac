"""The one admission decision (`gateway.jobs.admission`), with real Casbin: its laws, and the
agreement of every caller — a job's question (submission and the worker ask `decide` with the
purposes the job names), and the impact of a policy proposal (`policy.impact.template_verdict`,
which brings a purpose in each state) — over every share class × classification × kind ×
purpose state × policy condition."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.catalogue.purposes import PurposeFacts
from gateway.jobs import admission
from gateway.jobs.admission import Admission, DatasetFacts, Question, Refusal
from gateway.policy.impact import DatasetAttrs, TemplateFacts, template_verdict
from policies import PolicyEngine, Rule

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
SHARES = ("unconditional", "conditional", "none")
CLASSES = ("general", "important", "core")
KINDS = ("aggregate", "dp", "verify", "list")
CONDITIONS = ("*", "stated", "approved", None)  # None: no rule grants the query at all
# What a job can name for a dataset: nothing, a description only, or a purpose in a given state.
PURPOSES = (
    "none",
    "described",
    "requested",
    "approved",
    "rejected",
    "expired",
    "approved_other_department",
    "approved_other_dataset",
)


def engine(condition: str | None, kind: str) -> PolicyEngine:
    rules = [Rule("analyst", "*", "job", "submit")]
    if condition is not None:
        rules.append(Rule("analyst", "*", "data/*", f"query:{kind}", condition))
    return PolicyEngine(rules, version=7)


def named(purpose: str, dataset: str) -> tuple[tuple[PurposeFacts, ...], bool]:
    later, earlier = NOW + timedelta(days=30), NOW - timedelta(days=1)
    table = {
        "requested": PurposeFacts("p1", dataset, "stats", "requested", None),
        "approved": PurposeFacts("p1", dataset, "stats", "approved", later),
        "rejected": PurposeFacts("p1", dataset, "stats", "rejected", None),
        "expired": PurposeFacts("p1", dataset, "stats", "approved", earlier),
        "approved_other_department": PurposeFacts("p1", dataset, "health", "approved", later),
        "approved_other_dataset": PurposeFacts("p1", "tax.other", "stats", "approved", later),
    }
    if purpose in table:
        return (table[purpose],), False
    return (), purpose == "described"


def question(share: str, cls: str, kind: str, purpose: str, status: str = "approved") -> Question:
    purposes, described = named(purpose, "tax.filings")
    return Question(
        roles=("analyst",),
        department="stats",
        template="t@1",
        status=status,
        kind=kind,
        datasets=(DatasetFacts("tax.filings", share, cls),),
        now=NOW,
        purposes=purposes,
        described=described,
    )


cases = st.tuples(
    st.sampled_from(SHARES),
    st.sampled_from(CLASSES),
    st.sampled_from(KINDS),
    st.sampled_from(PURPOSES),
    st.sampled_from(CONDITIONS),
)


@settings(max_examples=300, deadline=None)
@given(cases)
def test_laws_of_admission(case: tuple[str, str, str, str, str | None]) -> None:
    share, cls, kind, purpose, condition = case
    verdict = admission.decide(engine(condition, kind), question(share, cls, kind, purpose))
    if share == "none" and kind not in {"verify", "dp"}:
        assert isinstance(verdict, Refusal) and verdict.reason_code == "share_class"
    if share == "conditional" and purpose != "approved":
        assert isinstance(verdict, Refusal)  # only the owner's approval in force opens it
    if purpose in {"approved_other_department", "approved_other_dataset"}:
        assert isinstance(verdict, Refusal)  # a purpose that is not this job's is never relied on
    if condition is None:
        assert isinstance(verdict, Refusal)
    if isinstance(verdict, Admission):
        if share == "conditional":
            assert verdict.purposes == {"tax.filings": "p1"}
        assert verdict.policy_version == 7
    else:
        assert verdict.reason_code != "granted" and verdict.message


@settings(max_examples=300, deadline=None)
@given(cases)
def test_the_impact_and_a_jobs_question_agree(case: tuple[str, str, str, str, str | None]) -> None:
    """What impact brings for a purpose state is what a job in that state gets."""
    share, cls, kind, purpose, condition = case
    if purpose not in {"none", "described", "approved"}:
        return
    policy = engine(condition, kind)
    job = admission.decide(policy, question(share, cls, kind, purpose))
    state = {"none": "none", "described": "stated", "approved": "approved"}[purpose]
    impact = template_verdict(
        policy,
        ["analyst"],
        "stats",
        TemplateFacts("t", 1, kind, "approved", ("tax.filings",)),
        catalogue={"tax.filings": DatasetAttrs("tax.filings", share, cls)},
        purpose=state,
        now=NOW,
    )
    assert type(job) is type(impact)
    if isinstance(job, Refusal) and isinstance(impact, Refusal):
        assert (job.reason_code, job.dataset, job.rule) == (
            impact.reason_code,
            impact.dataset,
            impact.rule,
        )


@pytest.mark.parametrize(
    ("status", "code"), [("proposed", "missing_approval"), ("retired", "retired")]
)
def test_an_unapproved_version_is_refused_before_any_data_step(status: str, code: str) -> None:
    verdict = admission.decide(
        engine("*", "aggregate"), question("unconditional", "general", "aggregate", "none", status)
    )
    assert isinstance(verdict, Refusal) and verdict.reason_code == code
    assert [s.object for s in verdict.steps] == ["job"]


def test_a_conditional_dataset_without_a_purpose_is_refused_whatever_the_policy() -> None:
    for purpose, code in [
        ("none", "missing_purpose"),
        ("described", "missing_approval"),
        ("requested", "missing_approval"),
        ("expired", "expired_purpose"),
    ]:
        verdict = admission.decide(
            engine("*", "aggregate"), question("conditional", "general", "aggregate", purpose)
        )
        assert isinstance(verdict, Refusal), purpose
        assert (verdict.reason_code, verdict.dataset) == (code, "tax.filings"), purpose


def test_unknown_purpose_ids_are_refused() -> None:
    q = question("unconditional", "general", "aggregate", "none")
    verdict = admission.decide(engine("*", "aggregate"), replace(q, unknown_purposes=("x",)))
    assert isinstance(verdict, Refusal) and verdict.reason_code == "missing_approval"


def test_the_purpose_field_is_an_id_only_when_it_is_one() -> None:
    pid = "3f2b8c1e-5a6d-4e7f-8a9b-0c1d2e3f4a5b"
    assert admission.named_purposes(pid, ["b", "b"]) == ((pid, "b"), "")
    assert admission.named_purposes("compliance review", [pid]) == ((pid,), "compliance review")
    assert admission.named_purposes("  ", []) == ((), "")
    assert not admission.is_purpose_id(pid.upper())

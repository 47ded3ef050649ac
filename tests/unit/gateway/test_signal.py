"""`Signal`: a job's release wakes the waits on that job, not every wait on the gateway;
`Handoffs`: what the worker hands such a wait."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from gateway import context
from gateway.context import Handoffs, Signal
from gateway.jobs.model import Job, StoredResult


def test_a_release_wakes_the_waits_on_its_job_only() -> None:
    signal = Signal()
    woken: list[str] = []
    forget_a = signal.listen(lambda: woken.append("a"), topic="job-a")
    signal.listen(lambda: woken.append("b"), topic="job-b")
    signal.listen(lambda: woken.append("any"))

    signal.notify("job-a")
    assert sorted(woken) == ["a", "any"]

    woken.clear()
    signal.notify()  # no topic (the pool stopping): everyone
    assert sorted(woken) == ["a", "any", "b"]

    woken.clear()
    forget_a()
    forget_a()  # twice is harmless
    signal.notify("job-a")
    assert woken == ["any"]
    assert not signal.listening("job-a") and signal.listening("job-b")


def test_every_notify_moves_the_generation_whatever_its_topic() -> None:
    signal = Signal()
    seen = signal.generation()
    signal.notify("job-x")  # nobody listens to it: a waiter that read `seen` still looks again
    assert signal.generation() == seen + 1
    signal.notify()
    assert signal.generation() == seen + 2


def ended(job_id: str) -> Job:
    return Job(
        id=job_id,
        template_id="t",
        version=1,
        content_hash="sha256:00",
        parameters={},
        purpose="p",
        purpose_ids=(),
        subject="s",
        department="d",
        roles=("analyst",),
        status="released",
        created_at=datetime.now(UTC),
    )


def test_a_handoff_is_taken_once_and_only_while_fresh(monkeypatch: pytest.MonkeyPatch) -> None:
    handoffs = Handoffs(most=2, ttl_s=30.0)
    stored = StoredResult({"rows": [[1]]}, "sha256:11", 7)
    job = ended("a")
    handoffs.put(job, stored)
    assert handoffs.take("a") == (job, stored)
    assert handoffs.take("a") is None  # once
    for job_id in ("b", "c", "d"):  # the newest two are kept
        handoffs.put(ended(job_id), None)
    assert handoffs.take("b") is None
    taken = handoffs.take("c")
    assert taken is not None and taken[0].id == "c" and taken[1] is None
    now = context.time.monotonic()
    monkeypatch.setattr(context.time, "monotonic", lambda: now + 31.0)
    assert handoffs.take("d") is None  # too old: the wait reads the store instead

"""Re-draw attacks on `dp` releases: retrying a request, or crashing between the noise and the
release, must never yield a second noisy answer to the same question for the same charge."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from gateway.catalogue.documents import TemplateKindName
from gateway.jobs.releases.base import Outcome, Run
from gateway.jobs.releases.dp import release_dp
from gateway.jobs.releases.registry import RELEASES
from gateway.store import schema
from tests.integration.conftest import Caller, World
from tests.integration.test_dp_jobs import SUBMIT, dp_template  # noqa: F401  (fixture)


def ledger_rows(world: World) -> list[Any]:
    engine = sa.create_engine(world.settings.resolved_database_url)
    with engine.connect() as conn:
        rows = list(conn.execute(sa.select(schema.budget_reservations)).all())
    engine.dispose()
    return rows


@pytest.mark.usefixtures("dp_template")
@pytest.mark.slow
def test_retries_with_one_key_in_a_burst_get_one_job_and_one_draw(
    world: World, analyst: Caller
) -> None:
    key = {"Idempotency-Key": "burst-7"}
    ids = {analyst.post("/v1/jobs", json=SUBMIT, headers=key).json()["id"] for _ in range(5)}
    assert len(ids) == 1
    (job_id,) = ids
    answers = [
        analyst.get(f"/v1/jobs/{job_id}/result", params={"wait": 60}).json()["rows"]
        for _ in range(3)
    ]
    assert answers[0] == answers[1] == answers[2]
    assert [r.status for r in ledger_rows(world)] == ["committed"]


@pytest.mark.usefixtures("dp_template")
@pytest.mark.slow
def test_a_crash_after_the_noise_releases_nothing_and_a_retry_does_not_redraw(
    world: World, analyst: Caller, monkeypatch: pytest.MonkeyPatch
) -> None:
    draws: list[str] = []

    def crash_after_noise(run: Run) -> Outcome:
        release_dp(run)  # the noise is drawn ...
        draws.append(run.job.id)
        raise RuntimeError("worker lost before the release committed")  # ... and lost

    monkeypatch.setitem(RELEASES, TemplateKindName.DP, crash_after_noise)  # type: ignore[index]
    key = {"Idempotency-Key": "crash-1"}
    first = analyst.post("/v1/jobs", json=SUBMIT, headers=key).json()
    body = analyst.get(f"/v1/jobs/{first['id']}/result", params={"wait": 60}).json()
    assert body["status"] == "failed"
    assert "rows" not in body
    again = analyst.post("/v1/jobs", json=SUBMIT, headers=key).json()
    assert again["id"] == first["id"]
    assert again["status"] == "failed"
    assert draws == [first["id"]]  # one draw, never shown, never redrawn
    assert [r.status for r in ledger_rows(world)] == ["returned"]

"""schemathesis against `/openapi.json` (issue 14): whatever a client sends within or outside
the documented shapes, no operation answers 5xx, and every status it answers is one the
document declares for that operation. Examples are bounded (a few per operation), the caller
holds every role so the handlers are reached, and the seed is fixed."""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings

from tests.integration.conftest import World

ROLES = ("analyst", "auditor", "data_owner", "security_officer", "admin")


@pytest.mark.slow
def test_no_operation_answers_5xx(world: World) -> None:
    # Generated from the served document; sent through the test's own client, which holds the
    # app's lifespan (schemathesis' ASGI transport would start and stop it around each call).
    document = world.client.get("/openapi.json").json()
    api = schemathesis.openapi.from_dict(document)
    token = world.token("fuzz@stats", "stats", *ROLES)
    failures: list[str] = []
    undeclared: set[str] = set()
    operations = 0

    for result in api.get_all_operations():
        operation = result.ok()  # type: ignore[union-attr]  # an invalid schema raises here
        operations += 1

        @given(case=operation.as_strategy())
        @settings(
            max_examples=4,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def call(case: Any) -> None:
            sent = case.as_transport_kwargs(
                base_url="http://testserver", headers={"Authorization": f"Bearer {token}"}
            )
            if not sent.get("cookies"):
                sent.pop("cookies", None)
            response = world.client.request(
                sent.pop("method"),
                sent.pop("url"),
                **{k: v for k, v in sent.items() if v is not None},
            )
            if response.status_code >= 500:
                failures.append(f"{case.formatted_path}: {response.status_code} {response.text}")
            declared = document["paths"][case.operation.path][case.operation.method.lower()][
                "responses"
            ]
            if str(response.status_code) not in declared and "default" not in declared:
                undeclared.add(
                    f"{case.operation.method.upper()} {case.operation.path}: {response.status_code}"
                )

        call()
    assert operations >= 40
    assert failures == []
    assert sorted(undeclared) == []


def test_the_fuzzed_app_is_the_real_one(world: World) -> None:
    assert isinstance(world.client, TestClient)
    assert "/v1/jobs" in world.client.get("/openapi.json").json()["paths"]

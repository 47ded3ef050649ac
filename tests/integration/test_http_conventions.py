"""HTTP conventions (issue 17) through the real app: OpenAPI declaring every status a route
answers (problem+json, bearer scheme), `Location` on 202, `X-Request-Id`, JSON logs,
Prometheus metrics, self-hosted /docs, the caller's job list, dataset updates and the public
audit keys."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from gateway.demo import documents
from gateway.logs import JsonFormatter
from tests.integration.conftest import Caller, World
from tests.integration.test_job_path import SUBMIT, run_job

PROBLEM = "application/problem+json"


def openapi(world: World) -> dict[str, Any]:
    response = world.client.get("/openapi.json")
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


def test_openapi_declares_errors_as_problems_and_the_bearer_scheme(world: World) -> None:
    doc = openapi(world)
    assert doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert "Problem" in doc["components"]["schemas"]
    assert "HTTPValidationError" not in doc["components"]["schemas"]
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if path.startswith("/v1/"):
                assert op.get("security") == [{"bearer": []}], (method, path)
                assert {"401", "403", "422", "500", "503"} <= set(op["responses"]), (method, path)
            for code, response in op["responses"].items():
                if int(code) >= 400:
                    assert list(response["content"]) == [PROBLEM], (method, path, code)
    submit = doc["paths"]["/v1/jobs"]["post"]["responses"]
    assert {"202", "404", "409", "410", "429"} <= set(submit)
    assert submit["202"]["content"]["application/json"]["schema"]["$ref"].endswith("JobAccepted")


def test_every_status_answered_is_declared_for_its_route(
    world: World, approved_template: dict[str, Any], analyst: Caller, owners: dict[str, Caller]
) -> None:
    """Requests that end in many different ways; each (route, status) the app's own metrics
    counted must be in the OpenAPI document."""
    job = run_job(analyst)["job"]["id"]
    anonymous = Caller(world.client, "not-a-token")
    anonymous.get("/v1/datasets")  # 401
    analyst.post_yaml("/v1/datasets", documents.ENTERPRISE_REGISTRY)  # 403
    owners["market"].post_yaml("/v1/datasets", documents.ENTERPRISE_REGISTRY)  # 409
    analyst.get("/v1/jobs/00000000-0000-0000-0000-000000000000")  # 404
    analyst.submit({**SUBMIT, "parameters": {"year": 1900, "industry": "x"}})  # 422
    analyst.submit({"template": "nope", "parameters": {}})  # 403
    analyst.post("/v1/jobs/estimate", json=SUBMIT)  # 422: not a dp template
    analyst.get(f"/v1/jobs/{job}/result")  # 200
    analyst.get("/v1/jobs", params={"status": "nonsense"})  # 422
    analyst.get("/v1/templates/enterprises-without-tax-filing/versions/9")  # 404
    owners["market"].post(  # 409: already approved
        "/v1/templates/enterprises-without-tax-filing/versions/1/approvals",
        json={"content_hash": approved_template["content_hash"]},
    )
    analyst.post("/v1/templates/enterprises-without-tax-filing/versions/1/retirement", json={})
    analyst.get("/v1/templates/enterprises-without-tax-filing/versions/1")  # 410
    analyst.submit(SUBMIT)  # 410
    world.client.get("/nowhere")  # 404, unmatched
    doc = openapi(world)
    answered = {
        (s.labels["method"].lower(), s.labels["route"], s.labels["status"])
        for metric in world.app.state.metrics.registry.collect()
        if metric.name == "insitu_http_requests"
        for s in metric.samples
        if s.name.endswith("_total")
    }
    assert len({status for _, _, status in answered}) >= 7
    undeclared = [
        (method, route, status)
        for method, route, status in answered
        if route in doc["paths"] and status not in doc["paths"][route][method]["responses"]
    ]
    assert undeclared == []


def test_a_submission_answers_202_with_location(analyst: Caller, approved_template: Any) -> None:
    response = analyst.submit(SUBMIT)
    assert response.status_code == 202
    assert response.headers["Location"] == f"/v1/jobs/{response.json()['id']}"
    assert analyst.get(response.headers["Location"]).status_code == 200


def test_request_ids_are_echoed_generated_and_logged(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="insitu.access"):
        given = world.client.get("/healthz", headers={"X-Request-Id": "trace-42.a"})
        made = world.client.get("/healthz")
        hostile = world.client.get("/healthz", headers={"X-Request-Id": "x\ny" * 3})
    assert given.headers["X-Request-Id"] == "trace-42.a"
    assert len(made.headers["X-Request-Id"]) == 32
    assert "\n" not in hostile.headers["X-Request-Id"]
    assert hostile.headers["X-Request-Id"] != made.headers["X-Request-Id"]
    lines = [json.loads(JsonFormatter().format(r)) for r in caplog.records]
    access = [line for line in lines if line["logger"] == "insitu.access"]
    assert {"trace-42.a", made.headers["X-Request-Id"]} <= {line["request_id"] for line in access}
    first = next(line for line in access if line["request_id"] == "trace-42.a")
    assert first["route"] == "/healthz" and first["status"] == 200 and first["method"] == "GET"


def test_metrics_count_jobs_by_kind_and_status_with_durations_and_queue_depth(
    world: World, approved_template: Any, analyst: Caller
) -> None:
    run_job(analyst)
    text = world.client.get("/metrics").text
    assert 'insitu_jobs_finished_total{kind="aggregate",status="released"} 1.0' in text
    assert 'insitu_job_duration_seconds_count{kind="aggregate"} 1.0' in text
    assert 'insitu_jobs_queued{state="accepted"} 0.0' in text
    assert (
        'insitu_http_request_duration_seconds_bucket{le="+Inf",method="POST",route="/v1/jobs"}'
        in text
    )


def test_docs_are_served_from_the_gateway_itself(world: World) -> None:
    page = world.client.get("/docs")
    assert page.status_code == 200
    assert "/docs/static/swagger-ui-bundle.js" in page.text
    assert "https://" not in page.text and "cdn" not in page.text.lower()
    bundle = world.client.get("/docs/static/swagger-ui-bundle.js")
    assert bundle.status_code == 200 and "SwaggerUIBundle" in bundle.text
    assert world.client.get("/redoc").status_code == 404


def test_job_list_shows_the_callers_jobs_with_filters_and_pages(
    world: World, approved_template: Any, analyst: Caller
) -> None:
    first = run_job(analyst)["job"]["id"]
    second = run_job(analyst)["job"]["id"]
    page = analyst.get("/v1/jobs", params={"limit": 1}).json()
    assert [j["id"] for j in page["items"]] == [second] and page["next"] == 1
    rest = analyst.get("/v1/jobs", params={"limit": 1, "offset": 1}).json()
    assert [j["id"] for j in rest["items"]] == [first] and rest["next"] is None
    assert page["items"][0]["kind"] == "aggregate"
    released = analyst.get("/v1/jobs", params={"status": "released"}).json()["items"]
    assert {j["id"] for j in released} == {first, second}
    assert analyst.get("/v1/jobs", params={"status": "failed"}).json()["items"] == []
    colleague = world.as_("colleague@stats", "stats", "analyst")
    assert colleague.get("/v1/jobs").json()["items"] == []
    assert len(colleague.get("/v1/jobs", params={"scope": "department"}).json()["items"]) == 2
    outsider = world.as_("analyst@health", "health", "analyst")
    assert outsider.get("/v1/jobs", params={"scope": "department"}).json()["items"] == []


def test_a_dataset_document_is_updated_by_its_provider_only(
    world: World, registered: None, owners: dict[str, Caller]
) -> None:
    changed = documents.ENTERPRISE_REGISTRY.replace(
        "title: Enterprise registry", "title: Enterprise registry (2026)"
    )
    yaml = {"Content-Type": "application/yaml"}
    path = "/v1/datasets/market.enterprise_registry"
    denied = owners["tax"].request("PUT", path, content=changed.encode(), headers=yaml)
    assert denied.status_code == 403
    wrong = owners["market"].request(
        "PUT", "/v1/datasets/market.other", content=changed.encode(), headers=yaml
    )
    assert wrong.status_code == 422
    ok = owners["market"].request("PUT", path, content=changed.encode(), headers=yaml)
    assert ok.status_code == 200, ok.text
    assert owners["tax"].get(path).json()["title"] == "Enterprise registry (2026)"


def test_any_signed_in_caller_reads_the_audit_public_keys(world: World, analyst: Caller) -> None:
    keys = analyst.get("/v1/audit/keys")
    assert keys.status_code == 200 and keys.json()["vkeys"]
    assert analyst.get("/v1/audit/entries").status_code == 403  # the log itself stays closed

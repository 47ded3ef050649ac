"""`Client(url, token)`: the gateway's jobs, catalogue and budgets as pandas DataFrames."""

from __future__ import annotations

import ipaddress
import os
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

import httpx
import pandas as pd

from insitu.client.errors import InsituError, JobNotReleased
from insitu.client.frames import Released, released, withheld_frame
from insitu.client.transport import Transport

WAIT_STEP_S = 60.0  # one long-poll of GET …/result?wait=


@dataclass(frozen=True)
class Estimate:
    """What a dp job would cost and how accurate it would be (nothing is run or reserved)."""

    template: str
    version: int
    dataset: str
    period: str
    cost_rho: Decimal
    cost_epsilon: float
    remaining_rho: Decimal
    remaining_epsilon: float
    fits: bool  # the department's remaining budget covers the cost
    admitted: bool  # the job would be admitted (template approved, policy, purposes)
    refusal: dict[str, str] | None
    accuracy: pd.DataFrame = field(repr=False)  # measure, scale, ci95_half_width, …
    raw: dict[str, Any] = field(repr=False)


def _secure(url: str) -> bool:
    parts = urlsplit(url)
    if parts.scheme == "https":
        return True
    host = parts.hostname or ""
    if host == "localhost":
        return True
    try:
        return parts.scheme == "http" and ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Client:
    """A gateway at `url` (default ``INSITU_URL``) with an access token (default
    ``INSITU_TOKEN``). A token is sent only over https, or plain http to loopback."""

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        *,
        retries: int = 4,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        http: httpx.Client | None = None,
    ) -> None:
        url = (url or os.environ.get("INSITU_URL") or "http://127.0.0.1:8000").rstrip("/")
        token = token if token is not None else os.environ.get("INSITU_TOKEN")
        if token and not _secure(url):
            raise InsituError(f"refusing to send a token to {url}: use https (http on loopback)")
        self.url = url
        self._t = Transport(
            url, token, retries=retries, backoff=backoff, max_backoff=max_backoff, http=http
        )

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._t.close()

    # -- catalogue ---------------------------------------------------------------------------

    def catalogue(self) -> pd.DataFrame:
        """Datasets: id, title, provider, share class, classification, update cycle."""
        items = self._t.json("GET", "/v1/datasets")["items"]
        columns = ["id", "title", "provider", "share_class", "classification", "update_cycle"]
        return pd.DataFrame([{c: d.get(c) for c in columns} for d in items], columns=columns)

    def dataset(self, dataset_id: str) -> dict[str, Any]:
        return dict(self._t.json("GET", f"/v1/datasets/{dataset_id}"))

    def templates(self) -> pd.DataFrame:
        """Template versions: id, version, kind, status, title, datasets, parameters."""
        items = self._t.json("GET", "/v1/templates")["items"]
        columns = ["id", "version", "kind", "status", "title", "datasets", "parameters"]
        return pd.DataFrame([{c: t.get(c) for c in columns} for t in items], columns=columns)

    def template(self, template_id: str, version: int | None = None) -> dict[str, Any]:
        """One version; without `version`, the newest approved (else the newest)."""
        if version is not None:
            return dict(self._t.json("GET", f"/v1/templates/{template_id}/versions/{version}"))
        items = [t for t in self._t.json("GET", "/v1/templates")["items"] if t["id"] == template_id]
        if not items:
            return dict(self._t.json("GET", f"/v1/templates/{template_id}/versions/1"))
        approved = [t for t in items if t["status"] == "approved"] or items
        return dict(max(approved, key=lambda t: t["version"]))

    def budgets(self) -> pd.DataFrame:
        """Privacy budgets you may see: dataset, department, period, ρ cap/spent/remaining."""
        rows = []
        for b in self._t.json("GET", "/v1/budgets")["budgets"]:
            rows.append(
                {
                    "dataset": b["dataset"],
                    "department": b["department"],
                    "period": b["period"],
                    "rho_cap": Decimal(b["rho"]["cap"]),
                    "rho_spent": Decimal(b["rho"]["spent"]),
                    "rho_remaining": Decimal(b["rho"]["remaining"]),
                    "epsilon_remaining": b["as_epsilon_delta"]["remaining_epsilon"],
                }
            )
        return pd.DataFrame(rows)

    # -- jobs --------------------------------------------------------------------------------

    def _body(
        self,
        template: str,
        params: dict[str, Any] | None,
        purpose: str,
        purposes: Sequence[str],
        version: int | None,
    ) -> dict[str, Any]:
        named = list(purposes)
        if not purpose and named:
            purpose, named = named[0], named[1:]
        return {
            "template": template,
            "version": version,
            "parameters": dict(params or {}),
            "purpose": purpose,
            "purposes": named,
        }

    def submit(
        self,
        template: str,
        params: dict[str, Any] | None = None,
        purpose: str = "",
        *,
        purposes: Sequence[str] = (),
        version: int | None = None,
        wait: bool = True,
        timeout: float = 300.0,
    ) -> Released | str:
        """Run an approved template. `purpose`/`purposes`: the ids of purposes the owners of
        conditionally shared datasets approved (or a description). With `wait` (default) the
        released result as a DataFrame; else the job id (read it later with `result`)."""
        body = self._body(template, params, purpose, purposes, version)
        job = self._t.json(
            "POST", "/v1/jobs", json=body, headers={"Idempotency-Key": str(uuid.uuid4())}
        )
        if not wait:
            return str(job["id"])
        return self.result(job["id"], timeout=timeout)

    def result(
        self, job_id: str, *, timeout: float = 300.0, keys: list[str] | None = None
    ) -> Released:
        """The job's released result, waiting up to `timeout` seconds for it to finish.
        Raises JobNotReleased when it failed or released nothing."""
        deadline = time.monotonic() + timeout
        while True:
            wait = max(0.0, min(WAIT_STEP_S, deadline - time.monotonic()))
            body = self._t.json("GET", f"/v1/jobs/{job_id}/result", params={"wait": wait})
            if body["status"] not in {"accepted", "running"}:
                break
            if time.monotonic() >= deadline:
                raise InsituError(f"job {job_id} is still {body['status']} after {timeout:g} s")
        if body["status"] != "released":
            why = body.get("job", {}).get("error") or body["status"]
            raise JobNotReleased(f"job {job_id} {body['status']}: {why}", body)
        return released(body, keys=keys)

    def job(self, job_id: str) -> dict[str, Any]:
        return dict(self._t.json("GET", f"/v1/jobs/{job_id}"))

    def jobs(
        self,
        *,
        status: str | None = None,
        template: str | None = None,
        scope: str = "mine",
        limit: int | None = 200,
    ) -> pd.DataFrame:
        """Your jobs (``scope="department"``: your department's), newest first."""
        params: dict[str, Any] = {"scope": scope, "limit": 100}
        params.update({k: v for k, v in {"status": status, "template": template}.items() if v})
        items: list[dict[str, Any]] = []
        offset: int | None = 0
        while offset is not None and (limit is None or len(items) < limit):
            page = self._t.json("GET", "/v1/jobs", params={**params, "offset": offset})
            items.extend(page["items"])
            offset = page["next"]
        columns = ["id", "template", "version", "kind", "status", "created_at", "finished_at"]
        rows = [{c: j.get(c) for c in columns} for j in items[:limit]]
        return pd.DataFrame(rows, columns=columns)

    def estimate(
        self,
        template: str,
        params: dict[str, Any] | None = None,
        purpose: str = "",
        *,
        purposes: Sequence[str] = (),
        version: int | None = None,
    ) -> Estimate:
        """A dp job's charge, your department's remaining budget and the expected 95 %
        interval half-width of each measure, before running it."""
        body = self._body(template, params, purpose, purposes, version)
        out = self._t.json("POST", "/v1/jobs/estimate", json=body)
        accuracy = pd.DataFrame(
            [{"measure": name, **values} for name, values in out["accuracy"].items()]
        )
        return Estimate(
            template=out["template"],
            version=out["version"],
            dataset=out["dataset"],
            period=out["period"],
            cost_rho=Decimal(out["cost"]["rho"]),
            cost_epsilon=float(out["cost"]["epsilon"]),
            remaining_rho=Decimal(out["remaining"]["rho"]),
            remaining_epsilon=float(out["remaining"]["epsilon"]),
            fits=bool(out["fits_department_budget"]),
            admitted=bool(out["admitted"]),
            refusal=out.get("refusal"),
            accuracy=accuracy,
            raw=out,
        )

    def verify(
        self,
        template: str,
        keys: Iterable[str],
        params: dict[str, Any] | None = None,
        purpose: str = "",
        *,
        purposes: Sequence[str] = (),
        version: int | None = None,
        timeout: float = 300.0,
    ) -> Released:
        """核验: match / no match for each key you hold, through an approved verify template.
        Keys are sent in batches no larger than the owners allow per request; a frame of
        `key`, `matched` comes back (in the order given)."""
        keys = list(keys)
        spec = self.template(template, version)
        if spec.get("kind") != "verify" or not spec.get("verify"):
            raise InsituError(f"{template} is not a verify template")
        key_name = spec["verify"]["key"]["name"]
        batch = min(
            int(self.dataset(ds)["verify"]["max_keys_per_request"]) for ds in spec["datasets"]
        )
        frames, withheld, last = [], [], None
        for start in range(0, len(keys), batch):
            chunk = keys[start : start + batch]
            parameters = {**(params or {}), key_name: chunk}
            job = self.submit(
                template,
                parameters,
                purpose,
                purposes=purposes,
                version=spec["version"],
                wait=False,
            )
            last = self.result(str(job), timeout=timeout, keys=chunk)
            frames.append(pd.DataFrame(last))
            withheld.append(last.withheld)
        out = Released(pd.concat(frames, ignore_index=True) if frames else pd.DataFrame())
        out.withheld = pd.concat(withheld, ignore_index=True) if withheld else withheld_frame([])
        out.job = last.job if last is not None else {}
        out.receipt = last.receipt if last is not None else None
        out.result_hash = None
        out.privacy = None
        out.accuracy = None
        out.raw = last.raw if last is not None else {}
        return out

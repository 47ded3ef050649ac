"""Bounds on `verify` jobs against enumeration: keys per request and per day, and sweeps.

A verify job brings its keys as a list under the key's name in `parameters`. At submission
(`prepare`, then `reserve` in the job's transaction):

- the keys are validated against the key's domain, must be distinct, and at most the
  strictest `verify.max_keys_per_request` of the template's datasets (422 otherwise);
- the department's keys of the day per dataset are reserved with a conditional UPDATE, never
  above `verify.max_keys_per_day` (403 `verify_quota`); a department blocked for a sweep
  today is refused (403 `verify_sweep`);
- every key goes into the audit log as a keyed fingerprint, never as its value; the keys
  themselves wait in `verify_requests` only until the job has answered.

Locating by spread: a key asked against one district after another (the template's other
parameters) tells where its holder lives, however few keys are used and however many matching
keys pad the requests. Each (key, parameter set) pair is recorded as keyed fingerprints in
`verify_probes` in the job's transaction (after the quota row's update, which serialises a
department's requests); a key asked against more than the strictest
`verify.max_parameter_sets_per_key` distinct parameter sets per `parameter_sets_period` is
refused (403 `verify_spread`), the department is blocked for the day like a sweep, and the
owner gets an alert (kind `spread`) and a `verify.spread_detected` audit entry.

After the run (`record_answers`), the day's checked keys and matches are added up per
dataset; once at least `sweep_min_keys` keys were checked with a match rate at or below
`sweep_max_match_rate`, the job releases nothing, the department is blocked for the day, and
the owner gets an alert (`GET /v1/verify/alerts`) and a `verify.sweep_detected` audit entry.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import sqlalchemy as sa

from audit import Actor
from gateway.auth.principal import Principal
from gateway.catalogue.documents import DatasetSpec, TemplateSpec, VerifyLimits
from gateway.catalogue.templates import verify_key_spec
from gateway.context import Gateway
from gateway.errors import InvalidInput
from gateway.store import db, schema
from sandbox import ParameterError, validate_parameters

QUOTA = "verify_quota"
SWEEP = "verify_sweep"
SPREAD = "verify_spread"
_PERIODS = {"day": 10, "month": 7, "year": 4}  # characters of the ISO date naming the period


@dataclass(frozen=True, slots=True)
class KeyRequest:
    keys: tuple[str | int, ...]
    fingerprints: tuple[str, ...]
    parameters: str = ""  # keyed fingerprint of the template's other parameters


def strictest(datasets: Sequence[DatasetSpec]) -> VerifyLimits:
    return VerifyLimits(
        max_keys_per_request=min(d.verify.max_keys_per_request for d in datasets),
        max_keys_per_day=min(d.verify.max_keys_per_day for d in datasets),
        sweep_min_keys=min(d.verify.sweep_min_keys for d in datasets),
        sweep_max_match_rate=max(d.verify.sweep_max_match_rate for d in datasets),
        max_parameter_sets_per_key=min(d.verify.max_parameter_sets_per_key for d in datasets),
        parameter_sets_period=max(
            (d.verify.parameter_sets_period for d in datasets), key=lambda p: -_PERIODS[p]
        ),
    )


def today() -> date:
    return datetime.now(UTC).date()


def split_keys(
    gw: Gateway,
    spec: TemplateSpec,
    datasets: Mapping[str, DatasetSpec],
    parameters: Mapping[str, Any],
) -> tuple[dict[str, Any], KeyRequest | None]:
    """The template's own parameters, and the validated keys of a verify template."""
    key_spec = verify_key_spec(spec)
    if key_spec is None:
        return dict(parameters), None
    own = {k: v for k, v in parameters.items() if k != key_spec.name}
    raw = parameters.get(key_spec.name)
    if not isinstance(raw, list) or not raw:
        raise InvalidInput(
            f"parameter '{key_spec.name}' must be a non-empty list of the keys to verify",
            parameter=key_spec.name,
        )
    cap = strictest(list(datasets.values())).max_keys_per_request
    if len(raw) > cap:
        raise InvalidInput(
            f"at most {cap} keys per request (the data owner's limit)", parameter=key_spec.name
        )
    keys: list[str | int] = []
    for value in raw:
        try:
            checked = validate_parameters({key_spec.name: key_spec}, {key_spec.name: value})
        except ParameterError as exc:
            raise InvalidInput(
                f"a key {exc.message} (keys are not echoed)", parameter=key_spec.name
            ) from None
        key = checked[key_spec.name]
        assert isinstance(key, str | int)
        keys.append(key)
    if len(set(keys)) != len(keys):
        raise InvalidInput("each key may appear once per request", parameter=key_spec.name)
    return own, KeyRequest(
        tuple(keys), tuple(gw.audit.fingerprint(k) for k in keys), gw.audit.fingerprint(own)
    )


def take_keys(
    gw: Gateway,
    principal: Principal,
    *,
    target: str,
    spec: TemplateSpec,
    datasets: Mapping[str, DatasetSpec],
    parameters: dict[str, Any],
) -> tuple[dict[str, Any], KeyRequest | None]:
    """`split_keys`, auditing a refusal as `job.rejected` (bad input, never the keys' values)."""
    try:
        return split_keys(gw, spec, datasets, parameters)
    except InvalidInput:
        with gw.db.begin() as conn:
            gw.audit.record(
                conn,
                type="job.rejected",
                principal=principal,
                action="submit",
                target=target,
                allowed=False,
                reason="invalid verification keys",
                details={"template": spec.id, "parameters": gw.audit.fingerprint(parameters)},
            )
        raise


class QuotaRefused(Exception):
    """Today's quota (`verify_quota`) or a sweep block (`verify_sweep`) refuses the keys; the
    caller audits it as the job's denial."""

    def __init__(self, over: tuple[str, DatasetSpec]) -> None:
        code, ds = over
        if code == SWEEP:
            why = (
                "is blocked for today: its verifications looked like a sweep (reported to the "
                "owner)"
            )
        elif code == SPREAD:
            why = (
                f"was refused: a key may be checked against at most "
                f"{ds.verify.max_parameter_sets_per_key} different parameter values per "
                f"{ds.verify.parameter_sets_period} (the owner's limit; reported to the owner)"
            )
        else:
            why = f"has used its {ds.verify.max_keys_per_day} keys of the day (the owner's limit)"
        self.reason = f"department verification of dataset {ds.id} {why}"
        self.reason_code = code
        self.dataset = ds.id
        self.spec = ds
        super().__init__(self.reason)


def check_quota(
    gw: Gateway,
    principal: Principal,
    datasets: Mapping[str, DatasetSpec],
    keys: KeyRequest | None,
) -> None:
    """Raise `QuotaRefused` before anything is written when today's quota or a sweep block says
    no. One read; today's usage rows are written only where one is missing (the day's first
    request of the department on the dataset)."""
    if keys is None:
        return
    specs = list(datasets.values())
    with db.reading(gw.db) as conn:
        found = usage_rows(conn, principal.department, specs)
    missing = [ds for ds in specs if ds.id not in found]
    if missing:
        ensure_rows(gw, principal.department, missing)
    over = _over(found, specs, len(keys.keys))
    if over is not None:
        raise QuotaRefused(over)


def reserve_keys(
    conn: sa.Connection,
    department: str,
    datasets: Mapping[str, DatasetSpec],
    keys: KeyRequest | None,
) -> None:
    """Reserve the keys in the job's transaction; `QuotaRefused` (a concurrent request took the
    last of the quota) rolls the transaction back."""
    if keys is None:
        return
    over = reserve(conn, department, list(datasets.values()), len(keys.keys))
    over = over or record_probes(conn, department, list(datasets.values()), keys)
    if over is not None:
        raise QuotaRefused(over)


def period_of(day: date, period: str) -> str:
    return day.isoformat()[: _PERIODS[period]]


def record_probes(
    conn: sa.Connection, department: str, datasets: Sequence[DatasetSpec], keys: KeyRequest
) -> tuple[str, DatasetSpec] | None:
    """Record each (key, parameter set) pair; say which dataset's spread limit a key passed.

    Runs after ``reserve`` updated the department's usage rows, so a department's requests
    are counted one after the other (row lock on PostgreSQL, the write lock on SQLite).
    """
    p = schema.verify_probes
    now = datetime.now(UTC)
    for ds in datasets:
        period = period_of(today(), ds.verify.parameter_sets_period)
        where = (p.c.department == department, p.c.dataset_id == ds.id, p.c.period == period)
        known = {
            (r.key_fp, r.parameters_fp)
            for r in conn.execute(
                sa.select(p.c.key_fp, p.c.parameters_fp).where(
                    *where, p.c.key_fp.in_(keys.fingerprints)
                )
            )
        }
        fresh = [k for k in keys.fingerprints if (k, keys.parameters) not in known]
        if fresh:
            conn.execute(
                p.insert(),
                [
                    {"department": department, "dataset_id": ds.id, "period": period,
                     "key_fp": k, "parameters_fp": keys.parameters, "created_at": now}
                    for k in fresh
                ],
            )  # fmt: skip
        spread = conn.execute(
            sa.select(sa.func.count(sa.distinct(p.c.parameters_fp)))
            .where(*where, p.c.key_fp.in_(keys.fingerprints))
            .group_by(p.c.key_fp)
            .order_by(sa.func.count(sa.distinct(p.c.parameters_fp)).desc())
            .limit(1)
        ).scalar()
        if spread is not None and spread > ds.verify.max_parameter_sets_per_key:
            return SPREAD, ds
    return None


def report_spread(gw: Gateway, principal: Principal, refused: QuotaRefused) -> None:
    """A key asked against too many parameter sets: block the department for the day on the
    dataset, alert its owner and audit ``verify.spread_detected`` (after the job's rollback)."""
    ds = refused.spec
    ensure_rows(gw, principal.department, [ds])
    u = schema.verify_usage
    with gw.db.begin() as conn:
        where = (u.c.department == principal.department, u.c.dataset_id == ds.id,
                 u.c.day == today())  # fmt: skip
        conn.execute(u.update().where(*where).values(blocked=True))
        row = conn.execute(sa.select(u.c.checked, u.c.matches).where(*where)).one()
        _alert(gw, conn, principal, ds, job_id="", checked=row.checked, matches=row.matches,
               kind="spread")  # fmt: skip


def audit_details(keys: KeyRequest | None) -> dict[str, Any]:
    return {} if keys is None else {"keys": list(keys.fingerprints)}


def precheck(
    conn: sa.Connection, department: str, datasets: Sequence[DatasetSpec], n: int
) -> tuple[str, DatasetSpec] | None:
    """Why today's quota refuses `n` more keys, and for which dataset (None: it does not)."""
    return _over(usage_rows(conn, department, datasets), datasets, n)


def usage_rows(
    conn: sa.Connection, department: str, datasets: Sequence[DatasetSpec]
) -> dict[str, tuple[int, bool]]:
    """{dataset id: (keys reserved today, blocked)} of the department's rows of today."""
    u = schema.verify_usage
    rows = conn.execute(
        sa.select(u.c.dataset_id, u.c.reserved, u.c.blocked).where(
            u.c.department == department,
            u.c.dataset_id.in_([ds.id for ds in datasets]),
            u.c.day == today(),
        )
    )
    return {str(r.dataset_id): (int(r.reserved), bool(r.blocked)) for r in rows}


def _over(
    usage: Mapping[str, tuple[int, bool]], datasets: Sequence[DatasetSpec], n: int
) -> tuple[str, DatasetSpec] | None:
    for ds in datasets:
        reserved, blocked = usage.get(ds.id, (0, False))
        if blocked:
            return SWEEP, ds
        if reserved + n > ds.verify.max_keys_per_day:
            return QUOTA, ds
    return None


def ensure_rows(gw: Gateway, department: str, datasets: Sequence[DatasetSpec]) -> None:
    """Today's usage rows exist (so reserving is one conditional UPDATE)."""
    u = schema.verify_usage
    for ds in datasets:
        with gw.db.begin() as conn:
            found = conn.execute(
                sa.select(u.c.reserved).where(
                    u.c.department == department, u.c.dataset_id == ds.id, u.c.day == today()
                )
            ).first()
            if found is not None:
                continue
            try:
                with conn.begin_nested():
                    conn.execute(
                        u.insert().values(
                            department=department,
                            dataset_id=ds.id,
                            day=today(),
                            reserved=0,
                            checked=0,
                            matches=0,
                            blocked=False,
                        )
                    )
            except sa.exc.IntegrityError:
                pass  # another request created it meanwhile


def reserve(
    conn: sa.Connection, department: str, datasets: Sequence[DatasetSpec], n: int
) -> tuple[str, DatasetSpec] | None:
    """Reserve `n` keys of today's quota of every dataset, or say which one refused."""
    u = schema.verify_usage
    for ds in datasets:
        updated = conn.execute(
            u.update()
            .where(
                u.c.department == department,
                u.c.dataset_id == ds.id,
                u.c.day == today(),
                u.c.blocked.is_(False),
                u.c.reserved + n <= ds.verify.max_keys_per_day,
            )
            .values(reserved=u.c.reserved + n)
        )
        if updated.rowcount != 1:
            return precheck(conn, department, [ds], n) or (QUOTA, ds)
    return None


def store_keys(conn: sa.Connection, job_id: str, request: KeyRequest | None) -> None:
    if request is None:
        return
    conn.execute(
        schema.verify_requests.insert().values(job_id=job_id, key_values=list(request.keys))
    )


def load_keys(gw: Gateway, job_id: str) -> tuple[str | int, ...] | None:
    with db.reading(gw.db) as conn:
        row = conn.execute(
            sa.select(schema.verify_requests.c.key_values).where(
                schema.verify_requests.c.job_id == job_id
            )
        ).first()
    return None if row is None else tuple(row.key_values)


def forget_keys(gw: Gateway, job_id: str) -> None:
    with gw.db.begin() as conn:
        forget(conn, job_id)


def forget(conn: sa.Connection, job_id: str) -> None:
    """Delete the job's keys, in the caller's transaction (none kept: nothing happens)."""
    conn.execute(schema.verify_requests.delete().where(schema.verify_requests.c.job_id == job_id))


def count_answers(
    conn: sa.Connection,
    gw: Gateway,
    actor: Actor | Principal,
    job_id: str,
    datasets: Sequence[DatasetSpec],
    *,
    checked: int,
    matches: int,
) -> list[DatasetSpec]:
    """In the release's transaction: forget the job's keys, add its answers to today's totals;
    return the datasets whose owner saw a sweep (blocked for the day, alerted, in the same
    transaction)."""
    u = schema.verify_usage
    swept: list[DatasetSpec] = []
    forget(conn, job_id)
    for ds in datasets:
        day = today()
        where = (u.c.department == actor.department, u.c.dataset_id == ds.id, u.c.day == day)
        # Today's row, made here when the job was reserved on an earlier day: answers released
        # after midnight count towards the day they leave on, never towards none.
        added = db.upsert(conn.dialect.name, u).values(
            department=actor.department, dataset_id=ds.id, day=day, reserved=0,
            checked=checked, matches=matches, blocked=False,
        )  # fmt: skip
        row = conn.execute(
            added.on_conflict_do_update(
                index_elements=[u.c.department, u.c.dataset_id, u.c.day],
                set_={"checked": u.c.checked + checked, "matches": u.c.matches + matches},
            ).returning(u.c.checked, u.c.matches)
        ).one()
        limits = ds.verify
        if (
            row.checked >= limits.sweep_min_keys
            and row.matches <= limits.sweep_max_match_rate * row.checked
        ):
            swept.append(ds)
            conn.execute(u.update().where(*where).values(blocked=True))
            _alert(gw, conn, actor, ds, job_id=job_id, checked=row.checked,
                   matches=row.matches, kind="sweep")  # fmt: skip
    return swept


def _alert(
    gw: Gateway,
    conn: sa.Connection,
    actor: Actor | Principal,
    ds: DatasetSpec,
    *,
    job_id: str,
    checked: int,
    matches: int,
    kind: str,
) -> None:
    alert_id = str(uuid.uuid4())
    conn.execute(
        schema.verify_alerts.insert().values(
            id=alert_id, dataset_id=ds.id, provider=ds.provider, department=actor.department,
            day=today(), job_id=job_id, checked=checked, matches=matches,
            created_at=datetime.now(UTC), kind=kind,
        )
    )  # fmt: skip
    sweep = kind == "sweep"
    gw.audit.record(
        conn,
        type="verify.sweep_detected" if sweep else "verify.spread_detected",
        principal=actor,
        action="verify",
        target=f"dataset:{ds.id}",
        allowed=False,
        reason=(
            "many distinct keys with few matches: looks like enumeration"
            if sweep
            else "one key asked against many parameter values: looks like locating its holder"
        ),
        details={
            "alert": alert_id,
            "job": job_id or None,
            "dataset": ds.id,
            "provider": ds.provider,
            "department": actor.department,
            "keys_today": checked,
            "matches_today": matches,
            "reason_code": SWEEP if sweep else SPREAD,
        },
    )


def alerts_for(gw: Gateway, principal: Principal) -> list[dict[str, Any]]:
    """The sweep alerts on the caller's department's datasets (for its data owners)."""
    a = schema.verify_alerts
    with db.reading(gw.db) as conn:
        rows = conn.execute(
            sa.select(a).where(a.c.provider == principal.department).order_by(a.c.created_at)
        ).all()
    return [
        {
            "id": r.id,
            "dataset": r.dataset_id,
            "department": r.department,
            "day": r.day.isoformat(),
            "job": r.job_id,
            "keys": r.checked,
            "matches": r.matches,
            "kind": r.kind or "sweep",
            "created_at": r.created_at.isoformat(),
        }
        for r in rows
    ]

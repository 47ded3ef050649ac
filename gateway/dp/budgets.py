"""Reading the ledger: an analyst sees its department's budgets on every DP-enabled dataset
(this period, with the cap even before the first charge); a data owner also sees every
department's charges and the global row of the datasets its department provides."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

from gateway.auth.principal import Principal
from gateway.authz import require
from gateway.catalogue import registry as catalogue
from gateway.context import Gateway
from gateway.dp import ledger
from gateway.store import db


def visible(gw: Gateway, principal: Principal) -> list[dict[str, Any]]:
    require(
        gw,
        principal,
        "budget",
        "read",
        event="budget.denied",
        target="budgets",
        read_event="budget.read",
    )
    now = datetime.now(UTC)
    with db.reading(gw.db) as conn:
        datasets = [d for d in catalogue.list_all(conn) if d.privacy is not None]
        # Other departments' charges and the global row: for the providing department's data
        # owners only, not for any analyst who happens to work there.
        owner = "data_owner" in principal.roles
        own = {d.id for d in datasets if owner and d.provider == principal.department}
        rows = ledger.rows_for(conn, departments={principal.department}, datasets=own)
    seen = {(r.department, r.dataset_id, r.period) for r in rows}
    out = [ledger.view(r) for r in rows]
    for ds in datasets:  # this period's budget, even before the first charge
        assert ds.privacy is not None
        budget = ds.privacy.budget
        source = catalogue.source_path(gw, ds) if budget.refresh == "snapshot" else None
        try:
            per = ledger.period(budget, now=now, source=source)
        except OSError:
            continue
        caps = ledger.Caps.of(budget)
        wanted = [(principal.department, caps.department_rho, caps.department_delta)]
        if ds.id in own:
            wanted.append((ledger.GLOBAL, caps.total_rho, caps.total_delta))
        for dept, rho_cap, delta_cap in wanted:
            if (dept, ds.id, per) not in seen:
                empty = SimpleNamespace(
                    department=dept,
                    dataset_id=ds.id,
                    period=per,
                    rho_cap=rho_cap,
                    rho_spent=0,
                    rho_reserved=0,
                    delta_cap=delta_cap,
                    delta_spent=0,
                    delta_reserved=0,
                )
                out.append(ledger.view(empty))
    return sorted(out, key=lambda v: (v["dataset"], v["period"], v["department"]))

"""The application's tables (SQLAlchemy Core). The audit log's tables belong to `audit.store`.

Migrations in `gateway/migrations` create exactly these; a test compares the two.
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa

metadata = sa.MetaData()


class UTCDateTime(sa.TypeDecorator[datetime]):
    """Timestamps are aware and UTC on every backend (SQLite would hand back naive ones)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("timestamps must be timezone-aware")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


TS = UTCDateTime()

policy_versions = sa.Table(
    "policy_versions",
    metadata,
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("rules", sa.Text, nullable=False),
    sa.Column("created_by", sa.String(128), nullable=False),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("note", sa.String(500), nullable=False),
    # Policy administration (issue 3): where a version came from. NULL for versions written by
    # `insitu init` (the seed has no proposal).
    sa.Column("base_version", sa.Integer, nullable=True),
    sa.Column("proposal_id", sa.String(36), nullable=True),
    sa.Column("approved_by", sa.String(128), nullable=True),
)

# A batch of policy changes: proposed by one security officer, live only once a second approves.
policy_proposals = sa.Table(
    "policy_proposals",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("kind", sa.String(16), nullable=False),  # change | rollback | import
    sa.Column("status", sa.String(16), nullable=False),  # proposed | approved | rejected | stale
    sa.Column("base_version", sa.Integer, nullable=False),
    sa.Column("rollback_to", sa.Integer, nullable=True),
    sa.Column("rules", sa.Text, nullable=False),
    sa.Column("added", sa.Integer, nullable=False),
    sa.Column("removed", sa.Integer, nullable=False),
    sa.Column("impact", sa.JSON, nullable=False),
    sa.Column("note", sa.String(500), nullable=False),
    sa.Column("proposed_by", sa.String(128), nullable=False),
    sa.Column("proposed_by_department", sa.String(64), nullable=False),
    sa.Column("proposed_at", TS, nullable=False),
    sa.Column("decided_by", sa.String(128), nullable=True),
    sa.Column("decided_at", TS, nullable=True),
    sa.Column("comment", sa.String(500), nullable=False),
    sa.Column("result_version", sa.Integer, nullable=True),
    sa.Index("ix_policy_proposals_status", "status", "proposed_at"),
)

datasets = sa.Table(
    "datasets",
    metadata,
    sa.Column("id", sa.String(130), primary_key=True),
    sa.Column("provider", sa.String(64), nullable=False),
    sa.Column("share_class", sa.String(16), nullable=False),
    sa.Column("classification", sa.String(16), nullable=False),
    sa.Column("spec", sa.JSON, nullable=False),
    sa.Column("registered_by", sa.String(128), nullable=False),
    sa.Column("registered_at", TS, nullable=False),
)

templates = sa.Table(
    "templates",
    metadata,
    sa.Column("id", sa.String(100), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("content_hash", sa.String(71), nullable=False),
    sa.Column("spec", sa.JSON, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("author", sa.String(128), nullable=False),
    sa.Column("author_department", sa.String(64), nullable=False),
    sa.Column("created_at", TS, nullable=False),
)

template_approvals = sa.Table(
    "template_approvals",
    metadata,
    sa.Column("template_id", sa.String(100), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("dataset_id", sa.String(130), primary_key=True),
    sa.Column("content_hash", sa.String(71), nullable=False),
    sa.Column("decision", sa.String(16), nullable=False),
    sa.Column("approver", sa.String(128), nullable=False),
    sa.Column("approver_department", sa.String(64), nullable=False),
    sa.Column("comment", sa.String(500), nullable=False),
    sa.Column("decided_at", TS, nullable=False),
    sa.ForeignKeyConstraint(
        ["template_id", "version"], ["templates.id", "templates.version"], ondelete="CASCADE"
    ),
)

jobs = sa.Table(
    "jobs",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("template_id", sa.String(100), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("content_hash", sa.String(71), nullable=False),
    sa.Column("parameters", sa.JSON, nullable=False),
    sa.Column("purpose", sa.String(500), nullable=False),
    sa.Column("subject", sa.String(128), nullable=False),
    sa.Column("department", sa.String(64), nullable=False),
    sa.Column("roles", sa.JSON, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("started_at", TS, nullable=True),
    sa.Column("finished_at", TS, nullable=True),
    sa.Column("worker", sa.String(64), nullable=True),
    sa.Column("error", sa.String(300), nullable=True),
    sa.Column("audit_index", sa.BigInteger, nullable=True),
    sa.ForeignKeyConstraint(["template_id", "version"], ["templates.id", "templates.version"]),
    sa.Index("ix_jobs_status_created", "status", "created_at"),
    sa.Index("ix_jobs_department", "department"),
)

job_results = sa.Table(
    "job_results",
    metadata,
    sa.Column("job_id", sa.String(36), sa.ForeignKey("jobs.id"), primary_key=True),
    sa.Column("result", sa.JSON, nullable=False),
    sa.Column("result_hash", sa.String(71), nullable=False),
    sa.Column("audit_index", sa.BigInteger, nullable=False),
    sa.Column("created_at", TS, nullable=False),
)

# --- issue 5: templates and catalogue (retirement, purposes, verify quotas) ---------------------

template_retirements = sa.Table(
    "template_retirements",
    metadata,
    sa.Column("template_id", sa.String(100), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("retired_by", sa.String(128), nullable=False),
    sa.Column("reason", sa.String(500), nullable=False),
    sa.Column("retired_at", TS, nullable=False),
    sa.ForeignKeyConstraint(
        ["template_id", "version"], ["templates.id", "templates.version"], ondelete="CASCADE"
    ),
)

purposes = sa.Table(
    "purposes",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("dataset_id", sa.String(130), sa.ForeignKey("datasets.id"), nullable=False),
    sa.Column("department", sa.String(64), nullable=False),
    sa.Column("purpose", sa.String(500), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("requested_by", sa.String(128), nullable=False),
    sa.Column("requested_at", TS, nullable=False),
    sa.Column("expires_at", TS, nullable=True),
    sa.Column("decided_by", sa.String(128), nullable=True),
    sa.Column("decided_at", TS, nullable=True),
    sa.Index("ix_purposes_department_dataset", "department", "dataset_id"),
)

verify_usage = sa.Table(
    "verify_usage",
    metadata,
    sa.Column("department", sa.String(64), primary_key=True),
    sa.Column("dataset_id", sa.String(130), primary_key=True),
    sa.Column("day", sa.Date, primary_key=True),
    sa.Column("reserved", sa.Integer, nullable=False),
    sa.Column("checked", sa.Integer, nullable=False),
    sa.Column("matches", sa.Integer, nullable=False),
    sa.Column("blocked", sa.Boolean, nullable=False),
)

verify_alerts = sa.Table(
    "verify_alerts",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("dataset_id", sa.String(130), nullable=False),
    sa.Column("provider", sa.String(64), nullable=False),
    sa.Column("department", sa.String(64), nullable=False),
    sa.Column("day", sa.Date, nullable=False),
    sa.Column("job_id", sa.String(36), nullable=False),
    sa.Column("checked", sa.Integer, nullable=False),
    sa.Column("matches", sa.Integer, nullable=False),
    sa.Column("created_at", TS, nullable=False),
    sa.Index("ix_verify_alerts_provider", "provider"),
)

verify_requests = sa.Table(  # a verify job's keys, kept only until the job has answered
    "verify_requests",
    metadata,
    sa.Column("job_id", sa.String(36), sa.ForeignKey("jobs.id"), primary_key=True),
    sa.Column("key_values", sa.JSON, nullable=False),
)

# Disclosure control (issue 5): every released cell of an aggregate release, with a keyed
# sketch of the units it describes (see gateway/jobs/releases/history.py). No unit ids are stored.
release_cells = sa.Table(
    "release_cells",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column("dataset_id", sa.String(130), nullable=False),
    sa.Column("unit_column", sa.String(64), nullable=False),
    sa.Column("cells_per_hash", sa.Integer, nullable=False),
    sa.Column("scheme", sa.String(64), nullable=False),
    sa.Column("units", sa.BigInteger, nullable=False),
    sa.Column("sketch", sa.LargeBinary, nullable=False),
    sa.Column("job_id", sa.String(36), nullable=False),
    sa.Column("department", sa.String(64), nullable=False),
    sa.Column("created_at", TS, nullable=False),
    sa.Index("ix_release_cells_population", "dataset_id", "unit_column", "units"),
)

# Differential privacy (issue 6): the budget ledger, reservations, idempotent submissions.
# Budgets are integers: ρ in micro-units (1e-6), δ in femto-units (1e-15); never binary floats.
privacy_budgets = sa.Table(
    "privacy_budgets",
    metadata,
    sa.Column("department", sa.String(64), primary_key=True),  # "*": the dataset's global cap
    sa.Column("dataset_id", sa.String(130), primary_key=True),
    sa.Column("period", sa.String(80), primary_key=True),
    sa.Column("rho_cap", sa.BigInteger, nullable=False),
    sa.Column("rho_spent", sa.BigInteger, nullable=False),
    sa.Column("rho_reserved", sa.BigInteger, nullable=False),
    sa.Column("delta_cap", sa.BigInteger, nullable=False),
    sa.Column("delta_spent", sa.BigInteger, nullable=False),
    sa.Column("delta_reserved", sa.BigInteger, nullable=False),
    sa.Column("updated_at", TS, nullable=False),
    sa.CheckConstraint(
        "rho_spent >= 0 AND rho_reserved >= 0 AND delta_spent >= 0 AND delta_reserved >= 0",
        name="ck_privacy_budgets_not_negative",
    ),
)

budget_reservations = sa.Table(
    "budget_reservations",
    metadata,
    sa.Column("job_id", sa.String(36), primary_key=True),
    sa.Column("department", sa.String(64), nullable=False),
    sa.Column("dataset_id", sa.String(130), nullable=False),
    sa.Column("period", sa.String(80), nullable=False),
    sa.Column("rho", sa.BigInteger, nullable=False),
    sa.Column("delta", sa.BigInteger, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # reserved | committed | returned
    sa.Column("created_at", TS, nullable=False),
    sa.Column("settled_at", TS, nullable=True),
)

# The most rows any privacy unit has (and the rows without a unit) in one fingerprinted
# snapshot of a source, measured by
# the sandbox (sandbox/dp/snapshot.py): where it is within a plan's bounds, the per-unit
# windows are no-ops and are skipped. Keyed by the fingerprint; holds no unit ids or values.
dp_unit_stats = sa.Table(
    "dp_unit_stats",
    metadata,
    sa.Column("snapshot", sa.String(71), primary_key=True),
    sa.Column("dataset_id", sa.String(130), nullable=False),
    sa.Column("unit_column", sa.String(64), nullable=False),
    sa.Column("max_rows", sa.BigInteger, nullable=False),
    sa.Column("null_rows", sa.BigInteger, nullable=False),
    sa.Column("created_at", TS, nullable=False),
    sa.Index("ix_dp_unit_stats_dataset", "dataset_id", "created_at"),
)

idempotency_keys = sa.Table(
    "idempotency_keys",
    metadata,
    sa.Column("department", sa.String(64), primary_key=True),
    sa.Column("key", sa.String(200), primary_key=True),
    sa.Column("request_hash", sa.String(71), nullable=False),
    sa.Column("job_id", sa.String(36), sa.ForeignKey("jobs.id"), nullable=False),
    sa.Column("created_at", TS, nullable=False),
)

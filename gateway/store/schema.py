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
    # The purposes the job names by id (有条件共享: the owner's approval of each); NULL on jobs
    # accepted before revision 0009 (none named).
    sa.Column("purpose_ids", sa.JSON, nullable=True),
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
    # The lease of a running job (revision 0010): its holder renews it while the job runs; any
    # replica reclaims the job once it has expired. `attempts` counts the claims.
    sa.Column("lease_owner", sa.String(64), nullable=True),
    sa.Column("lease_expires_at", TS, nullable=True),
    sa.Column("attempts", sa.Integer, nullable=False, server_default=sa.text("0")),
    sa.ForeignKeyConstraint(["template_id", "version"], ["templates.id", "templates.version"]),
    sa.Index("ix_jobs_status_created", "status", "created_at"),
    sa.Index("ix_jobs_status_lease", "status", "lease_expires_at"),
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
    sa.Column("kind", sa.String(32), nullable=True),  # sweep (NULL before 0010) | spread
    sa.Index("ix_verify_alerts_provider", "provider"),
)

# Which (key, parameter set) pairs a department asked of a dataset in a period, as keyed
# fingerprints: one key asked against many parameter sets locates its holder (issue 15).
verify_probes = sa.Table(
    "verify_probes",
    metadata,
    sa.Column("department", sa.String(64), primary_key=True),
    sa.Column("dataset_id", sa.String(130), primary_key=True),
    sa.Column("period", sa.String(16), primary_key=True),
    sa.Column("key_fp", sa.String(128), primary_key=True),
    sa.Column("parameters_fp", sa.String(128), primary_key=True),
    sa.Column("created_at", TS, nullable=False),
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

# Atoms of released populations (issue 15; gateway/jobs/releases/partition.py). Per dataset and
# unit column: a snapshot of the partition — the sorted keyed unit hashes seen in released cells
# and each one's atom (``sandbox.Partition.to_bytes``) — as of version ``base``; written only
# when the log is compacted. No unit ids are stored.
release_partitions = sa.Table(
    "release_partitions",
    metadata,
    sa.Column("dataset_id", sa.String(130), primary_key=True),
    sa.Column("unit_column", sa.String(64), primary_key=True),
    sa.Column("scheme", sa.String(64), nullable=False),
    sa.Column("units", sa.BigInteger, nullable=False),
    sa.Column("cells", sa.BigInteger, nullable=False),
    sa.Column("data", sa.LargeBinary, nullable=False),
    sa.Column("base", sa.BigInteger, nullable=False),
    sa.Column("base_tag", sa.String(16), nullable=False),
    sa.Column("updated_at", TS, nullable=False),
)

# The newest version of each partition (a small row read and moved by every release): the
# versions of the head and of the snapshot, each with a random tag, and the log's bytes since.
release_partition_heads = sa.Table(
    "release_partition_heads",
    metadata,
    sa.Column("dataset_id", sa.String(130), primary_key=True),
    sa.Column("unit_column", sa.String(64), primary_key=True),
    sa.Column("scheme", sa.String(64), nullable=False),
    sa.Column("units", sa.BigInteger, nullable=False),
    sa.Column("cells", sa.BigInteger, nullable=False),
    sa.Column("head", sa.BigInteger, nullable=False),
    sa.Column("head_tag", sa.String(16), nullable=False),
    sa.Column("base", sa.BigInteger, nullable=False),
    sa.Column("base_tag", sa.String(16), nullable=False),
    sa.Column("log_bytes", sa.BigInteger, nullable=False),
    # Which population key hashed the units (``history.key_id``); NULL: not yet recorded.
    sa.Column("key_id", sa.String(16)),
    # Cells of ``release_cells`` with a larger id are covered by the atom check (released
    # with a refinement of this partition); NULL: none is known to be (migration 0013).
    sa.Column("covers_after", sa.BigInteger),
    sa.Column("updated_at", TS, nullable=False),
)

# The log of refinements: per release that released cells, their member hashes
# (``sandbox.cells_to_bytes``) as version ``seq``. Rows after the previous compaction are kept.
release_refinements = sa.Table(
    "release_refinements",
    metadata,
    sa.Column("dataset_id", sa.String(130), primary_key=True),
    sa.Column("unit_column", sa.String(64), primary_key=True),
    sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("tag", sa.String(16), nullable=False),
    sa.Column("cells", sa.LargeBinary, nullable=False),
    sa.Column("created_at", TS, nullable=False),
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

# When each department last had a job claimed: the queue takes departments in turn.
department_turns = sa.Table(
    "department_turns",
    metadata,
    sa.Column("department", sa.String(64), primary_key=True),
    sa.Column("last_claimed_at", TS, nullable=False),
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

# The web console (issue 17): one-time sign-in links and pending OIDC sign-ins, and sessions.
# Only hashes of the secrets are stored (a copy of the table cannot sign anyone in).
console_links = sa.Table(
    "console_links",
    metadata,
    sa.Column("secret_hash", sa.String(64), primary_key=True),
    sa.Column("kind", sa.String(8), nullable=False),  # link | oidc
    sa.Column("subject", sa.String(128), nullable=True),
    sa.Column("department", sa.String(64), nullable=True),
    sa.Column("roles", sa.JSON, nullable=True),
    sa.Column("verifier", sa.String(128), nullable=True),  # PKCE code verifier (oidc)
    sa.Column("browser_hash", sa.String(64), nullable=True),  # the browser that started it (oidc)
    sa.Column("created_at", TS, nullable=False),
    sa.Column("expires_at", TS, nullable=False),
    sa.Column("used_at", TS, nullable=True),
)

console_sessions = sa.Table(
    "console_sessions",
    metadata,
    sa.Column("secret_hash", sa.String(64), primary_key=True),
    sa.Column("subject", sa.String(128), nullable=False),
    sa.Column("department", sa.String(64), nullable=False),
    sa.Column("roles", sa.JSON, nullable=False),
    sa.Column("csrf", sa.String(64), nullable=False),
    sa.Column("source", sa.String(8), nullable=False),  # link | oidc
    sa.Column("created_at", TS, nullable=False),
    sa.Column("expires_at", TS, nullable=False),
    sa.Index("ix_console_sessions_expires", "expires_at"),
)

# --- issue 18: data quality, open results, comparison findings ---------------------------------

# A data-quality profile of one snapshot of a dataset's source (counts and rates only, computed
# in the sandbox): at registration, on a snapshot, or when a job finds the file changed.
dataset_profiles = sa.Table(
    "dataset_profiles",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("dataset_id", sa.String(130), nullable=False),
    sa.Column("fingerprint", sa.String(71), nullable=False),
    sa.Column("trigger", sa.String(16), nullable=False),  # registration | snapshot | job
    sa.Column("status", sa.String(16), nullable=False),  # accepted | refused
    sa.Column("snapshot_at", TS, nullable=False),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("profile", sa.JSON, nullable=False),
    sa.Column("checks", sa.JSON, nullable=False),
    sa.Column("freshness", sa.JSON, nullable=False),
    sa.Column("drift", sa.JSON, nullable=True),
    sa.Index("ix_dataset_profiles_dataset", "dataset_id", "created_at"),
    sa.Index("ix_dataset_profiles_fingerprint", "dataset_id", "fingerprint"),
)

# Open results (开放不出门): a released result published by a data owner, one row per dataset and
# one per version; unpublishing keeps every version (history), it only stops serving them.
open_datasets = sa.Table(
    "open_datasets",
    metadata,
    sa.Column("id", sa.String(100), primary_key=True),
    sa.Column("provider", sa.String(64), nullable=False),
    sa.Column("title", sa.String(200), nullable=False),
    sa.Column("description", sa.String(4000), nullable=False),
    sa.Column("licence", sa.String(100), nullable=False),
    sa.Column("update_cycle", sa.String(40), nullable=False),
    sa.Column("open_class", sa.String(16), nullable=False),
    sa.Column("template_id", sa.String(100), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # published | unpublished
    sa.Column("latest_version", sa.Integer, nullable=False),
    sa.Column("created_by", sa.String(128), nullable=False),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("updated_at", TS, nullable=False),
)

open_versions = sa.Table(
    "open_versions",
    metadata,
    sa.Column("open_id", sa.String(100), sa.ForeignKey("open_datasets.id"), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("job_id", sa.String(36), nullable=False),  # never served under /open
    sa.Column("template_version", sa.Integer, nullable=False),
    sa.Column("parameters", sa.JSON, nullable=False),
    sa.Column("result", sa.JSON, nullable=False),
    sa.Column("result_hash", sa.String(71), nullable=False),
    sa.Column("csv_sha256", sa.String(71), nullable=False),
    sa.Column("audit_index", sa.BigInteger, nullable=False),
    sa.Column("receipt", sa.JSON, nullable=True),
    sa.Column("published_by", sa.String(128), nullable=False),
    sa.Column("published_at", TS, nullable=False),
)

# API keys for app developers reading open results, issued by a security officer. Only a
# SHA-256 of the secret is stored.
api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("holder", sa.String(64), nullable=False),
    sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("per_minute", sa.Integer, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # active | revoked
    sa.Column("created_by", sa.String(128), nullable=False),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("revoked_at", TS, nullable=True),
)

# Comparison findings (比对), each routed to the one department responsible for correcting it.
# The key is a non-personal identifier (a list template releases no personal column);
# `fields` names the fields that disagree, never their values.
findings = sa.Table(
    "findings",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("job_id", sa.String(36), nullable=False),
    sa.Column("template_id", sa.String(100), nullable=False),
    sa.Column("requester", sa.String(64), nullable=False),
    sa.Column("department", sa.String(64), nullable=False),
    sa.Column("finding_type", sa.String(40), nullable=False),
    sa.Column("key", sa.String(200), nullable=False),
    sa.Column("district", sa.String(200), nullable=True),
    sa.Column("fields", sa.JSON, nullable=False),
    sa.Column("state", sa.String(16), nullable=False),  # open | acknowledged | closed
    sa.Column("note", sa.String(500), nullable=False),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("updated_at", TS, nullable=False),
    sa.Column("closed_at", TS, nullable=True),
    sa.Index("ix_findings_department_state", "department", "state"),
    sa.Index("ix_findings_job", "job_id"),
)

# One row per cached kind of read-mostly state: its version is bumped in the same transaction
# as any change to it, so every replica's in-memory copy (gateway/catalogue/cache.py) sees a
# change by reading one small row.
catalogue_version = sa.Table(
    "catalogue_version",
    metadata,
    sa.Column("name", sa.String(32), primary_key=True),
    sa.Column("version", sa.BigInteger, nullable=False),
)

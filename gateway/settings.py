"""The one settings object, read from ``INSITU_*`` environment variables.

Built once (``load_settings()``) and passed in; domain packages never read the environment.
The home's ``config.env`` (written by ``insitu init``) is read after the environment, so a
variable set in the environment always wins.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from gateway.auth.discovery import check_url
from gateway.auth.keysource import ALGORITHM_KEYS
from gateway.auth.verifier import parse_token_types, parse_type_claim

CONFIG_FILE = "config.env"


class Settings(BaseSettings):
    """Settings of one gateway. Every field is ``INSITU_<NAME>`` in the environment."""

    model_config = SettingsConfigDict(env_prefix="INSITU_", extra="ignore", frozen=True)

    home: Path = Field(
        default=Path(".insitu"), description="Home directory: config, keys, database, data."
    )
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL of the store; default SQLite file `insitu.db` in the home.",
    )
    oidc_issuer: str | None = Field(
        default=None, description="External OIDC issuer; unset means the local token issuer."
    )
    oidc_audience: str = Field(default="insitu", description="Audience (`aud`) tokens must name.")
    oidc_jwks_url: str | None = Field(
        default=None, description="JWKS URL of the external issuer (default: from discovery)."
    )
    oidc_department_claim: str = Field(
        default="department", description="Claim (dotted path) holding the department."
    )
    oidc_roles_claim: str = Field(
        default="roles", description="Claim (dotted path) holding the roles."
    )
    token_type: str = Field(
        default="at+jwt",
        description="Accepted JWT `typ` headers, comma-separated (RFC 9068 access tokens); "
        "empty only with `INSITU_TOKEN_TYPE_CLAIM`.",
    )
    # --- identity (issue 3): token checks and the external provider's key set ---
    token_type_claim: str | None = Field(
        default=None,
        description="`claim=value` every access token must carry (Keycloak: `typ=Bearer`).",
    )
    token_algorithms: str = Field(
        default="Ed25519,ES256,RS256",
        description="Signature algorithms accepted, comma-separated (public-key only).",
    )
    jwks_refresh_interval_s: float = Field(
        default=30.0, ge=0, le=3600, description="Least time between two fetches of the JWKS."
    )
    jwks_cache_ttl_s: float = Field(
        default=300.0, ge=0, le=86400, description="Age at which cached JWKS keys are refetched."
    )
    jwks_max_stale_s: float = Field(
        default=3600.0,
        ge=0,
        le=604800,
        description="How long the last good keys serve while the JWKS fails; then 503.",
    )
    token_leeway_s: int = Field(default=30, ge=0, le=300, description="Clock leeway for tokens.")
    local_issuer: str = Field(
        default="insitu-local", description="`iss` of tokens from `insitu token issue`."
    )
    engine: Literal["duckdb", "spark"] = Field(
        default="duckdb",
        description="Compute engine next to the data (`spark` is refused until its engine lands).",
    )
    spark_remote: str | None = Field(
        default=None, description="Spark Connect URL (`sc://host:15002`) for engine=spark."
    )
    workers: int = Field(default=2, ge=1, le=64, description="Job worker threads per gateway.")
    job_timeout_s: float = Field(default=60.0, gt=0, le=3600, description="Time limit per job.")
    job_memory_limit: str = Field(default="2GB", description="DuckDB memory limit per job.")
    job_threads: int = Field(default=2, ge=1, le=64, description="DuckDB threads per job.")
    max_result_rows: int = Field(
        default=10_000, ge=1, le=1_000_000, description="Most rows a result may carry."
    )
    # -- sandbox isolation (issue 5) --
    sandbox_isolation: Literal["process", "inprocess"] = Field(
        default="process",
        description="Run jobs in sandbox worker processes (`process`) or in the gateway "
        "process (`inprocess`, for development).",
    )
    sandbox_spares: int = Field(
        default=1, ge=0, le=64, description="Sandbox worker processes kept started ahead of jobs."
    )
    sandbox_grace_s: float = Field(
        default=5.0,
        gt=0,
        le=600,
        description="Past the job time limit plus this, the watchdog kills the worker.",
    )
    sandbox_address_space: str | None = Field(
        default=None,
        pattern=r"^\d{1,6}(\.\d{1,3})?\s?(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)$",
        description="Address-space limit of a worker process (e.g. `6GB`); default twice the "
        "job memory limit plus 2 GiB.",
    )
    audit_origin: str = Field(
        default="insitu.local/audit", description="Origin line of signed audit checkpoints."
    )
    audit_witnesses: str = Field(
        default="",
        description="Witness vkeys (space-separated) whose audit checkpoint cosignatures are kept.",
    )
    policy_refresh_s: float = Field(
        default=2.0,
        gt=0,
        le=2.0,
        description="Seconds until a policy change made elsewhere is live on this worker.",
    )
    host: str = Field(default="127.0.0.1", description="Address `insitu serve` binds.")
    port: int = Field(default=8000, ge=1, le=65535, description="Port `insitu serve` binds.")

    @field_validator("database_url")
    @classmethod
    def _known_driver(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.startswith(("sqlite:", "postgresql:", "postgresql+psycopg:")):
            raise ValueError("database_url must be a sqlite: or postgresql: URL")
        if value.startswith("postgresql:"):
            return "postgresql+psycopg:" + value.removeprefix("postgresql:")
        return value

    @field_validator("engine")
    @classmethod
    def _engine_available(cls, value: str) -> str:
        # Refused rather than ignored: a deployment asking for Spark must not run on DuckDB
        # beside the gateway without noticing.
        if value != "duckdb":
            raise ValueError(f"the {value} engine is not available in this release; use duckdb")
        return value

    @model_validator(mode="after")
    def _identity_checks(self) -> Settings:
        types = parse_token_types(self.token_type)
        if not types and parse_type_claim(self.token_type_claim) is None:
            raise ValueError("token_type may be empty only when token_type_claim is set")
        parse_type_claim(self.token_type_claim)  # checked even when typ headers are set
        dept, roles = self.oidc_department_claim, self.oidc_roles_claim
        if dept == roles or dept.startswith(roles + ".") or roles.startswith(dept + "."):
            raise ValueError("oidc_department_claim and oidc_roles_claim must be different claims")
        if self.oidc_issuer is not None:
            check_url(self.oidc_issuer, "oidc_issuer")
        if self.oidc_jwks_url is not None:
            check_url(self.oidc_jwks_url, "oidc_jwks_url")
        algorithms = [a.strip() for a in self.token_algorithms.split(",") if a.strip()]
        unknown = [a for a in algorithms if a not in ALGORITHM_KEYS]
        if not algorithms or unknown:
            raise ValueError(f"token_algorithms: not public-key JWS algorithms: {unknown}")
        if not (self.jwks_refresh_interval_s <= self.jwks_cache_ttl_s <= self.jwks_max_stale_s):
            raise ValueError("need jwks_refresh_interval_s <= jwks_cache_ttl_s <= jwks_max_stale_s")
        return self

    @property
    def token_algorithm_list(self) -> tuple[str, ...]:
        return tuple(a.strip() for a in self.token_algorithms.split(",") if a.strip())

    @property
    def resolved_database_url(self) -> str:
        if self.database_url is not None:
            return self.database_url
        return f"sqlite:///{(self.home / 'insitu.db').resolve()}"

    @property
    def keys_dir(self) -> Path:
        return self.home / "keys"

    @property
    def data_dir(self) -> Path:
        return self.home / "data"


def load_settings(home: Path | None = None) -> Settings:
    """Settings from the environment, then the home's config file."""
    overrides: dict[str, object] = {}
    if home is not None:
        overrides["home"] = home
    base = Settings(**overrides)  # type: ignore[arg-type]
    config = base.home / CONFIG_FILE
    if config.is_file():
        return Settings(_env_file=config, **overrides)  # type: ignore[call-arg, arg-type]
    return base


def settings_table() -> str:
    """The README's settings table, generated from `Settings` (a test keeps them equal)."""
    lines = ["| variable | default | meaning |", "|---|---|---|"]
    for name, field in Settings.model_fields.items():
        default = field.default
        shown = "—" if default is None else f"`{default}`"
        lines.append(f"| `INSITU_{name.upper()}` | {shown} | {field.description} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(settings_table())

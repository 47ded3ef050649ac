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

from audit import AuditError, witness_key
from gateway.auth.discovery import check_url
from gateway.auth.keysource import ALGORITHM_KEYS
from gateway.auth.verifier import parse_token_types, parse_type_claim
from sandbox import SandboxError, check_spark_remote

CONFIG_FILE = "config.env"
LOOPBACK_HOSTS = ("127.0.0.1", "::1", "localhost")


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
        default="Ed25519,EdDSA,ES256,RS256",
        description="Signature algorithms accepted, comma-separated (public-key only; "
        "`EdDSA` and `Ed25519` both name Ed25519 keys).",
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
        description="Compute engine next to the data: embedded `duckdb`, or `spark` through "
        "Spark Connect (needs `INSITU_SPARK_REMOTE` and the `spark` extra).",
    )
    spark_remote: str | None = Field(
        default=None, description="Spark Connect URL (`sc://host:15002`) for engine=spark."
    )
    jdbc_connections_file: Path | None = Field(
        default=None,
        description="JSON file of JDBC connections (`{name: {url, user, password}}`) that "
        "`jdbc` sources name (engine=spark); default `jdbc.json` in the home when present.",
    )
    workers: int = Field(default=2, ge=1, le=64, description="Job worker threads per gateway.")
    job_timeout_s: float = Field(default=60.0, gt=0, le=3600, description="Time limit per job.")
    # -- fair and bounded under many departments (issue 13) --
    max_running_per_department: int = Field(
        default=0,
        ge=0,
        le=64,
        description="Jobs of one department running at once, counted over every replica "
        "sharing the store; 0 means one less than `workers` (at least 1), so another "
        "department's job finds a free worker.",
    )
    max_pending_per_caller: int = Field(
        default=50, ge=1, le=100_000, description="Accepted, unfinished jobs one caller may have."
    )
    max_pending_per_department: int = Field(
        default=200,
        ge=1,
        le=1_000_000,
        description="Accepted, unfinished jobs one department may have.",
    )
    max_waits_per_caller: int = Field(
        default=8,
        ge=1,
        le=1000,
        description="Result waits (`?wait=`) one caller may hold open at once on a gateway.",
    )
    job_lease_s: float = Field(
        default=30.0,
        gt=0,
        le=3600,
        description="Lease of a running job, renewed while it runs; once expired (its worker "
        "or gateway died) any replica runs the job again.",
    )
    job_memory_limit: str = Field(default="2GB", description="DuckDB memory limit per job.")
    job_threads: int = Field(default=2, ge=1, le=64, description="DuckDB threads per job.")
    max_result_rows: int = Field(
        default=10_000, ge=1, le=1_000_000, description="Most rows a result may carry."
    )
    verify_sorted_copy_min_bytes: int = Field(
        default=2**20,
        ge=-1,
        description="Embedded engine: a verify dataset's file of at least this many bytes "
        "gets a copy sorted by the key column (in `cache/sorted` of the home, made in the "
        "background), so a key is looked up instead of scanning every row; -1: never.",
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
    sandbox_max_workers: int = Field(
        default=4,
        ge=1,
        le=256,
        description="Most sandbox worker processes at once (idle, busy and starting); a job "
        "waits for one beyond that.",
    )
    sandbox_long_job_s: float = Field(
        default=0.5,
        ge=0,
        le=3600,
        description="A sandbox call still running after this many seconds runs at a lower CPU "
        "priority (nice 10), so heavy jobs yield the cores to small ones; its worker is then "
        "retired. 0: never.",
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
        description="Witness vkeys (space-separated) whose audit checkpoint cosignatures are "
        "kept: type 0x04 (C2SP cosignature/v1), or 0x01 for insitu's older plain signatures.",
    )
    audit_witness_urls: str = Field(
        default="",
        description="C2SP tlog-witness submission prefixes (space-separated) asked to cosign "
        "the newest checkpoint by `insitu audit witness-request`.",
    )
    resource_url: str | None = Field(
        default=None,
        description="This gateway's public URL: the RFC 9728 `resource` in "
        "/.well-known/oauth-protected-resource (default: the URL the request came to).",
    )
    policy_refresh_s: float = Field(
        default=2.0,
        gt=0,
        le=2.0,
        description="Seconds until a policy change made elsewhere is live on this worker.",
    )
    # -- the web console (issue 17) --
    console_session_ttl_s: int = Field(
        default=28800, ge=60, le=7 * 86400, description="Lifetime of a console session (seconds)."
    )
    console_link_ttl_s: int = Field(
        default=600,
        ge=30,
        le=86400,
        description="Lifetime of a one-time console sign-in link (`insitu console-link`).",
    )
    console_url: str | None = Field(
        default=None,
        description="The console's public base URL (links, OIDC redirect); default "
        "`http://<host>:<port>`.",
    )
    console_oidc_client_id: str | None = Field(
        default=None,
        description="Client id of the console at the external OIDC issuer (authorization code "
        "+ PKCE); unset: no browser sign-in through the issuer.",
    )
    console_oidc_client_secret: str | None = Field(
        default=None, description="Client secret, if the issuer treats the console as confidential."
    )
    console_insecure_http_cookies: bool = Field(
        default=False,
        description="INSECURE, development only: console cookies without `Secure`, for plain "
        "http on loopback; refused unless the gateway binds a loopback address.",
    )
    # -- open results (issue 18) --
    open_anonymous_per_minute: int = Field(
        default=60,
        ge=1,
        le=10_000_000,
        description="Reads per minute of the open API (`/open/v1`) per anonymous client address.",
    )
    open_key_per_minute: int = Field(
        default=600,
        ge=1,
        le=10_000_000,
        description="Default reads per minute of an API key issued for the open API.",
    )
    host: str = Field(default="127.0.0.1", description="Address `insitu serve` binds.")
    port: int = Field(default=8000, ge=1, le=65535, description="Port `insitu serve` binds.")
    http_header_timeout_s: float = Field(
        default=10.0,
        gt=0,
        le=600,
        description="Time a client has to send a request's headers (from connecting, or from "
        "its first byte after a keep-alive pause); then the connection is closed.",
    )
    http_body_timeout_s: float = Field(
        default=30.0,
        gt=0,
        le=600,
        description="Longest pause between two reads of a request body; then the connection "
        "is closed.",
    )
    http_keep_alive_s: int = Field(
        default=5, ge=1, le=600, description="Idle time before a keep-alive connection closes."
    )
    http_max_connections_per_client: int = Field(
        default=64,
        ge=1,
        le=100_000,
        description="Open connections one client address may hold; more are closed at once.",
    )
    http_max_connections: int = Field(
        default=2048,
        ge=1,
        le=1_000_000,
        description="Connections and tasks the server serves at once; beyond it answers 503.",
    )

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

    @field_validator("spark_remote")
    @classmethod
    def _spark_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            return check_spark_remote(value)
        except SandboxError:
            raise ValueError(
                "spark_remote must be a Spark Connect URL like sc://host:15002"
            ) from None

    @model_validator(mode="after")
    def _engine_configured(self) -> Settings:
        # Refused rather than ignored: a deployment asking for Spark must not run on DuckDB
        # beside the gateway without noticing.
        if self.engine == "spark" and self.spark_remote is None:
            raise ValueError("engine spark needs INSITU_SPARK_REMOTE (sc://host:15002)")
        return self

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
        if self.console_insecure_http_cookies and self.host not in LOOPBACK_HOSTS:
            raise ValueError(
                "console_insecure_http_cookies is for a gateway bound to loopback only"
            )
        if self.console_url is not None:
            check_url(self.console_url, "console_url")
        if not (self.jwks_refresh_interval_s <= self.jwks_cache_ttl_s <= self.jwks_max_stale_s):
            raise ValueError("need jwks_refresh_interval_s <= jwks_cache_ttl_s <= jwks_max_stale_s")
        if self.resource_url is not None:
            check_url(self.resource_url, "resource_url")
            if "#" in self.resource_url:
                raise ValueError("resource_url must not carry a fragment (RFC 9728)")
        for url in self.audit_witness_urls.split():
            check_url(url, "audit_witness_urls")
        return self

    @field_validator("audit_witnesses")
    @classmethod
    def _witness_keys(cls, value: str) -> str:
        try:
            for vkey in value.split():
                witness_key(vkey)
        except AuditError:
            raise ValueError("audit_witnesses holds a malformed witness vkey") from None
        return value

    @property
    def running_cap(self) -> int:
        """Jobs of one department that may run at once (`max_running_per_department`)."""
        return self.max_running_per_department or max(1, self.workers - 1)

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

    @property
    def sorted_copies_dir(self) -> Path:
        """Derived data (sorted copies for verify lookups): not backed up, safe to delete."""
        return self.home / "cache" / "sorted"

    @property
    def resolved_jdbc_connections_file(self) -> Path | None:
        if self.jdbc_connections_file is not None:
            return self.jdbc_connections_file
        default = self.home / "jdbc.json"
        return default if default.is_file() else None


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

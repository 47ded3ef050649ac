"""Data-quality profiles: counts and rates of one source, computed in the sandbox.

The gateway asks for a profile of a dataset's source at registration and on every snapshot
change (`ProfileRequest`); the engine runs one aggregate query written here and hands back a
`DatasetProfile`. What may leave is fixed by construction: row count, per column the NULL
count, the distinct count and the number of values outside the declared domain (allowed
values and/or a pattern), per key the duplicate and NULL-key counts, and MIN/MAX only of
columns the request marks public. No other value of a column ever appears in the query's
output. Domain values and patterns are bound as parameters, never written into the SQL.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from sandbox.errors import SandboxBug
from sandbox.schema import COLUMN_NAME, dataset_id_problem

MAX_COLUMNS = 500
MAX_DOMAIN = 1000
MAX_PATTERN = 200
DomainValue = str | int


def _valid_domain(domain: tuple[DomainValue, ...]) -> bool:
    return 0 < len(domain) <= MAX_DOMAIN and all(
        isinstance(v, str) or type(v) is int for v in domain
    )


@dataclass(frozen=True, slots=True)
class ColumnCheck:
    """What to measure of one column. `public`: MIN/MAX may leave (only for public columns)."""

    name: str
    public: bool = False
    domain: tuple[DomainValue, ...] | None = None
    pattern: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not COLUMN_NAME.fullmatch(self.name):
            raise SandboxBug("a profiled column needs a plain column name")
        domain = self.domain
        if domain is not None and not _valid_domain(domain):
            raise SandboxBug(f"column {self.name}: a domain is 1..{MAX_DOMAIN} str/int values")
        if self.pattern is not None:
            if not isinstance(self.pattern, str) or not 0 < len(self.pattern) <= MAX_PATTERN:
                raise SandboxBug(f"column {self.name}: a pattern is 1..{MAX_PATTERN} characters")
            try:
                re.compile(self.pattern)
            except re.error:
                raise SandboxBug(f"column {self.name}: the pattern does not compile") from None


@dataclass(frozen=True, slots=True)
class ProfileRequest:
    dataset_id: str
    columns: tuple[ColumnCheck, ...]
    key: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        problem = dataset_id_problem(self.dataset_id)
        if problem is not None:
            raise SandboxBug(f"profile dataset id {problem}")
        names = [c.name for c in self.columns]
        if not 0 < len(names) <= MAX_COLUMNS or len(set(names)) != len(names):
            raise SandboxBug("a profile names 1..500 distinct columns")
        if not set(self.key) <= set(names) or len(set(self.key)) != len(self.key):
            raise SandboxBug("key columns must be distinct profiled columns")

    # --- the query --------------------------------------------------------------------

    def sql(self) -> tuple[str, dict[str, object]]:
        """The one aggregate query (DuckDB, `$name` parameters) and its bound values."""
        dept, table = self.dataset_id.split(".")
        parts = ["COUNT(*) AS n_rows"]
        params: dict[str, object] = {}
        for i, c in enumerate(self.columns):
            col = f'"{c.name}"'  # validated plain name
            parts += [f"COUNT({col}) AS c{i}_present", f"COUNT(DISTINCT {col}) AS c{i}_distinct"]
            outside = []
            if c.domain is not None:
                params[f"d{i}"] = [str(v) for v in c.domain]
                outside.append(f"NOT list_contains($d{i}, CAST({col} AS VARCHAR))")
            if c.pattern is not None:
                params[f"p{i}"] = c.pattern
                outside.append(f"NOT regexp_full_match(CAST({col} AS VARCHAR), $p{i})")
            if outside:
                cond = " OR ".join(outside)
                parts.append(f"COUNT(*) FILTER (WHERE {col} IS NOT NULL AND ({cond})) AS c{i}_out")
            if c.public:
                parts += [
                    f"CAST(MIN({col}) AS VARCHAR) AS c{i}_min",
                    f"CAST(MAX({col}) AS VARCHAR) AS c{i}_max",
                ]
        if self.key:
            cols = ", ".join(f'"{k}"' for k in self.key)
            any_null = " OR ".join(f'"{k}" IS NULL' for k in self.key)
            parts += [
                f"COUNT(*) FILTER (WHERE {any_null}) AS key_nulls",
                f"COUNT(DISTINCT ({cols})) FILTER (WHERE NOT ({any_null})) AS key_distinct",
            ]
        select = ",\n  ".join(parts)
        return f'SELECT\n  {select}\nFROM "{dept}"."{table}"', params

    def read(self, columns: tuple[str, ...], row: tuple[object, ...]) -> DatasetProfile:
        """The profile from the query's one output row."""
        values = dict(zip(columns, row, strict=True))

        def count(name: str) -> int:
            value = values.get(name)
            if type(value) is not int or value < 0:
                raise SandboxBug(f"profile field {name} is not a count")
            return value

        rows = count("n_rows")
        out = []
        for i, c in enumerate(self.columns):
            has_domain = c.domain is not None or c.pattern is not None
            low = values.get(f"c{i}_min") if c.public else None
            high = values.get(f"c{i}_max") if c.public else None
            out.append(
                ColumnProfile(
                    name=c.name,
                    nulls=rows - count(f"c{i}_present"),
                    distinct=count(f"c{i}_distinct"),
                    outside_domain=count(f"c{i}_out") if has_domain else None,
                    min=low if isinstance(low, str) else None,
                    max=high if isinstance(high, str) else None,
                )
            )
        key_nulls = count("key_nulls") if self.key else None
        duplicates = None
        if self.key:
            assert key_nulls is not None
            duplicates = rows - key_nulls - count("key_distinct")
        return DatasetProfile(
            rows=rows,
            columns=tuple(out),
            key=self.key,
            key_nulls=key_nulls,
            key_duplicates=duplicates,
        )

    def screened(self, profile: DatasetProfile) -> DatasetProfile:
        """``profile`` with MIN/MAX kept only for the columns this request marks public (the
        gateway applies it to what a worker process sends back: defence in depth)."""
        public = {c.name for c in self.columns if c.public}
        return DatasetProfile(
            rows=profile.rows,
            key=profile.key,
            key_nulls=profile.key_nulls,
            key_duplicates=profile.key_duplicates,
            columns=tuple(
                c
                if c.name in public
                else ColumnProfile(c.name, c.nulls, c.distinct, c.outside_domain)
                for c in profile.columns
            ),
        )

    # --- over the process boundary ------------------------------------------------------

    def encode(self) -> dict[str, Any]:
        return {
            "dataset_id": self.dataset_id,
            "key": list(self.key),
            "columns": [
                {
                    "name": c.name,
                    "public": c.public,
                    "domain": None if c.domain is None else list(c.domain),
                    "pattern": c.pattern,
                }
                for c in self.columns
            ],
        }

    @classmethod
    def decode(cls, data: dict[str, Any]) -> ProfileRequest:
        try:
            return cls(
                dataset_id=data["dataset_id"],
                key=tuple(data["key"]),
                columns=tuple(
                    ColumnCheck(
                        name=c["name"],
                        public=c["public"] is True,
                        domain=None if c["domain"] is None else tuple(c["domain"]),
                        pattern=c["pattern"],
                    )
                    for c in data["columns"]
                ),
            )
        except (KeyError, TypeError) as exc:
            raise SandboxBug("malformed profile request") from exc


@dataclass(frozen=True, slots=True)
class ColumnProfile:
    name: str
    nulls: int
    distinct: int
    outside_domain: int | None  # None: the column has no declared domain
    min: str | None = None  # public columns only
    max: str | None = None


@dataclass(frozen=True, slots=True)
class DatasetProfile:
    """Counts only (and MIN/MAX of public columns): nothing else of the data."""

    rows: int
    columns: tuple[ColumnProfile, ...]
    key: tuple[str, ...] = ()
    key_nulls: int | None = None
    key_duplicates: int | None = None  # rows whose (non-NULL) key another row also has

    def column(self, name: str) -> ColumnProfile | None:
        return next((c for c in self.columns if c.name == name), None)

    def encode(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "key": list(self.key),
            "key_nulls": self.key_nulls,
            "key_duplicates": self.key_duplicates,
            "columns": [
                {
                    "name": c.name,
                    "nulls": c.nulls,
                    "distinct": c.distinct,
                    "outside_domain": c.outside_domain,
                    "min": c.min,
                    "max": c.max,
                }
                for c in self.columns
            ],
        }

    @classmethod
    def decode(cls, data: dict[str, Any]) -> DatasetProfile:
        try:
            return cls(
                rows=int(data["rows"]),
                key=tuple(data["key"]),
                key_nulls=data["key_nulls"],
                key_duplicates=data["key_duplicates"],
                columns=tuple(
                    ColumnProfile(
                        name=str(c["name"]),
                        nulls=int(c["nulls"]),
                        distinct=int(c["distinct"]),
                        outside_domain=c["outside_domain"],
                        min=c["min"],
                        max=c["max"],
                    )
                    for c in data["columns"]
                ),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise SandboxBug("malformed profile") from exc

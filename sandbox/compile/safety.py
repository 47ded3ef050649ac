"""Static safety checks on a parsed template (sqlglot trees; never regular expressions).

- ``check_nodes``: every node of the tree must be of an allowed class (an allow-list of
  read-only query structure, operators and functions); statements that change anything,
  table functions, file readers and metadata functions are refused with a specific reason.
- ``check_tables``: every table is a catalogue dataset written ``<department>.<name>`` or a
  CTE defined in the query; no table functions, no quoted file names or URLs.
- ``check_placeholders``: parameters are ``:name``, declared, all used, and only stand for
  values (not in LIMIT/OFFSET, ORDER BY, GROUP BY, window specs, table or type positions).
- ``check_literals``: no string literal that names a file or a URL (a path, ``scheme://``,
  a data-file extension): nothing in a template may point an engine at storage.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping

from sqlglot import exp

from sandbox.errors import TemplateRejected
from sandbox.schema import TableSchema

# fmt: off
ALLOWED_NODES: frozenset[type[exp.Expr]] = frozenset({
    exp.Select, exp.From, exp.Join, exp.Where, exp.Group, exp.Having, exp.Qualify, exp.Order,
    exp.Ordered, exp.Limit, exp.Offset, exp.Subquery, exp.Union, exp.Intersect, exp.Except,
    exp.With, exp.CTE, exp.Table, exp.TableAlias, exp.Alias, exp.Column, exp.Identifier, exp.Star,
    exp.Literal, exp.Null, exp.Boolean, exp.Placeholder, exp.Paren, exp.Tuple, exp.Distinct,
    exp.Filter, exp.Window, exp.WindowSpec, exp.WithinGroup, exp.Interval, exp.Var, exp.DataType,
    exp.DataTypeParam, exp.Cast, exp.TryCast, exp.Case, exp.If, exp.Exists, exp.Any, exp.All,
    exp.In, exp.Between, exp.Is, exp.Not, exp.And, exp.Or, exp.Xor, exp.EQ, exp.NEQ, exp.GT,
    exp.GTE, exp.LT, exp.LTE, exp.NullSafeEQ, exp.NullSafeNEQ, exp.Like, exp.ILike,
    exp.RegexpLike, exp.RegexpExtract, exp.Add, exp.Sub, exp.Mul, exp.Div, exp.IntDiv, exp.Mod,
    exp.Neg, exp.Coalesce, exp.Nullif, exp.Greatest, exp.Least, exp.Abs, exp.Round, exp.Floor,
    exp.Ceil, exp.Sqrt, exp.Ln, exp.Log, exp.Exp, exp.Pow, exp.Sign, exp.Concat, exp.DPipe,
    exp.ConcatWs, exp.Lower, exp.Upper, exp.Trim, exp.Substring, exp.Length, exp.Replace,
    exp.StrPosition, exp.Left, exp.Right, exp.Pad, exp.Initcap, exp.Extract, exp.Year, exp.Month,
    exp.Day, exp.Quarter, exp.Week, exp.DayOfWeek, exp.DayOfMonth, exp.DayOfYear,
    exp.TimestampTrunc, exp.DateTrunc, exp.CurrentDate, exp.DateAdd, exp.DateSub, exp.DateDiff,
    exp.TsOrDsAdd, exp.TsOrDsToDate, exp.TsOrDsDiff, exp.StrToDate, exp.Count, exp.CountIf,
    exp.Sum, exp.Avg, exp.Min, exp.Max, exp.Stddev, exp.StddevPop, exp.StddevSamp, exp.Variance,
    exp.VariancePop, exp.Median, exp.PercentileCont, exp.PercentileDisc, exp.Quantile,
    exp.ApproxDistinct, exp.ApproxQuantile, exp.AnyValue, exp.First, exp.Last, exp.GroupConcat,
    exp.ArrayAgg, exp.Corr, exp.CovarPop, exp.CovarSamp, exp.LogicalAnd, exp.LogicalOr,
    exp.RowNumber, exp.Rank, exp.DenseRank, exp.PercentRank, exp.CumeDist, exp.Ntile, exp.Lag,
    exp.Lead, exp.FirstValue, exp.LastValue, exp.NthValue,
})
# fmt: on
# Functions sqlglot does not model (exp.Anonymous) that templates may call. Empty on purpose.
ALLOWED_ANONYMOUS: frozenset[str] = frozenset()
# Refused with a specific reason (the allow-list refuses them anyway).
DENIED_FUNCTIONS = frozenset(
    {
        "getenv",
        "current_setting",
        "glob",
        "query",
        "query_table",
        "sql_auto_complete",
        "read_text",
        "read_blob",
        "read_csv",
        "read_csv_auto",
        "read_parquet",
        "read_json",
        "read_json_auto",
        "read_ndjson",
        "parquet_scan",
        "parquet_metadata",
        "parquet_schema",
        "sniff_csv",
        "range",
        "generate_series",
        "unnest",
        "version",
        "pragma_version",
    }
)
_DENIED_PREFIXES = ("duckdb_", "pragma_", "read_", "parquet_", "iceberg_", "delta_")
# fmt: off
_WRITES: tuple[type[exp.Expr], ...] = (
    exp.Insert, exp.Update, exp.Delete, exp.Merge, exp.Create, exp.Drop, exp.Alter, exp.Copy,
    exp.Pragma, exp.Set, exp.SetItem, exp.Command, exp.Into, exp.Use, exp.Describe, exp.Show,
    exp.Attach, exp.Detach, exp.Export, exp.Install, exp.TruncateTable, exp.Transaction,
    exp.Commit, exp.Rollback, exp.LoadData, exp.Cache, exp.Uncache, exp.Refresh, exp.Analyze,
)
# fmt: on
_VAR_PARENTS = (
    exp.Interval,
    exp.Extract,
    exp.TimestampTrunc,
    exp.DateTrunc,
    exp.DateDiff,
    exp.DateAdd,
    exp.DateSub,
    exp.TsOrDsAdd,
    exp.TsOrDsDiff,
)  # fmt: skip
_NO_PLACEHOLDER = (exp.Limit, exp.Offset, exp.Fetch, exp.Order, exp.Group, exp.Table,
                   exp.TableAlias, exp.DataType)  # fmt: skip
_TABLE_FUNCTIONS = (
    "table functions (read_parquet, read_csv, range, …) are not allowed; read catalogue "
    "datasets as <department>.<name>"
)
# A literal naming a URL (scheme://, s3:, hf:, …), an absolute or home path, a Windows drive,
# or a file by a data-file extension.
_FILE_OR_URL = re.compile(
    r"(?i)^\s*([a-z][a-z0-9+.-]*://|[a-z][a-z0-9+.-]*:[^ ]*/|[/~\\]|[a-z]:[\\/]|\.\.?[\\/])"
    r"|\.(parquet|csv|tsv|json|ndjson|jsonl|db|duckdb|sqlite|arrow|feather|xlsx?|txt|gz|zst)\s*$"
)
_TABLE_PART = re.compile(r"[a-z][a-z0-9_]{0,62}")
_PLACEHOLDER = re.compile(r"[a-z][a-z0-9_]{0,62}")


def _label(node: exp.Expr) -> str:
    if isinstance(node, exp.Func):
        return f"function {node.sql_name().lower()}"
    return f"{node.key.upper()}"


def check_nodes(tree: exp.Expr) -> None:
    """Refuse any node that is not on the allow-list, with the most specific reason."""
    for node in tree.walk():
        if isinstance(node, exp.Func) and isinstance(node.parent, exp.Table):
            raise TemplateRejected(_TABLE_FUNCTIONS)
        if isinstance(node, _WRITES):
            raise TemplateRejected(
                f"{_label(node)} is not allowed: a template is one read-only SELECT"
            )
        if isinstance(node, exp.Anonymous):
            name = node.name.lower()
            if name in DENIED_FUNCTIONS or name.startswith(_DENIED_PREFIXES):
                raise TemplateRejected(
                    f"function {name} is never allowed: it reads files, settings or metadata "
                    "or generates rows"
                )
            if name not in ALLOWED_ANONYMOUS:
                raise TemplateRejected(f"function {name} is not on the sandbox's allow-list")
            continue
        if isinstance(node, exp.Parameter):
            raise TemplateRejected("write parameters as :name")
        if type(node) not in ALLOWED_NODES:
            raise TemplateRejected(f"{_label(node)} is not allowed in templates")
        if isinstance(node, exp.Var) and not isinstance(node.parent, _VAR_PARENTS):
            raise TemplateRejected(f"the bare word {node.name} is not allowed here")
        if isinstance(node, exp.With) and node.args.get("recursive"):
            raise TemplateRejected("recursive CTEs (WITH RECURSIVE) are not allowed")
        if isinstance(node, exp.Star) and not isinstance(node.parent, exp.Count):
            raise TemplateRejected("SELECT * is not allowed: list the columns you need")


def check_literals(tree: exp.Expr) -> None:
    """Refuse string literals that name files or URLs."""
    for node in tree.find_all(exp.Literal):
        if node.is_string and _FILE_OR_URL.search(node.this):
            raise TemplateRejected(
                "string literals naming files or URLs are not allowed: templates read only "
                "catalogue datasets"
            )


def check_tables(tree: exp.Expr, tables: Mapping[str, TableSchema]) -> tuple[str, ...]:
    """Check every table reference; return the catalogue datasets read, sorted."""
    ctes = {cte.alias_or_name.lower() for cte in tree.find_all(exp.CTE)}
    used: set[str] = set()
    for table in tree.find_all(exp.Table):
        if not isinstance(table.this, exp.Identifier):
            raise TemplateRejected(_TABLE_FUNCTIONS)
        parts = [p.lower() for p in (table.catalog, table.db, table.name) if p]
        if not all(_TABLE_PART.fullmatch(p) for p in parts):
            raise TemplateRejected(
                "tables must be catalogue datasets <department>.<name>, not files, URLs or "
                "quoted names"
            )
        if len(parts) == 1 and parts[0] in ctes:
            continue
        dataset_id = ".".join(parts)
        if len(parts) != 2:
            raise TemplateRejected(
                f"table {dataset_id} must be written <department>.<name> (or be a CTE name)"
            )
        if dataset_id not in tables:
            raise TemplateRejected(f"table {dataset_id} is not a dataset this template declares")
        used.add(dataset_id)
    if not used:
        raise TemplateRejected("the query reads no catalogue dataset")
    return tuple(sorted(used))


def check_placeholders(tree: exp.Expr, declared: Collection[str]) -> tuple[str, ...]:
    """Check parameter use; return the parameter names, sorted."""
    used: set[str] = set()
    for node in tree.find_all(exp.Placeholder):
        name = node.name
        if not name or not _PLACEHOLDER.fullmatch(name):
            raise TemplateRejected("write parameters as :name (lowercase letters, digits, _)")
        child: exp.Expr = node
        while (parent := child.parent) is not None:
            in_window_spec = isinstance(parent, exp.Window) and child.arg_key != "this"
            if isinstance(parent, _NO_PLACEHOLDER) or in_window_spec:
                raise TemplateRejected(
                    f"parameter :{name} is used in {parent.key.upper()}; parameters may only "
                    "stand for values, not in LIMIT/OFFSET, ORDER BY, GROUP BY, window specs "
                    "or as table, column or type names"
                )
            child = parent
        used.add(name)
    undeclared = sorted(used - set(declared))
    if undeclared:
        raise TemplateRejected(f"parameter :{undeclared[0]} is used but not declared")
    unused = sorted(set(declared) - used)
    if unused:
        raise TemplateRejected(f"parameter {unused[0]} is declared but never used")
    return tuple(sorted(used))

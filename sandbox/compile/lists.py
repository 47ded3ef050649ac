"""Rules for LIST templates: row-level output of non-personal columns only.

A LIST releases rows (say, the enterprise codes a registry-vs-tax comparison finds), so:

- every output column is a plain column of a catalogue table (optionally renamed), read
  directly in the top-level FROM -- no expression, function, aggregate, CTE or derived table
  can launder another column into the output;
- that column is marked ``personal: false`` by its owner and is not ``sensitive``;
- parameters are never put against an identifier column (no targeted lookups: that is
  ``verify``), checked by ``compile_aggregate.check_identifier_parameters``.

Comparisons with other datasets go in WHERE (EXISTS / NOT EXISTS / IN (subquery)).
"""

from __future__ import annotations

from collections.abc import Mapping

from sqlglot import exp
from sqlglot.optimizer.scope import Scope

from sandbox.errors import TemplateRejected
from sandbox.schema import Sensitivity, TableSchema


def check_list_outputs(
    root: Scope, names: tuple[str, ...], tables: Mapping[str, TableSchema]
) -> None:
    select = root.expression
    if not isinstance(select, exp.Select):
        raise TemplateRejected("a list template is one SELECT")
    if select.args.get("group") or select.args.get("having"):
        raise TemplateRejected("a list template releases rows: no GROUP BY or HAVING")
    for name, projection in zip(names, select.expressions, strict=True):
        column = projection.unalias()
        if not isinstance(column, exp.Column):
            raise TemplateRejected(
                f"output column {name} of a list template must be a plain catalogue column "
                "(no expressions, functions or aggregates)"
            )
        source = root.sources.get(column.table)
        if not isinstance(source, exp.Table):
            raise TemplateRejected(
                f"output column {name} of a list template must come straight from a catalogue "
                "table in FROM (not a CTE or derived table)"
            )
        schema = tables.get(f"{source.db}.{source.name}".lower())
        found = schema.column(column.name) if schema is not None else None
        if found is None or found.personal:
            raise TemplateRejected(
                f"output column {name} is personal data (or not marked personal: false by its "
                "owner): a list template releases only non-personal columns"
            )
        if found.sensitivity is Sensitivity.SENSITIVE:
            raise TemplateRejected(
                f"output column {name} is sensitive: a list template may not release it row by row"
            )

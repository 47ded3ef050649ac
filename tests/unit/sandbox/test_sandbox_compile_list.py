"""LIST compilation: whatever the projection, a compiled list releases only plain columns
marked non-personal and not sensitive (a property over generated projections)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from sandbox import (
    Column,
    Sensitivity,
    TableSchema,
    TemplateKind,
    TemplateRejected,
    compile_template,
)

REG = "market.registry"
COLUMNS = (
    Column("code", "VARCHAR", Sensitivity.IDENTIFIER, personal=False),
    Column("district", "VARCHAR", Sensitivity.PUBLIC, personal=False),
    Column("revenue", "DOUBLE", Sensitivity.SENSITIVE, personal=False),
    Column("owner_id", "VARCHAR", Sensitivity.IDENTIFIER),
    Column("owner_age", "INTEGER", Sensitivity.QUASI_IDENTIFIER),
)
TABLES = {REG: TableSchema(REG, COLUMNS)}
RELEASABLE = {"code", "district"}
WRAPPERS = (
    "r.{c}",
    "r.{c} AS x_{c}",
    "UPPER(r.{c}) AS u_{c}",
    "COALESCE(r.{c}, r.{c}) AS c_{c}",
    "(SELECT MAX(s.{c}) FROM market.registry AS s) AS m_{c}",
    "CASE WHEN r.{c} IS NULL THEN NULL ELSE r.{c} END AS k_{c}",
)
FROMS = (
    "FROM market.registry AS r",
    "FROM (SELECT * FROM market.registry) AS r",
    "FROM (SELECT t.code, t.district, t.revenue, t.owner_id, t.owner_age "
    "FROM market.registry AS t) AS r",
)


@settings(max_examples=150, deadline=None)
@given(
    picks=st.lists(
        st.tuples(st.sampled_from([c.name for c in COLUMNS]), st.sampled_from(WRAPPERS)),
        min_size=1,
        max_size=4,
        unique_by=lambda p: p[0],
    ),
    source=st.sampled_from(FROMS),
)
def test_a_compiled_list_releases_only_non_personal_plain_columns(
    picks: list[tuple[str, str]], source: str
) -> None:
    projection = ", ".join(wrapper.format(c=column) for column, wrapper in picks)
    try:
        compiled = compile_template(f"SELECT {projection} {source}", kind=TemplateKind.LIST,
                                    tables=TABLES, parameters={}, count_column=None)  # fmt: skip
    except TemplateRejected:
        return
    assert source == FROMS[0]
    for column, wrapper in picks:
        assert column in RELEASABLE
        assert wrapper in ("r.{c}", "r.{c} AS x_{c}")
    assert len(compiled.output_columns) == len(picks)

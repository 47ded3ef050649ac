"""Range parameters: [from, to] bound as two values, at least `min_width` wide."""

from __future__ import annotations

from datetime import date

import pytest

from sandbox import (
    Column,
    ParameterError,
    ParameterSpec,
    ParamType,
    Sensitivity,
    TableSchema,
    TemplateKind,
    TemplateRejected,
    compile_template,
    validate_parameters,
)

YEARS = ParameterSpec("years", ParamType.INTEGER_RANGE, min=2015, max=2030, min_width=3)
DAYS = ParameterSpec("period", ParamType.DATE_RANGE, min="2020-01-01", min_width=28)
RES = "civil.residents"
SCHEMA = TableSchema(
    RES,
    (
        Column("district", "VARCHAR", Sensitivity.PUBLIC),
        Column("birth_year", "INTEGER", Sensitivity.QUASI_IDENTIFIER),
    ),
)


def test_a_range_binds_two_values() -> None:
    assert YEARS.bound_names == ("years_from", "years_to")
    assert validate_parameters({"years": YEARS}, {"years": [2018, 2021]}) == {
        "years_from": 2018,
        "years_to": 2021,
    }
    assert validate_parameters(
        {"period": DAYS}, {"period": {"from": "2024-01-01", "to": "2024-03-01"}}
    ) == {
        "period_from": date(2024, 1, 1),
        "period_to": date(2024, 3, 1),
    }


@pytest.mark.parametrize(
    "value",
    [[2018, 2020], [2021, 2018], [2010, 2020], [2018], [2018, "2022"], 2018, [True, 2022],
     {"from": 2018}],
)  # fmt: skip
def test_narrow_reversed_or_malformed_ranges_are_refused(value: object) -> None:
    with pytest.raises(ParameterError, match="at least 3 years wide"):
        validate_parameters({"years": YEARS}, {"years": value})


def test_a_range_must_declare_its_minimum_width() -> None:
    with pytest.raises(TemplateRejected, match="min_width"):
        ParameterSpec("years", ParamType.INTEGER_RANGE, min=2015, max=2030)
    with pytest.raises(TemplateRejected, match="min_width"):
        ParameterSpec.from_mapping("n", {"type": "integer", "min_width": 2})


def test_a_range_on_a_quasi_identifier_compiles_and_binds_its_two_names() -> None:
    q = compile_template(
        f"SELECT p.district, COUNT(*) AS n FROM {RES} AS p "
        "WHERE p.birth_year BETWEEN :years_from AND :years_to GROUP BY p.district",
        kind=TemplateKind.AGGREGATE,
        tables={RES: SCHEMA},
        parameters={"years": YEARS},
        count_column="n",
    )
    assert q.parameters == ("years_from", "years_to")
    with pytest.raises(TemplateRejected, match="never used"):
        compile_template(
            f"SELECT p.district, COUNT(*) AS n FROM {RES} AS p "
            "WHERE p.birth_year >= :years_from GROUP BY p.district",
            kind=TemplateKind.AGGREGATE,
            tables={RES: SCHEMA},
            parameters={"years": YEARS},
            count_column="n",
        )

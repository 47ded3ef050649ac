"""Parameter domains: spec validation, strict value validation, catastrophic regex refusal."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sandbox import (
    ParameterError,
    ParameterSpec,
    ParamType,
    SandboxBug,
    TemplateRejected,
    validate_parameters,
)
from sandbox.params._domains import MAX_STRING_LENGTH
from sandbox.params._regex_guard import pattern_problem

YEAR = ParameterSpec("year", ParamType.INTEGER, min=2015, max=2030)


def spec(name: str, **mapping: object) -> dict[str, ParameterSpec]:
    return {name: ParameterSpec.from_mapping(name, mapping)}


def test_valid_values_are_converted_for_binding() -> None:
    specs = {
        "year": YEAR,
        "share": ParameterSpec("share", ParamType.NUMBER, min="0", max="1.5"),
        "name": ParameterSpec("name", ParamType.STRING, pattern=r"[A-Z]{2}\d{4}"),
        "day": ParameterSpec("day", ParamType.DATE, min="2024-01-01"),
        "flag": ParameterSpec("flag", ParamType.BOOLEAN),
    }
    values = {"year": 2024, "share": 0.1, "name": "AB1234", "day": "2024-02-29", "flag": True}
    assert validate_parameters(specs, values) == {
        "year": 2024,
        "share": Decimal("0.1"),
        "name": "AB1234",
        "day": date(2024, 2, 29),
        "flag": True,
    }


def test_integer_is_accepted_for_a_number_parameter() -> None:
    result = validate_parameters(spec("x", type="number"), {"x": 3})
    assert result == {"x": Decimal(3)}
    assert isinstance(result["x"], Decimal)


def test_error_names_parameter_and_rule() -> None:
    with pytest.raises(ParameterError) as caught:
        validate_parameters({"year": YEAR}, {"year": 2031})
    assert caught.value.parameter == "year"
    assert str(caught.value) == "parameter 'year' must be an integer from 2015 to 2030"


@pytest.mark.parametrize(
    ("mapping", "value"),
    [
        ({"type": "integer"}, True),  # bool is not an integer
        ({"type": "integer"}, "2024"),  # a string is not an integer
        ({"type": "integer"}, 2024.0),
        ({"type": "integer", "min": 2015, "max": 2030}, 2014),
        ({"type": "integer", "values": [1, 2, 3]}, 4),
        ({"type": "number"}, "1.5"),
        ({"type": "number"}, False),
        ({"type": "number"}, float("nan")),
        ({"type": "number"}, Decimal("1e-30")),  # more than 18 decimals
        ({"type": "number"}, 10**19),  # more than 18 digits
        ({"type": "number", "max": "0.5"}, 0.51),
        ({"type": "string"}, 5),
        ({"type": "string"}, "x" * 257),
        ({"type": "string", "max_length": 3}, "abcd"),
        ({"type": "string", "values": ["a", "b"]}, "c"),
        ({"type": "string", "pattern": "[a-z]+"}, "abc1"),  # full match, not search
        ({"type": "string"}, "nul\x00byte"),
        ({"type": "date"}, "2024-02-30"),
        ({"type": "date"}, "20240101"),
        ({"type": "date"}, 20240101),
        ({"type": "date", "max": "2024-12-31"}, "2025-01-01"),
        ({"type": "boolean"}, 1),
        ({"type": "boolean"}, "true"),
    ],
)
def test_value_outside_domain_is_rejected(mapping: dict[str, object], value: object) -> None:
    with pytest.raises(ParameterError) as caught:
        validate_parameters(spec("p", **mapping), {"p": value})
    assert caught.value.parameter == "p"


def test_missing_parameter_is_rejected() -> None:
    with pytest.raises(ParameterError, match="'year' is required: an integer from 2015"):
        validate_parameters({"year": YEAR}, {})


def test_extra_parameter_is_rejected() -> None:
    with pytest.raises(ParameterError, match="'month' is not a parameter of this template"):
        validate_parameters({"year": YEAR}, {"year": 2020, "month": 1})


def test_unresolved_values_from_is_a_bug() -> None:
    specs = spec("industry", type="string", values_from="market.enterprise_registry.industry")
    with pytest.raises(SandboxBug, match="did not resolve"):
        validate_parameters(specs, {"industry": "retail"})


def test_resolved_values_from_is_enforced() -> None:
    base = spec("industry", type="string", values_from="market.enterprise_registry.industry")
    specs = {"industry": base["industry"].resolved(("mining", "retail"))}
    assert validate_parameters(specs, {"industry": "retail"}) == {"industry": "retail"}
    with pytest.raises(ParameterError, match="one of 'mining', 'retail'"):
        validate_parameters(specs, {"industry": "farming"})


@given(st.text(min_size=1, max_size=40))
def test_error_never_echoes_the_value(text: str) -> None:
    value = f"QX{text}ZQ"
    for specs in (
        {"year": YEAR},
        spec("s", type="string", values=["a"]),
        spec("s", type="string", pattern="[a-z]{1,3}"),
    ):
        name = next(iter(specs))
        with pytest.raises(ParameterError) as caught:
            validate_parameters(specs, {name: value})
        assert value not in str(caught.value)
        assert "QX" not in str(caught.value)


@pytest.mark.parametrize(
    ("mapping", "message"),
    [
        ({"type": "integer", "minimum": 1}, "unknown key"),
        ({"type": "float"}, "type must be one of"),
        ({"type": "integer", "min": 5, "max": 1}, "min must not be greater than max"),
        ({"type": "integer", "min": "5"}, "min/max must be an integer"),
        ({"type": "integer", "pattern": "[0-9]+"}, "cannot be used with type integer"),
        ({"type": "boolean", "values": [True]}, "cannot be used with type boolean"),
        ({"type": "string", "values": ["a", 1]}, "must all be strings"),
        ({"type": "string", "values": []}, "non-empty"),
        ({"type": "string", "values": ["a", "a"]}, "must not repeat"),
        ({"type": "string", "values": ["a"], "pattern": "a"}, "either values or"),
        ({"type": "string", "values_from": "market.registry"}, "<department>.<dataset>"),
        ({"type": "string", "max_length": 1000}, "max_length must be an integer from 1"),
        ({"type": "date", "min": "2024-13-01"}, "ISO date"),
        ({"type": "string", "pattern": "("}, "not a valid regular expression"),
    ],
)
def test_bad_spec_is_rejected(mapping: dict[str, object], message: str) -> None:
    with pytest.raises(TemplateRejected, match=message):
        ParameterSpec.from_mapping("p", mapping)


def test_spec_from_yaml_values() -> None:
    """YAML gives dates as datetime.date and decimals as float; both are accepted."""
    day = ParameterSpec.from_mapping("d", {"type": "date", "min": date(2024, 1, 1)})
    assert day.min == "2024-01-01"
    share = ParameterSpec.from_mapping("s", {"type": "number", "min": 0.1})
    assert share.min == "0.1"


def test_bad_parameter_name_is_rejected() -> None:
    with pytest.raises(TemplateRejected, match="parameter name"):
        ParameterSpec("Year; DROP", ParamType.INTEGER)


@pytest.mark.parametrize(
    "pattern",
    [
        r"(a+)+$",
        r"(a|aa)*b",
        r"((a|b))+",
        r"(\w+\s?)*$",
        r"(.*a){20}",
        r"\d*\d*\d*\d*x",
        r"(a)\1",
        r"(?P<x>a)(?P=x)",
        r"(?=a)a",
    ],
)
def test_catastrophic_pattern_is_refused(pattern: str) -> None:
    with pytest.raises(TemplateRejected, match="pattern"):
        ParameterSpec("p", ParamType.STRING, pattern=pattern)


@pytest.mark.parametrize(
    "pattern",
    [r"[A-Z]{2}\d{6}", r"\d{4}-\d{2}-\d{2}", r"[a-z]+(?:-[a-z]+)?", r"(?i)[a-z_]{1,64}"],
)
@pytest.mark.timeout(60)  # a watchdog, not a ceiling: a catastrophic pattern runs for years
def test_accepted_patterns_refuse_hostile_input(pattern: str) -> None:
    """Speed is the guard's property (no nested or alternated repetition, at most 3 unbounded
    repetitions, values of at most 256 characters: polynomial), not a wall-clock measurement;
    `test_catastrophic_pattern_is_refused` checks the guard refuses what could backtrack."""
    assert pattern_problem(pattern) is None
    specs = {"p": ParameterSpec("p", ParamType.STRING, pattern=pattern)}
    hostile = "a" * 200 + "-" + "1" * 54 + "!"
    assert len(hostile) == MAX_STRING_LENGTH
    with pytest.raises(ParameterError):
        validate_parameters(specs, {"p": hostile})


@pytest.mark.parametrize("value", [2**63, -(2**63) - 1, 2**70])
def test_an_unbounded_integer_parameter_still_fits_64_bits(value: int) -> None:
    """Issue 14: an integer no engine can bind is a bad parameter, not a store or engine error."""
    specs = {"n": ParameterSpec("n", ParamType.INTEGER)}
    with pytest.raises(ParameterError):
        validate_parameters(specs, {"n": value})
    assert validate_parameters(specs, {"n": 2**63 - 1}) == {"n": 2**63 - 1}

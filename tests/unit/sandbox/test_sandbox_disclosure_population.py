"""Population sketches (IBLT) and the derived disclosure queries, on real DuckDB."""

from __future__ import annotations

import random
from pathlib import Path
from unittest import mock

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sandbox import (
    Column,
    DuckDBEngine,
    ParameterSpec,
    SandboxBug,
    Sensitivity,
    TableSchema,
    TableSource,
    TemplateKind,
    TemplateRejected,
    compile_template,
)
from sandbox.compile.auxiliary import POPULATION_KEYS, population_params
from sandbox.compile.disclosure import base_table, derive_disclosure_queries, uniqueness_query
from sandbox.disclosure import population
from sandbox.disclosure.population import (
    PopulationSketch,
    cells_of,
    check_for,
    check_of,
    difference_size,
)

K = 10
CELLS = 2 * K
DATASET = "civil.people"
TABLES = {
    DATASET: TableSchema(
        DATASET,
        (
            Column("person_id", "VARCHAR", Sensitivity.IDENTIFIER),
            Column("age", "BIGINT", Sensitivity.QUASI_IDENTIFIER),
            Column("district", "VARCHAR", Sensitivity.PUBLIC),
            Column("income", "BIGINT", Sensitivity.SENSITIVE),
        ),
    )
}
AGE = {
    name: ParameterSpec.from_mapping(name, {"type": "integer", "min": 0, "max": 120})
    for name in ("lo", "hi")
}

hash_sets = st.sets(st.integers(min_value=0, max_value=2**64 - 1), max_size=300)


@settings(max_examples=200, deadline=None)
@given(hash_sets, hash_sets)
def test_a_difference_of_fewer_than_k_units_is_always_reported(a: set[int], b: set[int]) -> None:
    """Even for hashes chosen to collide (which keyed hashes make unlikely): fail closed."""
    size = difference_size(
        PopulationSketch.from_hashes(CELLS, a), PopulationSketch.from_hashes(CELLS, b), limit=K
    )
    true = len(a ^ b)
    if true == 0:
        assert size == 0
    elif true < K:
        assert size is not None and 1 <= size < 2 * K


@settings(max_examples=100, deadline=None)
@given(hash_sets, st.data())
def test_removing_fewer_than_k_units_is_always_detected(
    base: set[int], data: st.DataObject
) -> None:
    removed = data.draw(st.sets(st.sampled_from(sorted(base)), max_size=K - 1)) if base else set()
    size = difference_size(
        PopulationSketch.from_hashes(CELLS, base),
        PopulationSketch.from_hashes(CELLS, base - removed),
        limit=K,
    )
    assert (size == 0) if not removed else (size is not None and size >= 1)


def test_with_uniform_hashes_sizes_are_exact_and_large_differences_pass() -> None:
    """Keyed hashes are uniform: small differences decode exactly; large ones are released.

    Fixed seed, 200 trials per size; the bound on false withholds is loose on purpose.
    """
    rng = random.Random(5)
    for true in (1, 5, K - 1, K, 3 * K, 10 * K):
        exact = withheld = 0
        for _ in range(200):
            common = {rng.getrandbits(64) for _ in range(50)}
            extra = {rng.getrandbits(64) for _ in range(true)}
            size = difference_size(
                PopulationSketch.from_hashes(CELLS, common | extra),
                PopulationSketch.from_hashes(CELLS, common),
                limit=K,
            )
            exact += size == (true if true < K else None)
            withheld += size is not None
        if true < K:
            assert withheld == 200 and exact >= 195
        else:
            assert withheld <= 10, (true, withheld)


def test_sketches_survive_storage() -> None:
    sketch = PopulationSketch.from_hashes(CELLS, range(1000, 1100))
    stored = PopulationSketch.from_bytes(CELLS, sketch.units, sketch.to_bytes())
    assert stored == sketch and stored.units == 100


@pytest.fixture
def people(tmp_path: Path) -> dict[str, TableSource]:
    path = tmp_path / "people.parquet"
    n = 200
    pq.write_table(
        pa.table(
            {
                # every person has two rows: a row count is not a unit count
                "person_id": [f"P{i % (n // 2):03d}" for i in range(n)],
                "age": [20 + (i % (n // 2)) % 50 for i in range(n)],
                "district": [f"d{(i % (n // 2)) % 3}" for i in range(n)],
                "income": [100 * (i % 7) for i in range(n)],
            }
        ),
        path,
    )
    return {DATASET: TableSource(DATASET, "parquet", path)}


def keyed_hash(secret: str, unit: str) -> int:
    """What the engine computes: hash(hash(hash(u) ^ k1) ^ k2) with DuckDB's hash."""
    k1, k2 = population_params(secret).values()
    with duckdb.connect() as con:  # its own: not the module's shared default connection
        (raw,) = con.execute("SELECT hash($u)", {"u": unit}).fetchone()  # type: ignore[misc]
    return check_of(check_of(raw ^ k1) ^ k2)  # type: ignore[operator]


@pytest.mark.parametrize("value", [0, 1, 42, 2**63 + 5, 2**64 - 1, 123456789])
def test_the_check_function_is_duckdbs_integer_hash(value: int) -> None:
    with duckdb.connect() as con:
        (expected,) = con.execute(f"SELECT hash({value}::UBIGINT)").fetchone()  # type: ignore[misc]
    assert check_of(value) == expected


def test_the_engine_computes_the_same_sketch_and_counts_distinct_units(
    people: dict[str, TableSource],
) -> None:
    query = compile_template(
        "SELECT p.district, COUNT(*) AS n, SUM(p.income) AS income FROM civil.people AS p "
        "WHERE p.age BETWEEN :lo AND :hi GROUP BY p.district",
        kind=TemplateKind.AGGREGATE,
        tables=TABLES,
        parameters=AGE,
        count_column="n",
    )
    assert base_table(query) == DATASET
    derived = derive_disclosure_queries(
        query, unit="person_id", top_n=2, cells_per_hash=CELLS, max_groups=100
    )
    assert derived.magnitudes == ("income",)
    assert derived.populations is not None
    assert set(POPULATION_KEYS) <= set(derived.populations.parameters)
    secret_words = population_params("secret-key")
    for word in secret_words.values():
        assert str(word) not in derived.populations.duckdb_sql  # bound, never spliced
    table, (contributors, populations, member_hashes, census) = DuckDBEngine().run_with_auxiliary(
        query, people, {"lo": 20, "hi": 69}, derived.queries, secret_words
    )
    keys = [((("district", row[0]),)) for row in table.rows]
    counted = derived.contributors_from(contributors)
    sketches = derived.sketches_from(populations, keys)
    hashes = derived.members_from(member_hashes, keys)
    # What a job does instead of the populations query: the same sketches, from the members.
    assert derived.sketches_from_members(member_hashes, hashes) == sketches
    # ... and instead of contributors and members: the census, one pass, the same answers
    assert derived.job_queries == (derived.census,)
    assert derived.contributors_from(census) == counted
    from_census = derived.members_from(census, keys)
    assert {k: h.tolist() for k, h in from_census.items()} == {
        k: h.tolist() for k, h in hashes.items()
    }
    assert derived.sketches_from_members(census, from_census) == sketches
    rows = pq.read_table(people[DATASET].path).to_pylist()
    for row in table.rows:
        key = (("district", row[0]),)
        members = {r["person_id"] for r in rows if r["district"] == row[0]}
        assert row[1] == 2 * len(members)  # the template counts rows
        assert counted[key].units == len(members)  # disclosure control counts people
        expected = PopulationSketch.from_hashes(
            CELLS, (keyed_hash("secret-key", m) for m in members)
        )
        assert sketches[key].cells == expected.cells and sketches[key].units == len(members)
        assert sketches[key].scheme.startswith("iblt3/duckdb-hash/")
        assert sorted(int(h) for h in hashes[key]) == sorted(
            keyed_hash("secret-key", m) for m in members
        )  # the atom check sees the same keyed hashes, one per unit


def test_a_parameter_inside_an_aggregate_is_refused_as_a_threshold_probe() -> None:
    with pytest.raises(TemplateRejected, match="SUM over SIGN of age"):  # at proposal
        compile_template(
            "SELECT p.district, COUNT(*) AS n, SUM(SIGN(p.age - :lo)) AS above "
            "FROM civil.people AS p GROUP BY p.district",
            kind=TemplateKind.AGGREGATE,
            tables=TABLES,
            parameters={"lo": AGE["lo"]},
            count_column="n",
        )
    public = {DATASET: TableSchema(DATASET, tuple(
        Column(c.name, c.type, Sensitivity.PUBLIC) for c in TABLES[DATASET].columns
    ))}  # fmt: skip
    query = compile_template(  # on a public column it compiles; the run-time check refuses
        "SELECT p.district, COUNT(*) AS n, SUM(SIGN(p.age - :lo)) AS above "
        "FROM civil.people AS p GROUP BY p.district",
        kind=TemplateKind.AGGREGATE,
        tables=public,
        parameters={"lo": AGE["lo"]},
        count_column="n",
    )
    with pytest.raises(TemplateRejected, match="conditional count"):
        derive_disclosure_queries(
            query, unit="person_id", top_n=2, cells_per_hash=CELLS, max_groups=100
        )


def test_a_unique_unit_skips_grouping_and_gives_the_same_figures(tmp_path: Path) -> None:
    path = tmp_path / "unique.parquet"
    pq.write_table(
        pa.table(
            {
                "person_id": [f"P{i:03d}" for i in range(90)],
                "age": [20 + i % 50 for i in range(90)],
                "district": [f"d{i % 3}" for i in range(90)],
                "income": [100 * (i % 7) for i in range(90)],
            }
        ),
        path,
    )
    sources = {DATASET: TableSource(DATASET, "parquet", path)}
    engine = DuckDBEngine()
    (counts,) = engine.run(uniqueness_query(DATASET, "person_id"), sources, {}).rows
    assert counts == (90, 90)
    query = compile_template(
        "SELECT p.district, COUNT(*) AS n, SUM(p.income) AS income FROM civil.people AS p "
        "GROUP BY p.district",
        kind=TemplateKind.AGGREGATE,
        tables=TABLES,
        parameters={},
        count_column="n",
    )
    figures = []
    for unique in (False, True):
        derived = derive_disclosure_queries(
            query,
            unit="person_id",
            top_n=2,
            cells_per_hash=CELLS,
            max_groups=100,
            unit_is_unique=unique,
        )
        assert ("GROUP BY p.district, p.person_id" in derived.contributors.duckdb_sql) != unique
        assert derived.census is not None
        assert ("GROUP BY p.district, p.person_id" in derived.census.duckdb_sql) != unique
        table, aux = engine.run_with_auxiliary(
            query, sources, {}, derived.queries, population_params("s")
        )
        keys = [(("district", row[0]),) for row in table.rows]
        figures.append((derived.contributors_from(aux[0]), derived.sketches_from(aux[1], keys)))
        assert derived.contributors_from(aux[3]) == figures[-1][0]  # the census's figures
    assert figures[0] == figures[1]


@settings(max_examples=80, deadline=None)
@given(
    st.sets(st.integers(0, 2**64 - 1), max_size=300),
    st.sampled_from(["iblt3/duckdb-hash/1", "iblt3/spark-xxhash64/2"]),
    st.integers(1, 40),
)
def test_a_sketch_from_a_hash_array_is_the_sketch_of_its_hashes(
    hashes: set[int], scheme: str, cells_per_hash: int
) -> None:
    """The vectorised sketch (what a job computes from its member hashes) equals the sketch
    built unit by unit with the scheme's check function."""
    check = check_for(scheme)
    cells: dict[int, list[int]] = {}
    for value in hashes:
        for index in cells_of(value, cells_per_hash):
            cell = cells.setdefault(index, [0, 0, 0])
            cell[0] += 1
            cell[1] ^= value
            cell[2] ^= check(value)
    array = np.array(sorted(hashes), dtype=np.uint64)
    made = PopulationSketch.from_hash_array(cells_per_hash, array, scheme)
    assert made.cells == tuple((i, *c) for i, c in sorted(cells.items()))
    assert made.units == len(hashes) and made.scheme == scheme
    # a sketch too large to fill in place sorts its units by cell instead: the same cells
    with mock.patch.object(population, "DENSE_CELLS", 0):
        assert PopulationSketch.from_hash_array(cells_per_hash, array, scheme) == made


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.sets(st.integers(0, 2**64 - 1), max_size=60), max_size=12),
    st.sampled_from(["iblt3/duckdb-hash/1", "iblt3/spark-xxhash64/2"]),
    st.integers(1, 40),
)
def test_sketches_of_many_groups_at_once_are_each_groups_sketch(
    groups: list[set[int]], scheme: str, cells_per_hash: int
) -> None:
    """A release's groups sketched in one pass (empty groups and hashes shared between groups
    among them) equal their sketches one by one, and so does the one-by-one fallback."""
    arrays = [np.array(sorted(g), dtype=np.uint64) for g in groups]
    alone = [PopulationSketch.from_hash_array(cells_per_hash, a, scheme) for a in arrays]
    assert PopulationSketch.from_hash_arrays(cells_per_hash, arrays, scheme) == alone
    with mock.patch.object(population, "DENSE_CELLS", 0):
        assert PopulationSketch.from_hash_arrays(cells_per_hash, arrays, scheme) == alone


def test_a_group_of_unsorted_hashes_is_refused_in_a_batch_too() -> None:
    ordered, unsorted = np.array([1, 5, 9], np.uint64), np.array([7, 3], np.uint64)
    with pytest.raises(SandboxBug):
        PopulationSketch.from_hash_arrays(8, [ordered, unsorted], "iblt3/duckdb-hash/1")
    with pytest.raises(SandboxBug):  # a repeated hash within a group
        PopulationSketch.from_hash_arrays(8, [np.array([4, 4], np.uint64)], "iblt3/duckdb-hash/1")
    # groups may overlap and follow each other in any order: only each group is sorted
    made = PopulationSketch.from_hash_arrays(8, [unsorted[::-1], ordered], "iblt3/duckdb-hash/1")
    assert [m.units for m in made] == [2, 3]

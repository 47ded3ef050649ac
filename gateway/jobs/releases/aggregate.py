"""`aggregate` templates: exact counts and sums per group, released through disclosure control.

One engine call runs the template and, derived from it (`sandbox.compile.disclosure`), one
query more: with a unit column the `census` — per group, in one pass, the distinct units, the
largest contributions and the keyed hashes of the units, from which the population sketches
are made here — else `contributors` (the same figures, rows counted); plus `dispersions` for
a STDDEV/VAR output. Then the release history withholds cells that difference an earlier
release (`releases.history`), the disclosure pipeline runs (`sandbox.disclosure`), the atom
check withholds groups that would let sums and differences of released cells single out fewer
than k units (`releases.partition`; repeated with the pipeline until nothing more is
withheld), and the released cells are recorded. The decision is made on a read snapshot and
recorded in a transaction holding the dataset's lock, only if no release has been recorded
since the snapshot; else it is made again in that transaction (`_Release`). The work done
does not depend on what is withheld. A repeat (every population one the caller's department
released before, every cell a union of atoms) records nothing and takes no transaction; a
population only another department released is recorded again, so the time a release takes
tells nothing about other departments' releases.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gateway import timing
from gateway.catalogue.documents import DatasetSpec
from gateway.context import Gateway
from gateway.jobs.model import JobStatus
from gateway.jobs.releases import history as release_history
from gateway.jobs.releases import partition as release_partition
from gateway.jobs.releases.base import Outcome, Run
from gateway.jobs.releases.copies import Atoms
from gateway.store import db
from sandbox import (
    CompiledQuery,
    DisclosedTable,
    DisclosureQueries,
    DisclosureRules,
    GroupKey,
    PopulationSketch,
    ResultTable,
    TableSource,
    apply_disclosure,
    base_table,
    derive_disclosure_queries,
    group_key,
    population_params,
    refines_partition,
    uniqueness_query,
)


def release_aggregate(run: Run) -> Outcome:
    query = run.compiled()
    if query.count_column is None:
        return Outcome(JobStatus.FAILED, None, "the template has no count column")
    gw = run.gw
    rules = disclosure_rules(run.datasets.values())
    k = rules.min_group_size
    base = run.datasets[base_table(query)]
    unit = unit_column(base)
    derived = _derived(
        query,
        unit,
        top_n=rules.top_n,
        cells=sketch_size(k),
        max_groups=gw.engine.limits.max_rows,
        unique=unit is not None and _UNIQUE.get(gw, run.sources[base.id], unit),
    )
    key = release_history.population_key(gw.settings.keys_dir)
    with timing.stage("sandbox"):
        table, aux = gw.engine.run_with_auxiliary(
            query, run.sources, run.values, derived.job_queries, population_params(key)
        )
    named = derived.by_name(aux, derived.job_queries)
    census = named.get("census")  # with a unit column: the figures and the member hashes
    figures = census if census is not None else named["contributors"]
    contributors = derived.contributors_from(figures, named.get("dispersions"))
    keys = [group_key(table.columns, query.group_columns, row) for row in table.rows]
    members = derived.members_from(census, keys) if census is not None else {}
    sketches = derived.sketches_from_members(census, members) if census is not None else {}
    release = _Release(run, query, rules, base, unit, key, table, contributors, members, sketches)
    with timing.stage("disclosure"):
        decision, atoms = release.decided_and_stored()
    if atoms is not None:  # committed: this replica's next release starts from it
        gw.partitions.keep(atoms)
    disclosed = decision.disclosed
    result = {
        "columns": list(disclosed.columns),
        "rows": [list(row) for row in disclosed.rows],
        "withheld": [
            {
                "key": dict(cell.key),
                "column": cell.column,
                "rule": cell.rule,
                "reason": cell.reason,
            }
            for cell in disclosed.withheld
        ],
        "disclosure": _described(rules, unit),
    }
    status = (
        JobStatus.RELEASED if disclosed.rows or not disclosed.withheld else JobStatus.SUPPRESSED
    )
    return Outcome(status, result, None)


_NO_MEMBERS = "the units of this group are unknown"


@dataclass(frozen=True, slots=True)
class _Decision:
    """What an aggregate release shows (``disclosed``) and stores: the partition it was
    decided against (None without a unit column), its refinement by the released cells (None
    when there is nothing to record: none released, or a repeat), and the sketches of the
    released cells the department has not released before."""

    disclosed: DisclosedTable
    atoms: Atoms | None
    saving: release_partition.Saving | None
    recorded: list[PopulationSketch]


@dataclass(frozen=True, slots=True)
class _Release:
    """One aggregate release's disclosure decision against the dataset's release history and
    partition, and its record of the released cells."""

    run: Run
    query: CompiledQuery
    rules: DisclosureRules
    base: DatasetSpec
    unit: str | None
    key: str  # the population key the member hashes were made with
    table: ResultTable
    contributors: Mapping[GroupKey, Any]
    members: Mapping[GroupKey, Any]
    sketches: Mapping[GroupKey, PopulationSketch]

    def decided_and_stored(self) -> tuple[_Decision, Atoms | None]:
        """The decision, stored; and the partition after it (None: nothing to keep).

        Decided on a read snapshot, without the lock: the check, the atom check and the
        refinement are the CPU work (hundreds of ms for a release of ~10^6 units), and on
        SQLite the lock is the whole store's write lock. The lock is then taken only to write,
        if the partition has not moved since (``partition.write``); if it has, the release is
        decided again under the lock, in the transaction that records it.
        """
        if self.unit is None:  # no history, no partition: nothing stored
            return self._decide(None, snapshot=False), None
        gw = self.run.gw
        with db.snapshot(gw.db) as conn:
            decision = self._decide(conn, snapshot=True)
        if decision.saving is None:  # nothing released, or a repeat: nothing to record
            return decision, decision.atoms
        try:
            with gw.db.begin() as conn:
                release_history.lock(conn, self.base.id)
                return decision, self._store(conn, decision)
        except release_partition.Stale:
            with gw.db.begin() as conn:
                release_history.lock(conn, self.base.id)
                decision = self._decide(conn, snapshot=False)
                return decision, self._store(conn, decision)

    def _decide(self, conn: db.Connection | None, *, snapshot: bool) -> _Decision:
        """The release decided against the stored history and partition (``conn``: None
        without a unit column, which has neither; ``snapshot``: a read snapshot, not under
        the lock)."""
        query, k = self.query, self.rules.min_group_size
        scheme = next(iter(self.sketches.values())).scheme if self.sketches else ""
        differencing: dict[GroupKey, str] = {}
        known: set[GroupKey] = set()
        atoms = None
        cells: dict[GroupKey, Any] = {}
        changes = False
        if conn is not None and self.unit is not None:
            atoms = release_partition.load(
                conn,
                self.run.gw.partitions,
                dataset_id=self.base.id,
                unit_column=self.unit,
                scheme=scheme,
                key_id=release_history.key_id(self.key),
                locked=not snapshot,
            )
            differencing, known = release_history.check(
                conn,
                dataset_id=self.base.id,
                unit_column=self.unit,
                k=k,
                sketches=self.sketches,
                department=self.run.job.department,
                covered_after=release_partition.covered_after(atoms, scheme),
            )
        while True:  # withholding a group can leave a small atom or a line with one cell
            disclosed = apply_disclosure(
                self.table,
                count_column=str(query.count_column),
                group_columns=query.group_columns,
                rules=self.rules,
                contributors=self.contributors,
                differencing=differencing,
            )
            columns = self.table.columns
            released = [group_key(columns, query.group_columns, r) for r in disclosed.rows]
            if atoms is None:
                break
            more: dict[GroupKey, str] = {g: _NO_MEMBERS for g in released if g not in self.members}
            if not more:
                cells = {g: self.members[g] for g in released}
                # Cells that are each a union of atoms change no atom, so they make no small
                # one: the atom check is needed only when the partition would change.
                changes = refines_partition(atoms.partition, cells)
                if changes:
                    more = release_partition.withheld(atoms.partition, cells, k)
            if not more:
                break
            differencing.update(more)
        recorded = [self.sketches[g] for g in released if g in self.sketches and g not in known]
        saving = None
        # A repeat (every cell a union of atoms, every population released before by this
        # department) adds nothing to either record: no refinement, no transaction.
        if atoms is not None and (recorded or changes):
            saving = release_partition.prepare(atoms, cells)
        return _Decision(disclosed, atoms, saving, recorded)

    def _store(self, conn: db.Connection, decision: _Decision) -> Atoms | None:
        """Record the decided release (the caller holds the dataset's lock): the partition's
        head moves first, so a stale decision raises ``Stale`` before anything is written."""
        if decision.saving is None:  # decided again under the lock: nothing to record
            return decision.atoms
        after = release_partition.write(conn, decision.saving)
        release_history.record(
            conn,
            dataset_id=self.base.id,
            unit_column=str(self.unit),
            job_id=self.run.job.id,
            department=self.run.job.department,
            sketches=decision.recorded,
        )
        return after


@functools.lru_cache(maxsize=256)
def _derived(
    query: CompiledQuery,
    unit: str | None,
    *,
    top_n: int,
    cells: int,
    max_groups: int,
    unique: bool,
) -> DisclosureQueries:
    """The derived queries, built once per template version and settings (sqlglot: ~15 ms)."""
    return derive_disclosure_queries(
        query,
        unit=unit,
        top_n=top_n,
        cells_per_hash=cells,
        max_groups=max_groups,
        unit_is_unique=unique,
    )


class _Uniqueness:
    """Whether a unit column is unique per row, per version of a source file (cached).

    With a unique unit the derived queries skip grouping rows by unit (at 10M rows that
    grouping costs more than the template itself). The answer is computed once per file
    version (path, size, modification time) by the engine.
    """

    def __init__(self, size: int = 256) -> None:
        self._size = size
        self._known: dict[tuple[str, int, int, str], bool] = {}
        self._lock = threading.Lock()

    def get(self, gw: Gateway, source: TableSource, unit: str) -> bool:
        if not source.is_file:
            return False  # no file version to cache by; grouping by unit is always right
        stat = source.file.stat()
        key = (str(source.path), stat.st_mtime_ns, stat.st_size, unit)
        with self._lock:
            known = self._known.get(key)
        if known is None:
            table = gw.engine.run(
                uniqueness_query(source.dataset_id, unit), {source.dataset_id: source}, {}
            )
            ((rows, units),) = table.rows
            known = rows == units
            with self._lock:
                if len(self._known) >= self._size:
                    self._known.clear()
                self._known[key] = known
        return known


_UNIQUE = _Uniqueness()


def disclosure_rules(datasets: Sequence[DatasetSpec] | Any) -> DisclosureRules:
    """The strictest rules of all datasets the query reads."""
    specs = [ds.disclosure for ds in datasets]
    dominance = [d.dominance for d in specs if d.dominance is not None]
    p_values = [d.p_percent for d in specs if d.p_percent is not None]
    rounding = [d.rounding for d in specs if d.rounding is not None]
    return DisclosureRules(
        min_group_size=max(d.min_group_size for d in specs),
        dominance_n=max(d.n for d in dominance) if dominance else None,
        dominance_k=min(d.k for d in dominance) if dominance else None,
        p_percent=max(p_values) if p_values else None,
        rounding_base=max(rounding) if rounding else None,
        secondary=any(d.secondary_suppression for d in specs),
    )


def unit_column(spec: DatasetSpec) -> str | None:
    """Whose contributions are counted: the privacy unit, else the first identifier column."""
    if spec.privacy_unit is not None:
        return spec.privacy_unit
    return next((c.name for c in spec.columns if c.sensitivity == "identifier"), None)


def sketch_size(k: int) -> int:
    """Cells per hash function: decodes differences of up to ~2 × this, comfortably k − 1."""
    return max(8, 2 * k)


def _described(rules: DisclosureRules, unit: str | None) -> Mapping[str, object]:
    return {
        "min_group_size": rules.min_group_size,
        "counted": "distinct units" if unit is not None else "rows",
        "dominance": (
            {"n": rules.dominance_n, "k": rules.dominance_k}
            if rules.dominance_n is not None
            else None
        ),
        "p_percent": rules.p_percent,
        "rounding": rules.rounding_base,
        "secondary_suppression": rules.secondary,
        "differencing": unit is not None,
    }

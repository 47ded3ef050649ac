"""Verify jobs on a sorted copy of the data file (issue 13): made in the background, used
only while it is a copy of the file as it is now, replaced when the file changes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from gateway.catalogue.sorted_copies import SortedCopies
from gateway.wiring import sorted_copies_for
from sandbox import TableSource
from tests.integration import test_verify_jobs
from tests.integration.conftest import Caller, World
from tests.integration.test_verify_jobs import answer, residents

pytestmark = pytest.mark.slow  # jobs through the real sandbox, and a copy made by its process
verify_template = test_verify_jobs.verify_template  # the demo's verify template, approved


@pytest.fixture(autouse=True)
def copies_of_any_size(monkeypatch: pytest.MonkeyPatch) -> None:
    """The demo files are small: copy them whatever their size (before the world starts)."""
    monkeypatch.setenv("INSITU_VERIFY_SORTED_COPY_MIN_BYTES", "0")


class Seen:
    """What the verify release read, as the real `SortedCopies` answered (a spy, no stand-in)."""

    def __init__(self, copies: SortedCopies) -> None:
        self.formats: list[str] = []
        real = copies.sources_for

        def spy(
            sources: Mapping[str, TableSource], key_column: tuple[str, str] | None
        ) -> dict[str, TableSource]:
            found = real(sources, key_column)
            self.formats.append(found["civil.residents"].format)
            return found

        copies.sources_for = spy  # type: ignore[method-assign]


def keys_and_truth(world: World, district: str) -> tuple[list[str], list[bool]]:
    people = residents(world)
    inside = [p["person_id"] for p in people if p["district"] == district][:3]
    outside = [p["person_id"] for p in people if p["district"] != district][:2]
    keys = [*inside, *outside, "P999999999"]
    return keys, [True] * len(inside) + [False] * (len(keys) - len(inside))


def matched(body: dict[str, Any]) -> list[bool]:
    assert body["status"] == "released", body
    return [bool(m) for _, m in sorted(body["rows"])]


def test_verify_jobs_read_the_sorted_copy_of_the_file_as_it_is_now(
    world: World, analyst: Caller, verify_template: dict[str, Any]
) -> None:
    gw = world.app.state.gateway
    copies: SortedCopies = gw.sorted_copies
    seen = Seen(copies)
    district = residents(world)[0]["district"]
    keys, truth = keys_and_truth(world, district)

    assert matched(answer(analyst, keys, district)) == truth  # the file: no copy yet
    assert copies.wait_idle(120)
    made = sorted(copies.directory.iterdir())
    assert [p.suffix for p in made] == [".duckdb"] and copies.made == 1
    assert matched(answer(analyst, keys, district)) == truth  # the copy: the same answers
    assert seen.formats == ["parquet", "sorted"]

    # The owner rewrites the file without the first resident: a copy of the old file would
    # still say yes. The next job reads the new file; then the new copy replaces the old.
    path = world.settings.data_dir / "civil/residents.parquet"
    table = pq.read_table(path)
    pq.write_table(table.filter(pc.not_equal(table.column("person_id"), keys[0])), path)
    now = [False, *truth[1:]]
    assert matched(answer(analyst, keys, district)) == now
    assert copies.wait_idle(120)
    assert matched(answer(analyst, keys, district)) == now
    assert seen.formats == ["parquet", "sorted", "parquet", "sorted"]
    remaining = sorted(copies.directory.iterdir())
    assert len(remaining) == 1 and remaining != made  # the old file's copy is gone
    assert copies.made == 2


def test_a_copy_the_job_cannot_read_is_discarded_and_the_job_answers_from_the_file(
    world: World, analyst: Caller, verify_template: dict[str, Any]
) -> None:
    gw = world.app.state.gateway
    copies: SortedCopies = gw.sorted_copies
    district = residents(world)[0]["district"]
    keys, truth = keys_and_truth(world, district)
    assert matched(answer(analyst, keys, district)) == truth
    assert copies.wait_idle(120)
    (copy,) = copies.directory.iterdir()
    copy.write_bytes(copy.read_bytes()[:4096])  # damaged on disk
    assert matched(answer(analyst, keys, district)) == truth
    assert list(copies.directory.iterdir()) == []


def test_no_copy_below_the_size_or_when_turned_off(
    world: World, analyst: Caller, verify_template: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    gw = world.app.state.gateway
    copies: SortedCopies = gw.sorted_copies
    monkeypatch.setattr(copies, "_min_bytes", 1 << 40)  # every demo file is smaller
    district = residents(world)[0]["district"]
    keys, truth = keys_and_truth(world, district)
    assert matched(answer(analyst, keys, district)) == truth
    assert copies.wait_idle(10)
    assert not copies.directory.exists() or list(copies.directory.iterdir()) == []
    off = world.settings.model_copy(update={"verify_sorted_copy_min_bytes": -1})
    assert sorted_copies_for(off) is None

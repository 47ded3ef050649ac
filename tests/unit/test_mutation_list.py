"""`make mutate`'s list stays applicable: every named mutation's snippet is in its file once.

The mutation run itself takes minutes (`python -m tests.mutations`); this check keeps a moved
or reworded rule, or a malformed entry, from going unnoticed until someone runs it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.mutations import MUTATIONS, ROOT, Mutation


def test_mutation_names_are_unique() -> None:
    names = [m.name for m in MUTATIONS]
    assert len(names) == len(set(names))


@pytest.mark.parametrize("mutation", MUTATIONS, ids=lambda m: m.name)
def test_each_mutation_applies_to_exactly_one_place(mutation: Mutation) -> None:
    text = (ROOT / mutation.file).read_text(encoding="utf-8")
    assert text.count(mutation.original) == 1, f"{mutation.name}: {mutation.file}"
    assert mutation.replacement != mutation.original
    for first in mutation.first:
        assert (ROOT / Path(first.split("::")[0])).exists(), first

"""`SortedCopies`: a verify job reads a sorted copy only while it is a copy of the file as it
is now; copies are made off the job's path, once per file identity, and old ones removed."""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from gateway.catalogue.sorted_copies import SortedCopies
from sandbox import TableSource

DATASET = "civil.people"
KEY = (DATASET, "person_id")


def write(path: Path, ids: list[str]) -> TableSource:
    pq.write_table(pa.table({"person_id": ids, "district": ["d0"] * len(ids)}), path)
    return TableSource(DATASET, "parquet", path)


def copies(tmp_path: Path, min_bytes: int = 0) -> SortedCopies:
    return SortedCopies(
        tmp_path / "cache" / "sorted", min_bytes=min_bytes, memory_limit="256MB", threads=1
    )


def test_a_copy_is_used_once_made_and_never_for_a_changed_file(tmp_path: Path) -> None:
    source = write(tmp_path / "people.parquet", ["P3", "P1", "P2"])
    sorted_copies = copies(tmp_path)
    try:
        first = sorted_copies.sources_for({DATASET: source}, KEY)
        assert first == {DATASET: source}  # nothing made yet: the file, and a copy asked for
        assert sorted_copies.wait_idle(60)
        made = sorted_copies.sources_for({DATASET: source}, KEY)[DATASET]
        assert made.format == "sorted" and made.file.parent == sorted_copies.directory
        assert made.file.stat().st_mode & 0o077 == 0

        # The owner rewrites the file (same size, same modification time put back): its
        # identity changed, so the old copy is not this file's.
        before = source.file.stat()
        write(source.file, ["P9", "P8", "P7"])
        os.utime(source.file, ns=(before.st_atime_ns, before.st_mtime_ns))
        assert sorted_copies.sources_for({DATASET: source}, KEY) == {DATASET: source}
        assert sorted_copies.wait_idle(60)
        again = sorted_copies.sources_for({DATASET: source}, KEY)[DATASET]
        assert again.format == "sorted" and again.file != made.file
        assert sorted(sorted_copies.directory.iterdir()) == [again.file]  # the old one is gone
        assert sorted_copies.made == 2
    finally:
        sorted_copies.close()


def test_no_copy_for_small_files_other_formats_or_lookups_without_a_plain_column(
    tmp_path: Path,
) -> None:
    source = write(tmp_path / "people.parquet", ["P1"])
    small = copies(tmp_path, min_bytes=1 << 30)
    assert small.sources_for({DATASET: source}, KEY) == {DATASET: source}
    anywhere = copies(tmp_path)
    assert anywhere.sources_for({DATASET: source}, None) == {DATASET: source}
    table = TableSource(DATASET, "table", table="db.people")
    assert anywhere.sources_for({DATASET: table}, KEY) == {DATASET: table}
    assert small.wait_idle(5) and anywhere.wait_idle(5)
    assert not small.directory.exists()


def test_a_copy_with_a_log_beside_it_or_discarded_is_deleted_and_not_made_again(
    tmp_path: Path,
) -> None:
    source = write(tmp_path / "people.parquet", ["P3", "P1", "P2"])
    sorted_copies = copies(tmp_path)
    try:
        sorted_copies.sources_for({DATASET: source}, KEY)
        assert sorted_copies.wait_idle(60)
        made = sorted_copies.sources_for({DATASET: source}, KEY)[DATASET]
        made.file.with_name(made.file.name + ".wal").write_bytes(b"planted")
        assert sorted_copies.sources_for({DATASET: source}, KEY) == {DATASET: source}
        assert list(sorted_copies.directory.iterdir()) == []  # the copy and its log are gone
        assert sorted_copies.wait_idle(5)
        assert sorted_copies.sources_for({DATASET: source}, KEY) == {DATASET: source}
        assert sorted_copies.made == 1  # not made again by this process
    finally:
        sorted_copies.close()


def test_the_sweep_keeps_only_copies_of_registered_files_as_they_are_now(
    tmp_path: Path,
) -> None:
    people = write(tmp_path / "people.parquet", ["P3", "P1", "P2"])
    others = TableSource("tax.filings", "parquet", tmp_path / "filings.parquet")
    write(others.file, ["F1", "F2"])
    sorted_copies = copies(tmp_path)
    try:
        for source in (people, others):
            sorted_copies.sources_for({source.dataset_id: source}, (source.dataset_id, "person_id"))
        assert sorted_copies.wait_idle(60)
        kept = sorted_copies.sources_for({DATASET: people}, KEY)[DATASET].file
        stale = sorted_copies.directory / ".build-0123456789abcdef"  # a killed gateway's
        stale.mkdir()
        os.utime(stale, (0, 0))
        write(others.file, ["F9"])  # changed, and no job has looked since
        sorted_copies.sweep(lambda: {DATASET: people, "tax.filings": others})
        assert sorted_copies.wait_idle(30)
        assert sorted(sorted_copies.directory.iterdir()) == [kept]
        sorted_copies.sweep(dict)  # no dataset is registered any more
        assert sorted_copies.wait_idle(30)
        assert list(sorted_copies.directory.iterdir()) == []
    finally:
        sorted_copies.close()

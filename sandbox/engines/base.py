"""The engine interface the gateway programs against, whichever engine runs the job.

``DuckDBEngine`` runs in the calling process (unit tests of SQL semantics, and the worker
process itself); ``ProcessEngine`` hands every call to a sandbox worker process (the
default in the gateway). Both take the same compiled queries and return the same tables.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from sandbox.compile.auxiliary import AuxiliaryQuery
from sandbox.compile.query import CompiledQuery
from sandbox.quality.profile import DatasetProfile, ProfileRequest
from sandbox.results import ResultTable
from sandbox.sources import Limits, TableSource


class Engine(Protocol):
    limits: Limits

    def run(
        self,
        query: CompiledQuery,
        sources: Mapping[str, TableSource],
        params: Mapping[str, object],
    ) -> ResultTable: ...

    def run_with_auxiliary(
        self,
        query: CompiledQuery,
        sources: Mapping[str, TableSource],
        params: Mapping[str, object],
        auxiliary: Sequence[AuxiliaryQuery],
        extra_params: Mapping[str, object] | None = None,
    ) -> tuple[ResultTable, tuple[ResultTable, ...]]:
        """``query``'s result and each auxiliary query's, member hashes packed
        (``sandbox.compile.auxiliary.pack_member_hashes``)."""
        ...

    def distinct_values(
        self, source: TableSource, column: str, limit: int = 1000
    ) -> tuple[str | int, ...]: ...

    def infer_schema(self, source: TableSource) -> tuple[tuple[str, str], ...]: ...

    def profile(self, source: TableSource, request: ProfileRequest) -> DatasetProfile: ...

    def close(self) -> None: ...

    def ready(self) -> bool:
        """Can the engine take a job now (e.g. start a sandbox worker)?"""
        ...

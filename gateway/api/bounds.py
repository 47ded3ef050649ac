"""Bounds of the integers the HTTP API takes (issue 14): every integer in a path, a query or a
body is bounded by its route model, so an out-of-range value is a 422, never a database
overflow (SQLite raises on integers past 2^63) or a 500.
"""

from __future__ import annotations

from typing import Annotated, Final

from fastapi import Path

MAX_VERSION: Final = 2**31 - 1  # template and policy versions are INTEGER columns
MAX_INDEX: Final = 2**53 - 1  # audit indexes and sizes: BIGINT, and exact as JSON numbers

TemplateVersion = Annotated[int, Path(ge=1, le=MAX_VERSION)]

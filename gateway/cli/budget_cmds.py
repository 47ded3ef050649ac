"""`insitu budget …`: privacy budgets (the DP ledger)."""

from __future__ import annotations

from gateway.cli.app import budget_app  # noqa: F401  (commands are added here)

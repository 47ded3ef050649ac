"""Differential privacy in the gateway: the ledger, budgets, dp specs and plans."""

"""The audit trail: writing events into the log, review queries, refusals."""

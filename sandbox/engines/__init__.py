"""Engines that run compiled queries locked down: DuckDB in-process or in worker processes."""

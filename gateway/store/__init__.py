"""The store: SQLAlchemy engines, the application's tables, policy versions."""

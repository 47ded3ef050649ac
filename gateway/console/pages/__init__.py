"""The console's pages, one module per role (and `common` for every role)."""

"""Template compilation: parsing, static safety checks, shapes, derived disclosure queries."""

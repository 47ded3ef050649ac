"""Typed parameters with domains, bound and never spliced."""

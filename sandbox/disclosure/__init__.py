"""Disclosure control: group size, dominance, p%, suppression, population sketches."""

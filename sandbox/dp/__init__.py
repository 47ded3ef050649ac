"""Differential privacy plans and OpenDP mechanisms."""

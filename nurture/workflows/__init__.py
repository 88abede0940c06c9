"""Deterministic code only: the lead workflow."""

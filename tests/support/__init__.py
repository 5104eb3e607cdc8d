"""Helpers shared by tests that are not fixtures (importable without pytest)."""

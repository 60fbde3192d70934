"""Test helpers, imported as `helpers.X` (pytest puts tests/ on sys.path through its conftest.py; worker processes inherit it)."""

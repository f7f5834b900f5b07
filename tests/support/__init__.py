"""Helpers shared by the tests: on the pytest path (pyproject.toml), imported as ``support.X``."""
